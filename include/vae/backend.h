// The backend interface. The trainer talks only to this; the CPU backend (host/) and the
// CUDA backend (kernels/) implement it. A backend owns the parameters, the gradients, the
// optimizer state and everything a training step needs, allocated once.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vae/batch_stream.h"
#include "vae/config.h"
#include "vae/data.h"
#include "vae/layout.h"
#include "vae/standardize.h"

namespace vae {

// Sums over data points (not means): divide by count for nats per data point.
struct LossSums {
  double loss = 0;   // -ELBO = recon + beta * kl
  double recon = 0;  // -(1/L) sum_l log p(x|z_l)
  double kl = 0;     // KL(q(z|x) || p(z))
  std::int64_t count = 0;

  LossSums& operator+=(const LossSums& o) {
    loss += o.loss;
    recon += o.recon;
    kl += o.kl;
    count += o.count;
    return *this;
  }
  double mean_loss() const { return count ? loss / double(count) : 0.0; }
  double mean_recon() const { return count ? recon / double(count) : 0.0; }
  double mean_kl() const { return count ? kl / double(count) : 0.0; }
};

// Steps whose loss or gradient was not finite. Such a step changes no parameter and adds
// nothing to the loss sums; with NanPolicy::stop the backend then halts (later steps do
// nothing) until the trainer reads this at its report and stops.
struct StepHealth {
  std::int64_t bad_steps = 0;
  std::int64_t first_bad_step = -1;   // global step index
  std::string first_bad_tensor;       // "loss" or a parameter tensor's name (its gradient)
  bool halted = false;
};

// The optimizer's state: two flat slots in the parameters' layout (adam/adamw: the moments m
// and v; sgd: the momentum buffer in m; rmsprop: the squared-gradient average in v) and the
// number of updates of each parameter group. The groups differ only under the alternating
// (variational EM) schedule; a group's count is the t of its updates (Adam's and AdamW's
// bias corrections use it).
struct OptimizerState {
  std::vector<float> m, v;
  std::int64_t step = 0;          // updates of the encoder's parameters (phi)
  std::int64_t step_decoder = 0;  // updates of the decoder's parameters (theta)
};

// Estimates of log p(x) over a dataset, as sums over data points (nats).
struct LikelihoodSums {
  double recon = 0;  // -(1/K) sum_k log p(x|z_k), z_k ~ q(z|x)
  double kl = 0;     // KL(q(z|x) || p(z)), closed form; ELBO = -(recon + kl)
  double iwae = 0;   // log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x): the IWAE bound, -> log p(x)
  double prior = 0;  // log (1/K) sum_k p(x|z_k), z_k ~ p(z): the naive estimate
  std::int64_t count = 0;
  int k = 0;
};

class Communicator;  // vae/distributed.h

class Backend {
 public:
  virtual ~Backend() = default;

  // Data-parallel training (vae/distributed.h): the ranks train_step sums its gradient and
  // loss sums with (its batches then being shards, Batch::global_size), and evaluate shares
  // its batches with. Null (the default): this process alone. The CPU backend sums with
  // MPI_Allreduce; the CUDA backend with NCCL inside its step graph when every rank can use
  // NCCL (each a GPU of its own), else through host buffers (each step's gradient copied out,
  // summed over MPI, copied back, outside the step graph): slow but correct. A collective:
  // every rank calls it at the same point.
  virtual void set_communicator(Communicator* comm);
  // How train_step sums the ranks' gradients, e.g. "MPI_Allreduce" or "NCCL 2.28.9
  // (libnccl.so.2)"; empty without a communicator.
  virtual std::string gradient_sum() const { return {}; }

  virtual std::string name() const = 0;  // e.g. "cpu (fp32, 2 threads)" or "cuda (NVIDIA H100 ...)"
  virtual const ParamLayout& layout() const = 0;
  virtual const ModelConfig& model_config() const = 0;  // the model it was made with

  // Parameters in the flat layout. A new backend's parameters are all zero: give it
  // init_parameters(layout(), model, seed) (or a loaded model's) before training or evaluating.
  // Setting them leaves the optimizer state alone. Only the count is checked (vae::Error):
  // parameters of another model with as many values are taken as they are.
  virtual void set_parameters(const std::vector<float>& flat) = 0;
  virtual std::vector<float> parameters() const = 0;
  // Gradient of the last train_step's batch loss (mean over the batch), flat.
  virtual std::vector<float> gradients() const = 0;
  virtual OptimizerState optimizer_state() const = 0;
  virtual void set_optimizer_state(const OptimizerState&) = 0;

  // The training set; the backend keeps it (the CUDA backend uploads it or streams it),
  // standardized when set_standardization gave a scaling. Throws vae::Error unless it has
  // items of model.input_dim values that pass Dataset::validate() (and lie in [0, 1] for the
  // Bernoulli likelihood).
  void set_train_data(std::shared_ptr<const Dataset> data);
  // One training step (docs/ARCHITECTURE.md, "One training step"): the gradient of the
  // batch's loss, then the optimizer; a non-finite step is dropped (StepHealth). The loss
  // sums accumulate inside the backend.
  // The batch (from a BatchStream over the training set, its batch size at most
  // TrainConfig::batch) indexes the set given to set_train_data, which must come first.
  virtual void train_step(const Batch& batch) = 0;
  // Loss sums since the last call, then zero: the one host read per report.
  virtual LossSums take_train_sums() = 0;
  // Sets the running loss sums (resuming mid-epoch continues the same accumulation).
  virtual void restore_train_sums(const LossSums& sums) = 0;
  // Non-finite steps so far (one host read, like take_train_sums).
  virtual StepHealth health() = 0;
  // -ELBO and its parts over a whole dataset, in order, TrainConfig::eval_batch items at a
  // time, with the evaluation noise stream (the same noise at every call).
  LossSums evaluate(const Dataset& data);
  // log p(x) estimated with k importance samples from q(z|x) (IWAE) and k from the prior,
  // with the ELBO from the same samples; noise from its own streams (see rng.h).
  LikelihoodSums estimate_log_likelihood(const Dataset& data, int k);
  // The training loss's gradient on one batch at the current parameters, with the noise of
  // step `noise_step` and the given encoder estimator; nothing is updated or accumulated.
  // gradients() then holds it. Returns the batch's loss sums.
  virtual LossSums compute_gradient(const Batch& batch, std::int64_t noise_step, Estimator estimator) = 0;

  // The encoder's output for items [begin, begin + n) of `data`: (n, 2Z), each row the
  // posterior's mean mu in columns [0, Z) and its log-variance in [Z, 2Z); and the decoder's
  // means (rows, D) for codes z (rows, Z), rows = z.size() / Z: sigmoid of the logits
  // (Bernoulli), the Gaussian mean, or exp of the log-rate / log-mean (count likelihoods). At the current parameters; any n and rows (in chunks);
  // nothing the training sees changes.
  // A conditional model (ModelConfig::condition) takes the conditions with the data
  // (Dataset::condition) and, for decode_means, one condition row per code.
  std::vector<float> encode(const Dataset& data, std::int64_t begin, std::int64_t n);
  std::vector<float> decode_means(const std::vector<float>& z, const Condition& condition = {});
  // The posterior means mu (n, Z) alone: encode's first Z columns.
  std::vector<float> encode_means(const Dataset& data, std::int64_t begin, std::int64_t n);

  // Count likelihoods (counts_likelihood): uint8 data given to any call above are read as
  // the counts 0..255, not as pixels x / 255.
  // --standardize (vae/standardize.h): the data every call above takes, and the decoder
  // means it returns, are in the original units; the model inside sees (x - mean) / std, and
  // the log-likelihoods evaluate and estimate_log_likelihood report count the Jacobian.
  // Empty (the default): no scaling. Give it before set_train_data; a scaling that does not
  // fit the model (check_scaling) is refused (vae::Error), and so is set_train_data on a
  // standardized model without one.
  void set_standardization(Standardization scaling);
  const Standardization& standardization() const { return scaling_; }

 private:
  // What each backend implements: the calls above on data already standardized.
  virtual void do_set_train_data(std::shared_ptr<const Dataset> data) = 0;
  virtual LossSums do_evaluate(const Dataset& data) = 0;
  virtual LikelihoodSums do_estimate_log_likelihood(const Dataset& data, int k) = 0;
  virtual std::vector<float> do_encode(const Dataset& data, std::int64_t begin, std::int64_t n) = 0;
  // codes: (rows, decoder_input_dim) rows [z, c], the condition c already appended.
  virtual std::vector<float> do_decode_means(const std::vector<float>& codes) = 0;

  // The data as the model sees it: standardized, or uint8 read as counts; nullopt when it is
  // the data as given (checked then by the backend itself).
  std::optional<Dataset> model_view(const Dataset& data, const char* what) const;
  bool needs_view(const Dataset& data) const;  // whether model_view would copy

  Standardization scaling_;
  bool has_train_data_ = false;
};

// Throws vae::Error unless `data` fits the model: its own consistency (Dataset::validate),
// model.input_dim features per item, the model's kind and size of condition (given, or
// appended in a backend's view) and, for the Bernoulli likelihood, every f32 value in [0, 1].
// `what` names the set in messages. Every backend call that takes data checks it so.
void check_data(const ModelConfig& model, const Dataset& data, const char* what = "data");

// FLOPs of one training step's GEMMs (forward, weight and input gradients) for a batch of
// `batch` data points with `samples` z each: what the benchmark divides by the step time.
double train_step_gemm_flops(const ModelConfig& model, int batch, int samples);
// The FP32 GEMM rate (GFLOP/s) the device's BLAS reaches on an m x n x k product: cuBLAS
// (FP32, no TF32) on the GPU, OpenBLAS on the CPU, on non-constant operands. The best of 10
// timed products: what the BLAS reaches, which a stretch of noise on a shared machine lowers.
double measure_sgemm_gflops(Device device, int m, int n, int k);

// The CPU backend's threads for TrainConfig::threads 0 (then governed by the machine's load):
// the machine's cores, divided among the processes of an mpirun launch on it (at least 1).
int default_cpu_threads();

// Whether a CUDA device is usable; if not, `why` says why (no driver, no device, not built).
bool cuda_usable(std::string* why);
// auto -> cuda when usable, else cpu. `note` says what was chosen and why.
Device resolve_device(Device requested, std::string* note);
// A backend for this model and training configuration (both validated; vae::Error names a
// bad field). Device::automatic resolves as resolve_device does. Throws vae::Error when the
// device cannot be used (for example cuda without a GPU).
std::unique_ptr<Backend> make_backend(Device device, const ModelConfig&, const TrainConfig&);

}  // namespace vae
