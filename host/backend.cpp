// Device selection and the backend factory.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <thread>
#include <vector>

#include "internal.h"
#include "vae/backend.h"
#include "vae/distributed.h"
#include "vae/error.h"
#include "vae/options.h"

namespace vae {

namespace {
// What the model is conditioned on, in words.
std::string model_condition(const ModelConfig& model) { return describe_condition(model.condition, model.condition_dim); }

void check_condition(const ModelConfig& model, const Dataset& data, const char* what) {
  if (data.appended > 0) {  // a backend's view: the condition is in the rows
    if (data.appended != model.condition_dim)
      throw_error(what, " '", data.source, "' carries ", data.appended, " condition values per item but the model is ",
                  "conditioned on ", model_condition(model));
    return;
  }
  const Condition& c = data.condition;
  if (model.condition == ConditionKind::none) {
    if (!c.empty())
      throw_error(what, " '", data.source, "' comes with conditions ('", c.source,
                  "') but the model is not a conditional one");
    return;
  }
  if (c.empty())
    throw_error(what, " '", data.source, "' has no conditions but the model is conditioned on ", model_condition(model),
                ": give the items' conditions too (", flag_of("test_condition"), ", or condition= in Python)");
  if (c.kind != model.condition || c.dim != model.condition_dim)
    throw_error("conditions '", c.source, "' are ", c.describe(), " per item but the model is conditioned on ",
                model_condition(model));
}

}  // namespace

ValueRule value_rule(const ModelConfig& model) {
  if (counts_likelihood(model.likelihood)) return ValueRule::counts;
  return model.likelihood == Likelihood::bernoulli ? ValueRule::unit_interval : ValueRule::finite;
}

void throw_bad_value(const ModelConfig& model, const Dataset& data, std::int64_t k) {
  const float v = data.f32_values()[k];
  if (!std::isfinite(v)) data.throw_non_finite(k);
  const std::int64_t i = k / data.dim, j = k % data.dim;
  if (counts_likelihood(model.likelihood))
    throw_error("data '", data.source, "': value ", v, " at item ", i, ", feature ", j,
                " is not a count (a non-negative integer), which ", flag_of("likelihood"), " ",
                to_string(model.likelihood), " needs");
  throw_error("data '", data.source, "': value ", v, " at item ", i, ", feature ", j,
              " is outside [0, 1], which the Bernoulli likelihood needs (for 0..255 pixels divide by 255; for "
              "other real values use ", flag_of("likelihood"), " gaussian)");
}

void check_data_values(const ModelConfig& model, const Dataset& data, ValueRule rule, Communicator* comm) {
  if (const std::int64_t k = first_bad_value_across_ranks(data, rule, comm); k >= 0) throw_bad_value(model, data, k);
}

void check_data(const ModelConfig& model, const Dataset& data, const char* what) {
  data.validate(false);  // the values below, in one pass (once for a mapped file)
  if (data.features() != model.input_dim)
    throw_error(what, " '", data.source, "' has ", data.features(), " features per item but the model expects ",
                model.input_dim);
  check_condition(model, data, what);
  check_data_values(model, data, value_rule(model));
}

void check_nonempty_data(const ModelConfig& model, const Dataset& data, const char* call, const char* what) {
  check_data(model, data, what);
  if (data.count == 0) throw_error(call, ": ", what, " '", data.source, "' holds no items");
}

void Backend::set_communicator(Communicator* comm) {
  if (comm)
    throw_error(name(), ": this backend does not train data-parallel (", flag_of("device"), " cpu or cuda do)");
}

void Backend::set_standardization(Standardization scaling) {
  if (has_train_data_) throw_error("Backend::set_standardization: give the scaling before set_train_data");
  if (!scaling.empty()) check_scaling(model_config(), scaling, "Backend::set_standardization");
  scaling_ = std::move(scaling);
}

bool Backend::needs_view(const Dataset& data) const {
  return !scaling_.empty() || (counts_likelihood(model_config().likelihood) && data.is_u8()) ||
         !data.condition.empty();
}

std::optional<Dataset> Backend::model_view(const Dataset& data, const char* what) const {
  if (!needs_view(data)) return std::nullopt;
  check_data(model_config(), data, what);
  std::optional<Dataset> v;
  if (!scaling_.empty()) {
    v = scaling_.apply(data);
  } else if (counts_likelihood(model_config().likelihood) && data.is_u8()) {
    v = data.empty_copy();  // the bytes as counts
    const std::uint8_t* b = data.u8_values();
    v->f32.assign(b, b + static_cast<std::size_t>(data.count) * static_cast<std::size_t>(data.dim));
  }
  if (!data.condition.empty()) return with_condition_appended(v ? *v : data);
  return v;
}

void Backend::set_train_data(std::shared_ptr<const Dataset> data) {
  if (!data) throw_error("set_train_data: no dataset");
  check_scaling(model_config(), scaling_, "set_train_data");  // a standardized model trains on scaled data only
  if (auto v = model_view(*data, "training data")) data = std::make_shared<const Dataset>(std::move(*v));
  do_set_train_data(std::move(data));
  has_train_data_ = true;
}

LossSums Backend::evaluate(const Dataset& data) {
  auto v = model_view(data, "data");
  LossSums s = do_evaluate(v ? *v : data);
  const double j = scaling_.log_jacobian() * double(s.count);
  s.loss += j;
  s.recon += j;
  return s;
}

LikelihoodSums Backend::estimate_log_likelihood(const Dataset& data, int k) {
  auto v = model_view(data, "data");
  LikelihoodSums s = do_estimate_log_likelihood(v ? *v : data, k);
  const double j = scaling_.log_jacobian() * double(s.count);
  s.recon += j;
  s.iwae -= j;
  s.prior -= j;
  return s;
}

std::vector<float> Backend::encode(const Dataset& data, std::int64_t begin, std::int64_t n) {
  if (!needs_view(data)) return do_encode(data, begin, n);
  check_encode_args(model_config(), data, begin, n);  // the backends' own check, before the copy
  return do_encode(*model_view(data.slice(begin, n), "data"), 0, n);  // the n items alone, as the model sees them
}

std::vector<float> Backend::decode_means(const std::vector<float>& z, const Condition& condition) {
  const ModelConfig& m = model_config();
  const std::int64_t rows = decode_rows(m, z);
  std::vector<float> means;
  if (m.condition == ConditionKind::none) {
    if (!condition.empty())
      throw_error("decode_means: conditions '", condition.source, "' given to a model that is not a conditional one");
    means = do_decode_means(z);
  } else {
    if (condition.kind != m.condition || condition.dim != m.condition_dim)
      throw_error("decode_means: the model is conditioned on ", model_condition(m), ", got ",
                  condition.empty() ? std::string("no condition") : condition.describe() + " ('" + condition.source + "')");
    if (condition.count() != rows)
      throw_error("decode_means: ", rows, " codes but ", condition.count(), " conditions ('", condition.source,
                  "'); one per code");
    const std::size_t Z = static_cast<std::size_t>(m.latent), C = static_cast<std::size_t>(m.condition_dim);
    std::vector<float> codes(static_cast<std::size_t>(rows) * (Z + C));  // [z, c] per row: the decoder's input
    for (std::size_t r = 0; r < static_cast<std::size_t>(rows); ++r) {
      std::copy_n(z.begin() + static_cast<std::ptrdiff_t>(r * Z), Z, codes.begin() + static_cast<std::ptrdiff_t>(r * (Z + C)));
      std::copy_n(condition.values.begin() + static_cast<std::ptrdiff_t>(r * C), C,
                  codes.begin() + static_cast<std::ptrdiff_t>(r * (Z + C) + Z));
    }
    means = do_decode_means(codes);
  }
  scaling_.undo(means);
  return means;
}

std::vector<float> Backend::encode_means(const Dataset& data, std::int64_t begin, std::int64_t n) {
  const std::vector<float> head = encode(data, begin, n);
  const std::size_t rows = static_cast<std::size_t>(n), Z = rows ? head.size() / (2 * rows) : 0;
  std::vector<float> mu(rows * Z);
  for (std::size_t i = 0; i < rows; ++i)
    std::copy_n(head.begin() + static_cast<std::ptrdiff_t>(i * 2 * Z), Z, mu.begin() + static_cast<std::ptrdiff_t>(i * Z));
  return mu;
}

void check_encode_args(const ModelConfig& model, const Dataset& data, std::int64_t begin, std::int64_t n) {
  check_data(model, data);
  if (begin < 0 || n < 0 || begin > data.count || n > data.count - begin)
    throw_error("items [", begin, ", ", begin + n, ") are outside the ", data.count, " items of '", data.source, "'");
}

std::int64_t decode_rows(const ModelConfig& model, const std::vector<float>& z) {
  if (z.size() % static_cast<std::size_t>(model.latent) != 0)
    throw_error("decode_means: ", z.size(), " values are not whole codes of the latent size ", model.latent);
  const std::size_t Z = static_cast<std::size_t>(model.latent);
  for (std::size_t k = 0; k < z.size(); ++k)
    if (!std::isfinite(z[k]))
      throw_error("decode_means: code ", k / Z, " holds ", z[k], " at dimension ", k % Z, "; codes must be finite");
  return static_cast<std::int64_t>(z.size() / Z);
}

std::int64_t decoder_input_rows(const ModelConfig& model, const std::vector<float>& codes) {
  const std::size_t w = static_cast<std::size_t>(decoder_input_dim(model));
  if (codes.size() % w != 0)
    throw_error("decode_means: ", codes.size(), " values are not whole decoder inputs of ", w, " values");
  return static_cast<std::int64_t>(codes.size() / w);
}

bool cuda_usable(std::string* why) {
#if defined(VAE_HAVE_CUDA)
  return cuda_device_usable(why);
#else
  if (why) *why = "this libvae was built without the CUDA backend (VAE_CUDA=OFF or no nvcc at build time)";
  return false;
#endif
}

Device resolve_device(Device requested, std::string* note) {
  if (requested != Device::automatic) {
    if (note) *note = std::string("device: ") + to_string(requested) + " (as requested)";
    return requested;
  }
  std::string why;
  if (cuda_usable(&why)) {
    if (note) *note = "device: cuda (auto: a usable GPU was found)";
    return Device::cuda;
  }
  if (note) *note = "device: cpu (auto: no usable GPU: " + why + ")";
  return Device::cpu;
}

double train_step_gemm_flops(const ModelConfig& model, int batch, int samples) {
  const ParamLayout layout(model);
  const double rows_enc = batch, rows_dec = double(batch) * samples;
  double flops = 0;
  auto add = [&](const LinearView& l, double rows, bool input_grad) {
    const double one = 2.0 * rows * l.in * l.out;
    flops += one * (input_grad ? 3 : 2);  // forward, weight gradient (and input gradient)
  };
  for (std::size_t i = 0; i < layout.encoder().size(); ++i) add(layout.encoder()[i], rows_enc, i > 0);
  add(layout.head(), rows_enc, !layout.encoder().empty());
  for (std::size_t i = 0; i < layout.decoder().size(); ++i) add(layout.decoder()[i], rows_dec, true);
  add(layout.output(), rows_dec, true);
  return flops;
}

int cpu_cores() {
  static const int n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return n;
}

int default_cpu_threads() { return std::max(1, cpu_cores() / local_processes()); }

double measure_sgemm_gflops(Device device, int m, int n, int k) {
  if (m <= 0 || n <= 0 || k <= 0) throw_error("measure_sgemm_gflops: sizes must be positive");
  if (device == Device::cuda) {
    std::string why;
    if (!cuda_usable(&why)) throw_error("measure_sgemm_gflops: no usable GPU: ", why);
#if defined(VAE_HAVE_CUDA)
    return cuda_sgemm_gflops(m, n, k);
#endif
  }
  std::vector<float> a(static_cast<std::size_t>(m) * k), b(static_cast<std::size_t>(k) * n),
      c(static_cast<std::size_t>(m) * n);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = float(i % 97) / 97.0f - 0.5f;  // data, not constants
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = float(i % 89) / 89.0f - 0.5f;
  auto once = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, c.data(), n);
  };
  // OpenBLAS's own threaded product on all cores: the machine's reference rate (the CPU
  // backend's products are single-threaded blocks, blas.h). OpenBLAS's OpenMP build sets the
  // OpenMP pool's size too, so that goes back afterwards.
  const int pool = omp_get_max_threads();
  openblas_set_num_threads(cpu_cores());
  once();
  std::vector<double> s;
  for (int r = 0; r < 10; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    once();
    s.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  omp_set_num_threads(pool);
  return 2.0 * m * n * k / *std::min_element(s.begin(), s.end()) / 1e9;
}

void throw_out_of_host_memory(const ModelConfig& model, const TrainConfig& train, const char* what) {
  const std::size_t params = ParamLayout(model).total();
  const double value_bytes = train.precision == Precision::fp64 ? 8.0 : 4.0;
  const double gib = 4.0 * value_bytes * static_cast<double>(params) / (1024.0 * 1024.0 * 1024.0);
  throw_error("out of host memory setting up ", what, ": the model has ", params, " parameters, whose values, ",
              "gradients and two optimizer slots alone take ", gib, " GiB (besides the activations of batches of up to ",
              std::max(train.batch, train.eval_batch), " rows); use narrower layers");
}

std::unique_ptr<Backend> make_backend(Device device, const ModelConfig& model, const TrainConfig& train) {
  switch (device) {
    case Device::cpu: return make_cpu_backend(model, train);
    case Device::cuda: {
      std::string why;
      if (!cuda_usable(&why)) throw_error(flag_of("device"), " cuda: no usable GPU: ", why);
#if defined(VAE_HAVE_CUDA)
      return make_cuda_backend(model, train);
#else
      break;
#endif
    }
    case Device::automatic: return make_backend(resolve_device(device, nullptr), model, train);
  }
  throw_error("make_backend: unknown device");
}

}  // namespace vae
