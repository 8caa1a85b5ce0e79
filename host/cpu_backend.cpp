// The CPU backend: CpuModel plus the batch gather, cuRAND host noise, the optimizers and
// their schedules, loss sums, the NaN guard and the log-likelihood estimates.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <new>

#include "backend_shared.h"
#include "cpu_model.h"
#include "cpu_passes.h"
#include "elementwise.h"
#include "internal.h"
#include "load_governor.h"
#include "rng.h"
#include "vae/distributed.h"
#include "vae/error.h"

namespace vae {
namespace {

constexpr std::size_t kNoiseBlockValues = std::size_t(1) << 22;  // 16 MiB of noise per block

// One OpenMP pool serves our loops and the blocks of each product; OpenBLAS itself runs on one
// thread, so that the bits do not depend on the thread count (blas.h). By default the cores,
// shared among the processes of an mpirun launch on this machine.
int set_cpu_threads(int requested) {
  const int n = requested > 0 ? requested : default_cpu_threads();
  omp_set_num_threads(n);
  return n;
}

// A running log-sum-exp: the estimates add samples chunk by chunk, in order.
struct LogSumExp {
  double max = -INFINITY, sum = 0;
  void add(double v) { ew::logsumexp_add(max, sum, v); }
  double log_mean(int k) const { return ew::logsumexp_log_mean(max, sum, k); }
};

template <class T>
class CpuBackend final : public Backend {
 public:
  CpuBackend(const ModelConfig& model, const TrainConfig& train)
      : model_cfg_(model),
        train_(train),
        train_samples_(train_samples(model, train)),
        model_(model, std::max(train.batch, train.eval_batch), std::max(train_samples_, model.samples)),
        plan_(RngPlan::make(train.seed, model, train.batch, train_samples_)),
        eps_noise_(plan_.eps_seed, StepNoise::Kind::normal, plan_.eps_stride, kNoiseBlockValues),
        eval_noise_(plan_.eval_seed, StepNoise::Kind::normal, RngPlan::eval_stride(model, train.eval_batch),
                    kNoiseBlockValues) {
    threads_ = set_cpu_threads(train.threads);
    if (train.threads == 0) governor_ = std::make_unique<LoadGovernor>(threads_);  // explicit --threads: fixed
    const std::size_t B = static_cast<std::size_t>(model_.max_batch());
    x_.assign(B * static_cast<std::size_t>(data_width(model)), T(0));
    eps_.assign(B * model_.max_samples() * model.latent, T(0));
    if (train.binarize == Binarize::dynamic)
      bin_noise_ = std::make_unique<StepNoise>(plan_.bin_seed, StepNoise::Kind::uniform, plan_.bin_stride, kNoiseBlockValues);
    m_.assign(model_.layout().total(), T(0));
    v_.assign(model_.layout().total(), T(0));
  }

  std::string name() const override {
    return std::string("cpu (") + (sizeof(T) == 8 ? "fp64" : "fp32") + ", OpenBLAS " + openblas_get_corename() +
           " kernels, " + std::to_string(threads_) + (threads_ == 1 ? " thread" : " threads") +
           (governor_ && threads_ > 1 ? ", fewer while other work holds cores)" : ")");
  }
  const ParamLayout& layout() const override { return model_.layout(); }
  const ModelConfig& model_config() const override { return model_cfg_; }
  void set_communicator(Communicator* comm) override { comm_ = comm; }
  std::string gradient_sum() const override { return comm_ ? "MPI_Allreduce" : ""; }

  void set_parameters(const std::vector<float>& flat) override {
    check_size(flat.size(), "set_parameters");
    std::copy(flat.begin(), flat.end(), model_.params().begin());
  }
  std::vector<float> parameters() const override { return to_float(model_.params()); }
  std::vector<float> gradients() const override { return to_float(model_.grads()); }
  OptimizerState optimizer_state() const override { return {to_float(m_), to_float(v_), steps_[0], steps_[1]}; }
  void set_optimizer_state(const OptimizerState& s) override {
    check_size(s.m.size(), "set_optimizer_state (m)");
    check_size(s.v.size(), "set_optimizer_state (v)");
    if (s.step < 0 || s.step_decoder < 0) throw_error("set_optimizer_state: negative step count");
    std::copy(s.m.begin(), s.m.end(), m_.begin());
    std::copy(s.v.begin(), s.v.end(), v_.begin());
    steps_[0] = s.step;
    steps_[1] = s.step_decoder;
  }

  void do_set_train_data(std::shared_ptr<const Dataset> data) override {
    check_nonempty_data(model_cfg_, *data, "set_train_data", "training data");
    steps_per_epoch_ = (data->count + train_.batch - 1) / train_.batch;
    data_ = std::move(data);
  }

  void train_step(const Batch& batch) override {
    check_batch(batch, batch.step, train_.batch, data_.get(), "train_step");
    govern();
    if (health_.halted) return;  // a non-finite step under NanPolicy::stop: wait for the trainer
    const StepScalars ss = step_scalars(model_cfg_, train_, batch.step, steps_per_epoch_);
    LossSums s = gradient_of(batch, batch.step, training_pass(train_, train_.estimator), ss.beta);
    if (comm_) {  // every rank then holds the global batch's gradient and sums
      sum_shard_gradients(*comm_, batch, model_.grads_mut().data(), model_.grads_mut().size());
      sum_across_ranks(*comm_, s);
    }
    if (const char* bad = first_non_finite(s)) {  // no update, no loss: the step is dropped
      if (health_.bad_steps++ == 0) {
        health_.first_bad_step = batch.step;
        health_.first_bad_tensor = bad;
      }
      health_.halted = train_.on_nan == NanPolicy::stop;
      return;
    }
    optimizer_step(ss);
    sums_ += s;
  }

  LossSums compute_gradient(const Batch& batch, std::int64_t noise_step, Estimator estimator) override {
    check_batch(batch, noise_step, train_.batch, data_.get(), "compute_gradient");
    govern();
    const StepScalars ss = step_scalars(model_cfg_, train_, noise_step, steps_per_epoch_);
    return gradient_of(batch, noise_step, training_pass(train_, estimator), ss.beta);
  }

  LossSums take_train_sums() override {
    const LossSums s = sums_;
    sums_ = LossSums{};
    return s;
  }
  void restore_train_sums(const LossSums& sums) override { sums_ = sums; }
  StepHealth health() override { return health_; }

  LossSums do_evaluate(const Dataset& data) override {
    check_nonempty_data(model_cfg_, data, "evaluate");
    const int batch = train_.eval_batch;
    const int L = model_cfg_.samples;
    const int D = data.dim;
    LossSums total;
    std::int64_t k = 0;
    for (std::int64_t begin = 0; begin < data.count; begin += batch, ++k) {
      if (!evaluates_batch(comm_, k)) continue;
      govern();
      const int n = static_cast<int>(std::min<std::int64_t>(batch, data.count - begin));
      for (int i = 0; i < n; ++i) data.row_as<T>(begin + i, x_.data() + static_cast<std::size_t>(i) * D);
      copy_noise(eval_noise_.step(k), static_cast<std::size_t>(n) * L * model_cfg_.latent);
      total += model_.run(x_.data(), eps_.data(), n, L, model_cfg_.beta, Pass::forward);
    }
    if (comm_) sum_across_ranks(*comm_, total);
    return total;
  }

  LikelihoodSums do_estimate_log_likelihood(const Dataset& data, int k) override {
    check_nonempty_data(model_cfg_, data, "estimate_log_likelihood");
    if (k < 1) throw_error("estimate_log_likelihood: k must be >= 1, got ", k);
    const int Z = model_cfg_.latent, D = data.dim;
    const int chunk = std::min(k, kIwChunk);
    const int n_max = std::max(1, std::min(model_.max_batch(), (model_.max_batch() * model_.max_samples()) / chunk));
    CpuModel<T>& m = iw_model(n_max, chunk);
    const std::size_t stride = RngPlan::iw_stride(model_cfg_, k);
    HostPhilox q_rng(derive_seed(train_.seed, RngStream::iw_q)), p_rng(derive_seed(train_.seed, RngStream::iw_prior));
    std::vector<float> noise(round_up_even(static_cast<std::size_t>(n_max) * stride));
    std::vector<T> eps(static_cast<std::size_t>(n_max) * chunk * Z), x(static_cast<std::size_t>(n_max) * D);
    LikelihoodSums total;
    total.k = k;
    std::vector<LogSumExp> lq(n_max), lp(n_max);
    std::vector<double> recon(n_max);
    for (std::int64_t begin = 0; begin < data.count; begin += n_max) {
      const int n = static_cast<int>(std::min<std::int64_t>(n_max, data.count - begin));
      for (int i = 0; i < n; ++i) data.row_as<T>(begin + i, x.data() + static_cast<std::size_t>(i) * D);
      std::fill(lq.begin(), lq.end(), LogSumExp{});
      std::fill(lp.begin(), lp.end(), LogSumExp{});
      std::fill(recon.begin(), recon.end(), 0.0);
      for (int use_prior = 0; use_prior < 2; ++use_prior) {
        (use_prior ? p_rng : q_rng).normal(noise.data(), static_cast<std::size_t>(n) * stride,
                                            static_cast<std::uint64_t>(begin) * stride);
        for (int c0 = 0; c0 < k; c0 += chunk) {
          const int c = std::min(chunk, k - c0);
          for (int i = 0; i < n; ++i)
            for (int s = 0; s < c; ++s)
              for (int j = 0; j < Z; ++j)
                eps[(static_cast<std::size_t>(i) * c + s) * Z + j] =
                    T(noise[static_cast<std::size_t>(i) * stride + static_cast<std::size_t>(c0 + s) * Z + j]);
          if (use_prior) {
            m.decode_log_likelihood(x.data(), eps.data(), n, c);  // z = eps ~ N(0, I)
          } else {
            const LossSums s = m.run(x.data(), eps.data(), n, c, 1.0, Pass::forward);
            if (c0 == 0) total.kl += s.kl;
          }
          for (int i = 0; i < n; ++i)
            for (int s = 0; s < c; ++s) {
              const std::size_t r = static_cast<std::size_t>(i) * c + s;
              if (use_prior) {
                lp[i].add(double(m.row_logp()[r]));
              } else {
                lq[i].add(double(m.row_logp()[r]) + double(m.row_lpq()[r]));
                recon[i] -= double(m.row_logp()[r]);
              }
            }
        }
      }
      for (int i = 0; i < n; ++i) {
        total.iwae += lq[i].log_mean(k);
        total.prior += lp[i].log_mean(k);
        total.recon += recon[i] / k;
      }
      total.count += n;
    }
    return total;
  }

  std::vector<float> do_encode(const Dataset& data, std::int64_t begin, std::int64_t n) override {
    check_encode_args(model_cfg_, data, begin, n);
    const int Z = model_cfg_.latent, D = data.dim, chunk = model_.max_batch();
    std::vector<float> head(static_cast<std::size_t>(n) * 2 * Z);
    for (std::int64_t b = 0; b < n; b += chunk) {
      const int k = static_cast<int>(std::min<std::int64_t>(chunk, n - b));
      for (int i = 0; i < k; ++i) data.row_as<T>(begin + b + i, x_.data() + static_cast<std::size_t>(i) * D);
      model_.run(x_.data(), eps_.data(), k, 1, model_cfg_.beta, Pass::forward);  // mu does not depend on eps
      for (int i = 0; i < k; ++i) {
        const T* row = model_.head() + static_cast<std::size_t>(i) * 2 * Z;
        std::copy(row, row + 2 * Z, head.begin() + static_cast<std::ptrdiff_t>((b + i) * 2 * Z));
      }
    }
    return head;
  }

  std::vector<float> do_decode_means(const std::vector<float>& z) override {
    const std::int64_t rows = decoder_input_rows(model_cfg_, z);
    const int Z = decoder_input_dim(model_cfg_), D = model_cfg_.input_dim;
    const int chunk = model_.max_batch() * model_.max_samples();
    std::vector<float> out(static_cast<std::size_t>(rows) * D);
    std::vector<T> zc(static_cast<std::size_t>(chunk) * Z), mean(static_cast<std::size_t>(chunk) * D);
    for (std::int64_t b = 0; b < rows; b += chunk) {
      const int k = static_cast<int>(std::min<std::int64_t>(chunk, rows - b));
      std::copy_n(z.begin() + static_cast<std::ptrdiff_t>(b * Z), static_cast<std::size_t>(k) * Z, zc.begin());
      model_.decode_mean(zc.data(), k, mean.data());
      std::copy_n(mean.begin(), static_cast<std::size_t>(k) * D, out.begin() + static_cast<std::ptrdiff_t>(b * D));
    }
    return out;
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
  void copy_noise(const float* eps, std::size_t count) { std::copy(eps, eps + count, eps_.begin()); }

  // The pool's size for the next pass, by the load governor (the results do not depend on it).
  void govern() {
    if (!governor_) return;
    const int t = governor_->threads();
    if (t != omp_get_max_threads()) omp_set_num_threads(t);
  }

  // Gather, noise and one forward+backward pass of `pass` on the batch (checked by the caller).
  // A data-parallel shard takes the noise of its items' places in the global batch; an empty
  // one (a global batch of fewer items than ranks) has no gradient and no sums.
  LossSums gradient_of(const Batch& batch, std::int64_t noise_step, Pass pass, double beta) {
    const int n = batch.size;
    const int D = data_width(model_cfg_);
    if (n == 0) {
      std::fill(model_.grads_mut().begin(), model_.grads_mut().end(), T(0));
      return LossSums{};
    }
    const std::size_t at = static_cast<std::size_t>(batch.offset);  // 0 unless a shard
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; ++i) data_->row_as<T>(batch.indices[i], x_.data() + static_cast<std::size_t>(i) * D);
    if (train_.binarize == Binarize::dynamic) {
      const std::size_t nd = static_cast<std::size_t>(n) * D;
      const float* u = bin_noise_->step(noise_step) + at * D;
      for (std::size_t i = 0; i < nd; ++i) x_[i] = T(u[i]) <= x_[i] ? T(1) : T(0);
    }
    const std::size_t per_item = static_cast<std::size_t>(train_samples_) * model_cfg_.latent;
    copy_noise(eps_noise_.step(noise_step) + at * per_item, static_cast<std::size_t>(n) * per_item);
    return model_.run(x_.data(), eps_.data(), n, train_samples_, beta, pass);
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

  // The optimizer over the groups this step updates (encoder: [0, encoder_end), decoder: the rest).
  void optimizer_step(const StepScalars& ss) {
    const std::size_t split = model_.layout().encoder_end(), total = model_.params().size();
    const bool update[2] = {ss.update_encoder, ss.update_decoder};
    const std::size_t begin[2] = {0, split}, end[2] = {split, total};
    for (int grp = 0; grp < 2; ++grp) {
      if (!update[grp]) continue;
      const ew::OptimizerScalars s = ew::optimizer_scalars(train_.optimizer, ss.lr, ++steps_[grp]);
      cpu::optimizer_pass(model_.params().data() + begin[grp], m_.data() + begin[grp], v_.data() + begin[grp],
                          model_.grads().data() + begin[grp], end[grp] - begin[grp], s);
    }
  }

  // A model for estimate_log_likelihood (n data points x chunk samples), sharing the parameters.
  CpuModel<T>& iw_model(int n, int chunk) {
    if (!iw_model_ || iw_model_->max_batch() < n || iw_model_->max_samples() < chunk)
      iw_model_ = std::make_unique<CpuModel<T>>(model_cfg_, n, chunk);
    iw_model_->params() = model_.params();
    return *iw_model_;
  }

  ModelConfig model_cfg_;
  TrainConfig train_;
  int train_samples_;
  CpuModel<T> model_;
  RngPlan plan_;
  StepNoise eps_noise_, eval_noise_;
  std::unique_ptr<StepNoise> bin_noise_;
  std::unique_ptr<CpuModel<T>> iw_model_;
  int threads_ = 1;                          // the most threads
  std::unique_ptr<LoadGovernor> governor_;  // with threads 0 (all cores): fewer on a busy machine
  std::int64_t steps_per_epoch_ = 1;
  std::shared_ptr<const Dataset> data_;
  Communicator* comm_ = nullptr;  // data parallel: the ranks (vae/distributed.h), or null
  std::vector<T> x_, eps_, m_, v_;
  std::int64_t steps_[2] = {0, 0};  // optimizer updates of the encoder and decoder groups
  LossSums sums_;
  StepHealth health_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const ModelConfig& model, const TrainConfig& train) {
  model.validate();
  train.validate();
  try {
    if (train.precision == Precision::fp64) return std::make_unique<CpuBackend<double>>(model, train);
    return std::make_unique<CpuBackend<float>>(model, train);
  } catch (const std::bad_alloc&) {
    throw_out_of_host_memory(model, train, "the CPU backend");
  }
}

}  // namespace vae
