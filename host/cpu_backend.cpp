// The CPU backend: CpuModel plus the batch gather, cuRAND host noise, Adam and loss sums.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <thread>

#include "cpu_model.h"
#include "cpu_passes.h"
#include "internal.h"
#include "vae/elementwise.h"
#include "vae/error.h"
#include "vae/rng.h"

namespace vae {
namespace {

constexpr std::size_t kNoiseBlockValues = std::size_t(1) << 22;  // 16 MiB of noise per block

// One OpenMP pool serves OpenBLAS (its OpenMP build) and our own loops.
int set_cpu_threads(int requested) {
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int n = requested > 0 ? requested : hw;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
  return n;
}

template <class T>
class CpuBackend final : public Backend {
 public:
  CpuBackend(const ModelConfig& model, const TrainConfig& train)
      : train_(train),
        model_(model, std::max(train.batch, train.eval_batch)),
        plan_(RngPlan::make(train.seed, model, train.batch)),
        eps_noise_(plan_.eps_seed, StepNoise::Kind::normal, plan_.eps_stride, kNoiseBlockValues),
        eval_noise_(plan_.eval_seed, StepNoise::Kind::normal,
                    RngPlan::eval_stride(model, train.eval_batch), kNoiseBlockValues) {
    threads_ = set_cpu_threads(train.threads);
    const std::size_t B = static_cast<std::size_t>(model_.max_batch());
    const std::size_t D = static_cast<std::size_t>(model.input_dim);
    x_.assign(B * D, T(0));
    eps_.assign(B * model.samples * model.latent, T(0));
    if (train.binarize == Binarize::dynamic)
      bin_noise_ = std::make_unique<StepNoise>(plan_.bin_seed, StepNoise::Kind::uniform, plan_.bin_stride, kNoiseBlockValues);
    m_.assign(model_.layout().total(), T(0));
    v_.assign(model_.layout().total(), T(0));
  }

  std::string name() const override {
    return std::string("cpu (") + (sizeof(T) == 8 ? "fp64" : "fp32") + ", OpenBLAS " + openblas_get_corename() +
           " kernels, " + std::to_string(threads_) + (threads_ == 1 ? " thread)" : " threads)");
  }
  const ParamLayout& layout() const override { return model_.layout(); }

  void set_parameters(const std::vector<float>& flat) override {
    check_size(flat.size(), "set_parameters");
    std::copy(flat.begin(), flat.end(), model_.params().begin());
  }
  std::vector<float> parameters() const override { return to_float(model_.params()); }
  std::vector<float> gradients() const override { return to_float(model_.grads()); }
  OptimizerState optimizer_state() const override { return {to_float(m_), to_float(v_), step_}; }
  void set_optimizer_state(const OptimizerState& s) override {
    check_size(s.m.size(), "set_optimizer_state (m)");
    check_size(s.v.size(), "set_optimizer_state (v)");
    std::copy(s.m.begin(), s.m.end(), m_.begin());
    std::copy(s.v.begin(), s.v.end(), v_.begin());
    step_ = s.step;
  }

  void set_train_data(std::shared_ptr<const Dataset> data) override {
    if (!data) throw_error("set_train_data: no dataset");
    if (data->dim != model_.config().input_dim)
      throw_error("training data '", data->source, "' has ", data->dim, " features per item but the model expects ",
                  model_.config().input_dim);
    data_ = std::move(data);
  }

  void train_step(const Batch& batch) override {
    if (!data_) throw_error("train_step: call set_train_data first");
    if (health_.halted) return;  // a non-finite step under NanPolicy::stop: wait for the trainer
    if (batch.size <= 0 || batch.size > train_.batch)
      throw_error("train_step: batch of ", batch.size, " items, expected 1..", train_.batch);
    const int n = batch.size;
    const int D = model_.config().input_dim;
    for (int i = 0; i < n; ++i)
      if (batch.indices[i] >= static_cast<std::uint64_t>(data_->count))
        throw_error("train_step: index ", batch.indices[i], " is out of range for ", data_->count, " items");
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; ++i) data_->row_as<T>(batch.indices[i], x_.data() + static_cast<std::size_t>(i) * D);
    if (train_.binarize == Binarize::dynamic) {
      const std::size_t nd = static_cast<std::size_t>(n) * D;
      const float* u = bin_noise_->step(batch.step);
      for (std::size_t i = 0; i < nd; ++i) x_[i] = T(u[i]) <= x_[i] ? T(1) : T(0);
    }
    copy_noise(eps_noise_.step(batch.step), n);
    const LossSums s = model_.forward(x_.data(), eps_.data(), n, true);
    if (const char* bad = first_non_finite(s)) {  // no update, no loss: the step is dropped
      if (health_.bad_steps++ == 0) {
        health_.first_bad_step = batch.step;
        health_.first_bad_tensor = bad;
      }
      health_.halted = train_.on_nan == NanPolicy::stop;
      return;
    }
    adam_step();
    sums_.loss += s.loss;
    sums_.recon += s.recon;
    sums_.kl += s.kl;
    sums_.count += s.count;
  }

  LossSums take_train_sums() override {
    const LossSums s = sums_;
    sums_ = LossSums{};
    return s;
  }

  void restore_train_sums(const LossSums& sums) override { sums_ = sums; }
  StepHealth health() override { return health_; }

  LossSums evaluate(const Dataset& data) override {
    if (data.dim != model_.config().input_dim)
      throw_error("data '", data.source, "' has ", data.dim, " features per item but the model expects ",
                  model_.config().input_dim);
    const int batch = train_.eval_batch;
    const int D = data.dim;
    LossSums total;
    std::int64_t k = 0;
    for (std::int64_t begin = 0; begin < data.count; begin += batch, ++k) {
      const int n = static_cast<int>(std::min<std::int64_t>(batch, data.count - begin));
      for (int i = 0; i < n; ++i) data.row_as<T>(begin + i, x_.data() + static_cast<std::size_t>(i) * D);
      copy_noise(eval_noise_.step(k), n);
      const LossSums s = model_.forward(x_.data(), eps_.data(), n, false);
      total.loss += s.loss;
      total.recon += s.recon;
      total.kl += s.kl;
      total.count += s.count;
    }
    return total;
  }

 private:
  void check_size(std::size_t n, const char* what) const {
    if (n != model_.layout().total())
      throw_error(what, ": got ", n, " values, the model's flat parameter buffer holds ", model_.layout().total());
  }
  template <class U>
  static std::vector<float> to_float(const std::vector<U>& v) {
    return std::vector<float>(v.begin(), v.end());
  }
  // "loss", the name of the first parameter tensor with a non-finite gradient, or nullptr.
  const char* first_non_finite(const LossSums& s) const {
    if (!std::isfinite(s.loss)) return "loss";
    const auto& g = model_.grads();
    if (cpu::all_finite(g.data(), g.size())) return nullptr;
    for (const auto& t : model_.layout().tensors())
      if (!cpu::all_finite(g.data() + t.offset, t.size())) return t.name.c_str();
    return "gradient";
  }
  void copy_noise(const float* eps, int n) {
    const std::size_t count = static_cast<std::size_t>(n) * model_.config().samples * model_.config().latent;
    std::copy(eps, eps + count, eps_.begin());
  }
  void adam_step() {
    ++step_;
    const ew::AdamScalars s = ew::adam_scalars(train_.adam.lr, train_.adam.beta1, train_.adam.beta2, train_.adam.eps, step_);
    cpu::adam_pass(model_.params().data(), m_.data(), v_.data(), model_.grads().data(), model_.params().size(), s);
  }

  TrainConfig train_;
  CpuModel<T> model_;
  RngPlan plan_;
  StepNoise eps_noise_, eval_noise_;
  std::unique_ptr<StepNoise> bin_noise_;
  int threads_ = 1;
  std::shared_ptr<const Dataset> data_;
  std::vector<T> x_, eps_, m_, v_;
  std::int64_t step_ = 0;
  LossSums sums_;
  StepHealth health_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const ModelConfig& model, const TrainConfig& train) {
  model.validate();
  train.validate();
  if (train.precision == Precision::fp64) return std::make_unique<CpuBackend<double>>(model, train);
  return std::make_unique<CpuBackend<float>>(model, train);
}

}  // namespace vae
