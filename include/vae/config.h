// Model and training configuration: the reference configuration is the default.
// Everything here is plain data; parsing and JSON live in host/config.cpp.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace vae {

enum class Activation : int { relu = 0, tanh = 1, leaky_relu = 2, softplus = 3 };
enum class Likelihood : int { bernoulli = 0, gaussian = 1, poisson = 2, negative_binomial = 3, zinb = 4 };
// Whether the likelihood models counts: its data are non-negative integers, and uint8 data
// are read as the counts 0..255, not as pixels x / 255.
inline bool counts_likelihood(Likelihood lik) {
  return lik == Likelihood::poisson || lik == Likelihood::negative_binomial || lik == Likelihood::zinb;
}
// The ZINB's zero-inflation logit: one learned per feature (decoder.zi_logit), or one per
// item and feature from the decoder (its output layer gives 2D values: the log-means, then
// the logits), as scVI's gene and gene-cell dropout.
enum class ZeroInflation : int { feature = 0, item = 1 };
enum class Binarize : int { none = 0, static_threshold = 1, dynamic = 2 };
// What a conditional VAE is conditioned on (ModelConfig::condition): nothing; class labels,
// one-hot encoded; or real-valued covariates.
enum class ConditionKind : int { none = 0, classes = 1, covariates = 2 };
enum class Device : int { automatic = 0, cpu = 1, cuda = 2 };
enum class Precision : int { fp32 = 0, fp64 = 1 };
enum class NanPolicy : int { stop = 0, skip = 1 };  // on a non-finite loss or gradient
enum class Optimizer : int { adam = 0, adamw = 1, sgd = 2, rmsprop = 3 };
enum class LrSchedule : int { constant = 0, cosine = 1, step = 2 };
enum class Objective : int { elbo = 0, iwae = 1 };
enum class Estimator : int { reparam = 0, score = 1 };  // the encoder's gradient estimator
enum class Schedule : int { joint = 0, alternating = 1 };  // variational EM: E-steps then M-steps

const char* to_string(Activation);
const char* to_string(Likelihood);
const char* to_string(Binarize);
const char* to_string(ZeroInflation);
const char* to_string(ConditionKind);
const char* to_string(Device);
const char* to_string(Precision);
const char* to_string(NanPolicy);
const char* to_string(Optimizer);
const char* to_string(LrSchedule);
const char* to_string(Objective);
const char* to_string(Estimator);
const char* to_string(Schedule);
// Parse a name; throws vae::Error listing the accepted names.
Activation parse_activation(const std::string&);
Likelihood parse_likelihood(const std::string&);
Binarize parse_binarize(const std::string&);
ZeroInflation parse_zero_inflation(const std::string&);
ConditionKind parse_condition_kind(const std::string&);
Device parse_device(const std::string&);
Precision parse_precision(const std::string&);
NanPolicy parse_nan_policy(const std::string&);
Optimizer parse_optimizer(const std::string&);
LrSchedule parse_lr_schedule(const std::string&);
Objective parse_objective(const std::string&);
Estimator parse_estimator(const std::string&);
Schedule parse_schedule(const std::string&);
// The widest layer a model may have (--hidden, --decoder-hidden, and the same fields of a
// configuration file); parse_int_list's bound for every list it reads.
inline constexpr int kMaxLayerWidth = 1000000;
// "512,256" -> {512, 256}; throws on anything but integers in [1, kMaxLayerWidth].
std::vector<int> parse_int_list(const std::string& text, const std::string& what);

struct ModelConfig {
  int input_dim = 784;                   // D, taken from the data
  std::vector<int> encoder_hidden{400};  // widths of the encoder's hidden layers
  std::vector<int> decoder_hidden{400};  // {} = a linear decoder. Not derived from encoder_hidden
                                         // here (the CLI's --decoder-hidden defaults to --hidden
                                         // reversed): set both when you change the widths
  int latent = 20;                       // Z
  Activation activation = Activation::relu;
  Likelihood likelihood = Likelihood::bernoulli;
  double sigma = 0.1;        // Gaussian decoder: fixed std, or the initial value when learned
  bool learn_sigma = false;  // Gaussian decoder: learn a per-dimension log-variance
  bool standardize = false;  // Gaussian decoder: train on each feature scaled by the training
                             // set's mean and std (vae/standardize.h)
  bool log1p_input = false;  // count likelihoods: the encoder sees log(1 + x), the likelihood x
  ZeroInflation zero_inflation = ZeroInflation::feature;  // zinb: per feature, or per item and feature
  bool library_size = false; // count likelihoods: the log-rate / log-mean of item b gets
                             // log(l_b), l_b = max(1, its total count) (scVI's library size)
  // Conditional VAE: each item's condition c (condition_dim values: a one-hot class or
  // covariates) is appended to the encoder's input [x, c] and to the decoder's [z, c].
  // Both are taken from the condition file (vae/data.h, read_condition).
  ConditionKind condition = ConditionKind::none;
  int condition_dim = 0;     // C; 0 without a condition
  int samples = 1;           // L, Monte Carlo samples per data point
  double beta = 1.0;         // weight of the KL term

  void validate() const;  // throws vae::Error naming the bad field and its CLI option
};

// Values per item the model's passes see: the features, then the condition (D + C).
inline int data_width(const ModelConfig& m) { return m.input_dim + m.condition_dim; }
// The decoder's input per sample: z, then the condition (Z + C).
inline int decoder_input_dim(const ModelConfig& m) { return m.latent + m.condition_dim; }

// Whether the decoder gives the ZINB's zero-inflation logits per item (ZeroInflation::item).
inline bool zero_inflation_per_item(const ModelConfig& m) {
  return m.likelihood == Likelihood::zinb && m.zero_inflation == ZeroInflation::item;
}
// The output layer's values per sample: D, or 2D with per-item zero-inflation logits
// (columns [D, 2D)).
inline int output_width(const ModelConfig& m) { return zero_inflation_per_item(m) ? 2 * m.input_dim : m.input_dim; }

// Whether the likelihood learns one parameter per feature besides the decoder's output (the
// layout's "logvar" slot, ParamLayout::logvar()): the Gaussian's log-variance with
// learn_sigma ("decoder.logvar"), the negative binomial's and the ZINB's log inverse
// dispersion ("decoder.log_theta"). The ZINB has a second one, its zero-inflation logit
// ("decoder.zi_logit", ParamLayout::zi()), unless the decoder gives it per item.
inline bool has_feature_parameter(const ModelConfig& m) {
  return (m.likelihood == Likelihood::gaussian && m.learn_sigma) || m.likelihood == Likelihood::negative_binomial ||
         m.likelihood == Likelihood::zinb;
}

// The optimizer, in PyTorch's forms (torch.optim.Adam, AdamW, SGD, RMSprop), and its
// learning-rate schedule.
struct OptimizerConfig {
  Optimizer kind = Optimizer::adam;
  double lr = 1e-3;
  double beta1 = 0.9;            // adam, adamw
  double beta2 = 0.999;          // adam, adamw
  double eps = 1e-8;             // adam, adamw, rmsprop
  double weight_decay = 0.01;    // adamw: decoupled, p -= lr * wd * p
  double momentum = 0.9;         // sgd
  double alpha = 0.99;           // rmsprop: smoothing of the squared gradient
  LrSchedule schedule = LrSchedule::constant;
  double lr_min = 0.0;           // cosine: the last step's learning rate
  int lr_step_epochs = 3;        // step: multiply by lr_gamma every this many epochs
  double lr_gamma = 0.5;
};

struct TrainConfig {
  std::string train_path;  // empty: Fashion-MNIST train from dataset-fashion-mnist
  std::string test_path;   // empty: Fashion-MNIST test
  std::string test_labels_path;  // labels of the test set (IDX), for the 2-D latent scatter
  std::string condition_path;       // conditional VAE: the training items' conditions (vae/data.h)
  std::string test_condition_path;  // and the test items'
  bool mmap = false;                // memory-map the data files (read_dataset); else automatic for large ones
  int condition_classes = 0;        // labels: one-hot width; 0 = the largest training label + 1
  int epochs = 10;
  int batch = 128;
  OptimizerConfig optimizer;
  Objective objective = Objective::elbo;
  int iw_k = 5;                          // IWAE: importance samples per data point
  Estimator estimator = Estimator::reparam;
  std::int64_t kl_warmup_steps = 0;      // beta ramps linearly from 0 over this many steps
  Schedule schedule = Schedule::joint;
  int e_steps = 1, m_steps = 1;          // alternating: encoder-only steps, then decoder-only steps
  std::uint64_t seed = 1;
  Binarize binarize = Binarize::none;
  Device device = Device::automatic;
  Precision precision = Precision::fp32;  // the CPU path can run in double
  int threads = 0;                        // CPU threads; 0 = all cores, governed by the machine's load
  bool stream_data = false;               // CUDA: force the streamed (chunked) data path
  std::string out;                        // empty: runs/<timestamp>
  bool overwrite = false;                 // allow writing into a non-empty OUT
  int eval_batch = 1000;
  int checkpoint_every = 1;               // write OUT/model.safetensors every N epochs (and at the end)
  bool progress = false;                  // a progress bar (for terminals) instead of plain lines
  NanPolicy on_nan = NanPolicy::stop;     // a step with a non-finite loss or gradient: stop, or skip it
  int processes = 1;                      // data parallel: the ranks of the mpirun launch (vae/distributed.h)

  void validate() const;  // throws vae::Error naming the bad field and its CLI option
};

// The checks that need both: throws vae::Error when the training configuration does not
// fit the model (binarized pixels for a count likelihood or a standardized model). The
// option parsing and Session call it.
void check_together(const ModelConfig&, const TrainConfig&);

// What a training step uses besides the parameters: its learning rate, its KL weight, and
// which parameter groups it updates. Both backends take these from here, so they agree.
struct StepScalars {
  double lr = 0;
  double beta = 1;
  bool update_encoder = true;  // encoder.* (phi): the E-step's group
  bool update_decoder = true;  // decoder.* (theta): the M-step's group
};
StepScalars step_scalars(const ModelConfig&, const TrainConfig&, std::int64_t step, std::int64_t steps_per_epoch);

// Samples of z per data point a training step draws: L for the ELBO, K for IWAE.
int train_samples(const ModelConfig&, const TrainConfig&);

// The effective configuration as JSON text (what config.json holds), and back.
std::string config_to_json(const ModelConfig&, const TrainConfig&, const std::string& device_used = "");
void config_from_json(const std::string& json_text, ModelConfig&, TrainConfig&);

}  // namespace vae
