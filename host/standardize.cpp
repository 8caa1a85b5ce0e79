// The per-feature standardization of --standardize (vae/standardize.h).
#include "vae/standardize.h"

#include <cmath>
#include <cstring>

#include "vae/error.h"
#include "vae/io.h"
#include "vae/options.h"

namespace vae {

Standardization Standardization::fit(const Dataset& train) {
  train.validate();
  if (train.count < 1) throw_error("standardize: the training set '", train.source, "' holds no items");
  const int D = train.dim;
  std::vector<double> sum(D, 0.0), sq(D, 0.0);
  std::vector<float> row(D);
  for (std::int64_t i = 0; i < train.count; ++i) {
    train.row(i, row.data());
    for (int d = 0; d < D; ++d) sum[d] += row[d];
  }
  const double n = double(train.count);
  for (auto& s : sum) s /= n;
  for (std::int64_t i = 0; i < train.count; ++i) {  // two passes: no cancellation in the variance
    train.row(i, row.data());
    for (int d = 0; d < D; ++d) sq[d] += (row[d] - sum[d]) * (row[d] - sum[d]);
  }
  Standardization s;
  s.mean.resize(D);
  s.std.resize(D);
  for (int d = 0; d < D; ++d) {
    const float sd = static_cast<float>(std::sqrt(sq[d] / n));
    s.mean[d] = static_cast<float>(sum[d]);
    s.std[d] = sd > 0 && std::isfinite(sd) ? sd : 1.0f;
  }
  return s;
}

Dataset Standardization::apply(const Dataset& data) const {
  data.validate();
  if (data.dim != dim())
    throw_error("standardize: data '", data.source, "' has ", data.dim, " features per item, the scaling ", dim());
  Dataset out = data.empty_copy();
  out.f32.resize(static_cast<std::size_t>(data.count) * data.dim);
  for (std::int64_t i = 0; i < data.count; ++i) {
    float* r = out.f32.data() + static_cast<std::size_t>(i) * data.dim;
    data.row(i, r);
    for (int d = 0; d < data.dim; ++d) r[d] = (r[d] - mean[d]) / std[d];
  }
  return out;
}

void Standardization::undo(std::vector<float>& rows) const {
  const std::size_t D = mean.size();
  if (D == 0) return;
  for (std::size_t k = 0; k < rows.size(); ++k) rows[k] = rows[k] * std[k % D] + mean[k % D];
}

double Standardization::log_jacobian() const {
  double j = 0;
  for (float s : std) j += std::log(double(s));
  return j;
}

void Standardization::append_tensors(std::vector<NamedTensor>& tensors) const {
  if (empty()) return;
  for (const auto* part : {&mean, &std}) {
    NamedTensor t;
    t.name = part == &mean ? "standardize.mean" : "standardize.std";
    t.dtype = "F32";
    t.shape = {static_cast<std::int64_t>(part->size())};
    t.bytes.resize(part->size() * sizeof(float));
    std::memcpy(t.bytes.data(), part->data(), t.bytes.size());
    tensors.push_back(std::move(t));
  }
}

Standardization Standardization::from_file(const SafetensorsFile& file, const std::string& path, bool wanted, int dim) {
  Standardization s;
  if (!wanted) return s;
  for (auto* part : {&s.mean, &s.std}) {
    const char* name = part == &s.mean ? "standardize.mean" : "standardize.std";
    const NamedTensor* t = file.find(name);
    if (!t)
      throw_error("'", path, "': its configuration says standardize, but it has no tensor '", name,
                  "' (the training set's scaling)");
    if (t->dtype != "F32" || t->shape != std::vector<std::int64_t>{dim})
      throw_error("'", path, "': tensor '", name, "' must be F32 of shape [", dim, "]");
    part->resize(static_cast<std::size_t>(dim));
    std::memcpy(part->data(), t->bytes.data(), part->size() * sizeof(float));
    for (int d = 0; d < dim; ++d)
      if (!std::isfinite((*part)[d]) || (part == &s.std && !((*part)[d] > 0)))
        throw_error("'", path, "': tensor '", name, "' holds ", (*part)[d], " at feature ", d,
                    part == &s.std ? "; a standard deviation must be finite and > 0" : "; it must be finite");
  }
  return s;
}

void check_scaling(const ModelConfig& model, const Standardization& scaling, const char* who) {
  if (model.standardize && (scaling.dim() != model.input_dim || scaling.std.size() != scaling.mean.size()))
    throw_error(who, ": the model is standardized (", flag_of("standardize"), ") and needs the training set's scaling of ",
                model.input_dim, " features; got ", scaling.dim());
  if (!model.standardize && !scaling.empty())
    throw_error(who, ": a scaling was given for a model that is not standardized (", flag_of("standardize"), ")");
}

}  // namespace vae
