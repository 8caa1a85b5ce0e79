// Complete checkpoints (parameters, optimizer state, data position, loss sums) in safetensors.
#include "vae/checkpoint.h"

#include <cmath>
#include <cstring>

#include "vae/error.h"
#include "vae/io.h"

namespace vae {
namespace {

template <class T>
NamedTensor make_tensor(const std::string& name, const char* dtype, std::vector<std::int64_t> shape, const T* data,
                        std::size_t n) {
  NamedTensor t;
  t.name = name;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.bytes.resize(n * sizeof(T));
  if (n) std::memcpy(t.bytes.data(), data, t.bytes.size());
  return t;
}

const NamedTensor& need(const SafetensorsFile& f, const std::string& path, const std::string& name, const char* dtype,
                        std::size_t count) {
  const NamedTensor* t = f.find(name);
  if (!t) throw_error("'", path, "' is not a complete checkpoint: it has no tensor '", name, "'");
  if (t->dtype != dtype) throw_error("'", path, "': tensor '", name, "' is ", t->dtype, ", expected ", dtype);
  const std::size_t elem = t->dtype == "F32" ? 4 : 8;
  if (t->bytes.size() != count * elem)
    throw_error("'", path, "': tensor '", name, "' holds ", t->bytes.size() / elem, " values, expected ", count);
  return *t;
}

void copy_flat(const SafetensorsFile& f, const std::string& path, const ParamLayout& layout, const std::string& prefix,
               std::vector<float>& out) {
  out.assign(layout.total(), 0.0f);
  for (const auto& v : layout.tensors()) {
    const NamedTensor& t = need(f, path, prefix + v.name, "F32", v.size());
    std::memcpy(out.data() + v.offset, t.bytes.data(), t.bytes.size());
    for (std::size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(out[v.offset + i]))
        throw_error("'", path, "': tensor '", prefix + v.name, "' holds a non-finite value at index ", i);
  }
}

}  // namespace

void save_checkpoint(const std::string& path, const Checkpoint& ck, const std::string& config_json_in) {
  const ParamLayout layout(ck.model);
  if (ck.params.size() != layout.total())
    throw_error("save_checkpoint: ck.params holds ", ck.params.size(), " values, the model's layout ", layout.total());
  if (ck.optimizer.m.size() != layout.total() || ck.optimizer.v.size() != layout.total())
    throw_error("save_checkpoint: ck.optimizer holds ", ck.optimizer.m.size(), " and ", ck.optimizer.v.size(),
                " values in m and v, the model's layout ", layout.total(),
                " each (take it from Backend::optimizer_state(); load_checkpoint needs it, and save_model writes the "
                "parameters alone)");
  // The file's configuration is what load_checkpoint rebuilds the model from: it must be ck's.
  const std::string own = config_to_json(ck.model, ck.train);
  const std::string config_json = config_json_in.empty() ? own : config_json_in;
  if (!config_json_in.empty()) {
    ModelConfig m;
    TrainConfig t;
    try {
      config_from_json(config_json, m, t);
    } catch (const Error& e) {
      throw_error("save_checkpoint: config_json is not a configuration: ", e.what());
    }
    if (config_to_json(m, t) != own)
      throw_error("save_checkpoint: config_json does not describe ck.model and ck.train (pass config_to_json(ck.model, "
                  "ck.train), or an empty string for it)");
  }
  std::vector<NamedTensor> tensors;
  for (const auto& v : layout.tensors()) {
    std::vector<std::int64_t> shape(v.shape.begin(), v.shape.end());
    tensors.push_back(make_tensor(v.name, "F32", shape, ck.params.data() + v.offset, v.size()));
    tensors.push_back(make_tensor("optimizer.m." + v.name, "F32", shape, ck.optimizer.m.data() + v.offset, v.size()));
    tensors.push_back(make_tensor("optimizer.v." + v.name, "F32", shape, ck.optimizer.v.data() + v.offset, v.size()));
  }
  const std::int64_t steps[2] = {ck.optimizer.step, ck.optimizer.step_decoder};
  const std::int64_t position[3] = {ck.position.epoch, ck.position.batch, ck.position.step};
  const double sums[4] = {ck.position.partial.loss, ck.position.partial.recon, ck.position.partial.kl,
                          double(ck.position.partial.count)};
  const std::int64_t rng[2] = {static_cast<std::int64_t>(ck.train.seed), ck.position.step};
  tensors.push_back(make_tensor("optimizer.step", "I64", {2}, steps, 2));
  tensors.push_back(make_tensor("position", "I64", {3}, position, 3));
  tensors.push_back(make_tensor("partial_sums", "F64", {4}, sums, 4));
  tensors.push_back(make_tensor("rng", "I64", {2}, rng, 2));
  check_scaling(ck.model, ck.scaling, "save_checkpoint");
  ck.scaling.append_tensors(tensors);
  write_safetensors(path, tensors,
                    {{"config", config_json},
                     {"format", "vae-checkpoint-1"},
                     {"rng", "cuRAND Philox4x32-10, counter-based: step t draws at offset t * stride of each stream"}});
}

Checkpoint load_checkpoint(const std::string& path) {
  const SafetensorsFile f = read_safetensors(path);
  const std::string& config = f.vae_config(path, {"vae-checkpoint-1"});
  Checkpoint ck;
  try {
    config_from_json(config, ck.model, ck.train);
    ck.model.validate();
    ck.train.validate();
  } catch (const Error& e) {
    throw_error("'", path, "': its configuration is invalid: ", e.what());
  }
  const ParamLayout layout(ck.model);
  copy_flat(f, path, layout, "", ck.params);
  copy_flat(f, path, layout, "optimizer.m.", ck.optimizer.m);
  copy_flat(f, path, layout, "optimizer.v.", ck.optimizer.v);
  std::int64_t steps[2], pos[3];
  double sums[4];
  std::memcpy(steps, need(f, path, "optimizer.step", "I64", 2).bytes.data(), 16);
  std::memcpy(pos, need(f, path, "position", "I64", 3).bytes.data(), 24);
  std::memcpy(sums, need(f, path, "partial_sums", "F64", 4).bytes.data(), 32);
  for (float v : ck.optimizer.v)
    if (v < 0) throw_error("'", path, "': the optimizer's second slot holds a negative value");
  if (steps[0] < 0 || steps[1] < 0 || pos[0] < 0 || pos[0] > (1 << 30) || pos[1] < 0 || pos[1] > (1 << 30) || pos[2] < 0 ||
      !(sums[3] >= 0 && sums[3] < 9e15))
    throw_error("'", path, "': its training position is invalid");
  ck.optimizer.step = steps[0];
  ck.optimizer.step_decoder = steps[1];
  ck.position.epoch = static_cast<int>(pos[0]);
  ck.position.batch = static_cast<int>(pos[1]);
  ck.position.step = pos[2];
  ck.position.partial = LossSums{sums[0], sums[1], sums[2], static_cast<std::int64_t>(sums[3])};
  ck.scaling = Standardization::from_file(f, path, ck.model.standardize, ck.model.input_dim);
  return ck;
}

}  // namespace vae
