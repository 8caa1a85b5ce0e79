// The table of every training and model option (vae/options.h says what is generated from
// it). An entry: the config.json key, the flag, the member (named by the macro that reaches
// it), the help group and text, then its range, when it applies, and how it is recorded.
// The order is config.json's; within a help group, the help's.
#include <utility>

#include "vae/options.h"

namespace vae {
namespace {

// An entry under construction: the chained calls below say what is not the default.
struct Entry {
  Option o;
  Entry(OptionSection s, const char* key, const char* flag, OptionAccess field, const char* member, OptionGroup g,
        const char* help)
      : o{key, s, flag, member, "", g, help, field, {}, {}} {}
  Entry& label(const char* l) { return o.label = l, *this; }
  Entry& in(double lo, double hi) { return o.range.lo = lo, o.range.hi = hi, *this; }
  Entry& at_least(double lo, const char* note = "") { return o.range.lo = lo, o.range.note = note, *this; }
  Entry& above(double lo) { return o.range.lo = lo, o.range.lo_open = true, *this; }
  Entry& below(double hi) { return o.range.hi = hi, o.range.hi_open = true, *this; }
  Entry& up_to_option(const char* key) { return o.range.hi_key = key, *this; }
  Entry& when(const char* key, std::vector<std::string> values, const char* what) {
    o.applies = {what, key, std::move(values)};
    return *this;
  }
  Entry& not_recorded() { return o.recorded = false, *this; }
  Entry& resumable() { return o.resumable = true, *this; }
  operator Option() const { return o; }  // NOLINT: the table lists entries
};

// The member of ModelConfig or TrainConfig an entry reads and writes, and its name.
#define MODEL(member) OptionSection::model, +[](ModelConfig& c, TrainConfig&) -> auto& { return c.member; }, #member
#define TRAIN(member) OptionSection::train, +[](ModelConfig&, TrainConfig& c) -> auto& { return c.member; }, #member

Entry entry(const char* key, const char* flag, OptionSection s, OptionAccess field, const char* member, OptionGroup g,
            const char* help) {
  return Entry(s, key, flag, field, member, g, help);
}

using G = OptionGroup;

// config.json's "model" section.
std::vector<Option> model_options() {
  return {
      entry("input_dim", nullptr, MODEL(input_dim), G::model, "Values per item (D); taken from the data")
          .label("the data's values per item").at_least(1),
      entry("hidden", "--hidden", MODEL(encoder_hidden), G::model,
            "Encoder hidden widths, comma-separated (e.g. 512,256), or 'none' for a linear encoder")
          .in(1, kMaxLayerWidth),
      entry("decoder_hidden", "--decoder-hidden", MODEL(decoder_hidden), G::model,
            "Decoder hidden widths; default: the encoder's widths reversed")
          .in(1, kMaxLayerWidth),
      entry("latent", "--latent", MODEL(latent), G::model, "Latent size Z").in(1, 65536),
      entry("activation", "--activation", MODEL(activation), G::model,
            "Hidden activation: relu, tanh, leaky_relu (slope 0.01) or softplus"),
      entry("likelihood", "--likelihood", MODEL(likelihood), G::model,
            "Decoder likelihood: bernoulli (logits, targets in [0,1]); gaussian (mean output, any real values); "
            "for counts (non-negative integers; uint8 data are counts 0..255): poisson (log-rate output), "
            "negative-binomial (log-mean output and a learned inverse dispersion per feature, as scVI) and zinb "
            "(the same with a zero-inflation logit, per feature or per item: --zero-inflation)"),
      entry("sigma", "--sigma", MODEL(sigma), G::model,
            "Gaussian decoder: fixed standard deviation, or the initial one with --learn-sigma")
          .above(0).when("likelihood", {"gaussian"}, "the Gaussian decoder's standard deviation"),
      entry("learn_sigma", "--learn-sigma", MODEL(learn_sigma), G::model,
            "Gaussian decoder: learn a per-dimension log-variance")
          .when("likelihood", {"gaussian"}, "for the Gaussian decoder"),
      entry("standardize", "--standardize", MODEL(standardize), G::model,
            "Gaussian decoder: scale each feature by the training set's mean and standard deviation (kept in the "
            "checkpoint; pictures, decode and sample undo it, and log p(x) is in the data's own units)")
          .when("likelihood", {"gaussian"}, "for the Gaussian decoder"),
      entry("log1p_input", "--log1p-input", MODEL(log1p_input), G::model,
            "Count likelihoods: feed the encoder log(1 + x) while the likelihood sees the counts x (for counts as "
            "large as 0..255)")
          .when("likelihood", {"poisson", "negative-binomial", "zinb"}, "for the count likelihoods"),
      entry("zero_inflation", "--zero-inflation", MODEL(zero_inflation), G::model,
            "zinb: the zero-inflation logit per feature (learned, as scVI's gene dropout) or per item (the decoder "
            "outputs one for every item and feature, as scVI's gene-cell dropout)")
          .when("likelihood", {"zinb"}, "the ZINB's zero-inflation"),
      entry("library_size", "--library-size", MODEL(library_size), G::model,
            "Count likelihoods: add the log of each item's total count (its library size, at least 1) to the "
            "decoder's log-rate or log-mean, as scVI does; the decoder then models the counts per unit of library "
            "(decode and sample give those)")
          .when("likelihood", {"poisson", "negative-binomial", "zinb"}, "for the count likelihoods"),
      entry("condition_kind", nullptr, MODEL(condition), G::model,
            "Conditional VAE: none, classes (one-hot labels) or covariates; taken from --condition")
          .label("the condition's kind"),
      entry("condition_dim", nullptr, MODEL(condition_dim), G::model,
            "Conditional VAE: the condition's values per item (C); taken from --condition")
          .label("the condition's values per item").in(0, kMaxLayerWidth),
      entry("samples", "--samples", MODEL(samples), G::model,
            "Monte Carlo samples L of z per data point in the ELBO (with --objective iwae: of the test ELBO; "
            "training draws --k)")
          .in(1, 4096),
      entry("beta", "--beta", MODEL(beta), G::model, "Weight of the KL term (beta-VAE); 1 is the ELBO").at_least(0),
  };
}

// config.json's "train" section: the data, the steps and the optimizer ...
std::vector<Option> training_options() {
  return {
      entry("train", "--train", TRAIN(train_path), G::data,
            "Training images: IDX (.gz or raw) or NPY (2-D float32, float64, uint8, int32 or int64); default: Fashion-MNIST's "
            "training set (apt-get install dataset-fashion-mnist)"),
      entry("test", "--test", TRAIN(test_path), G::data,
            "Test images, same formats; default: Fashion-MNIST t10k (needed when --train names other data)"),
      entry("test_labels", "--test-labels", TRAIN(test_labels_path), G::data,
            "Labels of the test set (IDX), for the latent scatter of a 2-D latent space; default: Fashion-MNIST's")
          .when("latent", {"2"}, "for the latent scatter of a 2-D latent space"),
      entry("mmap", "--mmap", TRAIN(mmap), G::data,
            "Memory-map --train and --test instead of reading them (raw IDX, or raw NPY of float32 or uint8); done "
            "anyway for a file larger than half of the available memory. Compressed files are read whole")
          .not_recorded(),
      entry("condition", "--condition", TRAIN(condition_path), G::data,
            "Conditional VAE: each training item's condition, appended to the encoder's and the decoder's input: "
            "class labels (IDX labels, or an integer NPY of shape (N,) or (N, 1)), one-hot encoded, or covariates "
            "(a float NPY of shape (N, C))"),
      entry("test_condition", "--test-condition", TRAIN(test_condition_path), G::data,
            "The test items' conditions, same formats; default with Fashion-MNIST's training labels as --condition: "
            "its test labels"),
      entry("condition_classes", "--condition-classes", TRAIN(condition_classes), G::data,
            "Classes C of label conditions (one-hot width); default 0: the largest training label + 1")
          .in(0, kMaxLayerWidth),
      entry("epochs", "--epochs", TRAIN(epochs), G::training, "Passes over the training set")
          .in(0, 1 << 30).resumable(),
      entry("batch", "--batch", TRAIN(batch), G::training, "Minibatch size; the last partial batch of an epoch is kept")
          .in(1, 1 << 20),
      entry("eval_batch", "--eval-batch", TRAIN(eval_batch), G::training, "Batch size of the test-set evaluation")
          .in(1, 1 << 20),
      entry("optimizer", "--optimizer", TRAIN(optimizer.kind), G::optimizer,
            "adam, adamw (decoupled --weight-decay), sgd (with --momentum) or rmsprop; PyTorch's forms"),
      entry("lr", "--lr", TRAIN(optimizer.lr), G::optimizer,
            "Learning rate of every optimizer (adam and adamw also use beta1 0.9, beta2 0.999, eps 1e-8)")
          .above(0),
      entry("adam_beta1", nullptr, TRAIN(optimizer.beta1), G::optimizer, "Adam's and AdamW's beta1")
          .label("Adam's beta1").at_least(0).below(1),
      entry("adam_beta2", nullptr, TRAIN(optimizer.beta2), G::optimizer, "Adam's and AdamW's beta2")
          .label("Adam's beta2").at_least(0).below(1),
      entry("eps", nullptr, TRAIN(optimizer.eps), G::optimizer, "The epsilon of Adam, AdamW and RMSprop")
          .label("the optimizer's epsilon").above(0),
      entry("weight_decay", "--weight-decay", TRAIN(optimizer.weight_decay), G::optimizer,
            "AdamW's decoupled weight decay")
          .at_least(0).when("optimizer", {"adamw"}, "AdamW's decoupled weight decay"),
      entry("momentum", "--momentum", TRAIN(optimizer.momentum), G::optimizer, "SGD's momentum")
          .at_least(0).below(1).when("optimizer", {"sgd"}, "SGD's momentum"),
      entry("rmsprop_alpha", "--rmsprop-alpha", TRAIN(optimizer.alpha), G::optimizer,
            "RMSprop's smoothing of the squared gradient")
          .at_least(0).below(1).when("optimizer", {"rmsprop"}, "RMSprop's smoothing"),
      entry("lr_schedule", "--lr-schedule", TRAIN(optimizer.schedule), G::optimizer,
            "constant, cosine (from --lr to --lr-min over the run) or step (times --lr-gamma every --lr-step epochs)"),
      entry("lr_min", "--lr-min", TRAIN(optimizer.lr_min), G::optimizer, "cosine: the learning rate at the last step")
          .at_least(0).up_to_option("lr").when("lr_schedule", {"cosine"}, "the cosine schedule's last learning rate"),
      entry("lr_step", "--lr-step", TRAIN(optimizer.lr_step_epochs), G::optimizer, "step: epochs between decays")
          .at_least(1, "epoch").when("lr_schedule", {"step"}, "the step schedule's period"),
      entry("lr_gamma", "--lr-gamma", TRAIN(optimizer.lr_gamma), G::optimizer, "step: the decay factor")
          .in(0, 1).above(0).when("lr_schedule", {"step"}, "the step schedule's factor"),
  };
}

// ... and the objective, the device and the output.
std::vector<Option> run_options() {
  return {
      entry("objective", "--objective", TRAIN(objective), G::objective,
            "elbo, or iwae: the importance-weighted bound log mean_k p(x,z_k)/q(z_k|x) with --k samples"),
      entry("k", "--k", TRAIN(iw_k), G::objective, "IWAE: importance samples per data point")
          .in(1, 100000).when("objective", {"iwae"}, "the IWAE objective's sample count"),
      entry("estimator", "--estimator", TRAIN(estimator), G::objective,
            "The encoder's gradient: reparam (pathwise) or score (score function, REINFORCE)"),
      entry("kl_warmup", "--kl-warmup", TRAIN(kl_warmup_steps), G::objective,
            "Ramp the KL weight linearly from 0 to --beta over this many steps")
          .at_least(0, "steps"),
      entry("schedule", "--schedule", TRAIN(schedule), G::objective,
            "joint, or alternating (variational EM): --e-steps encoder-only steps, then --m-steps decoder-only steps"),
      entry("e_steps", "--e-steps", TRAIN(e_steps), G::objective, "alternating: E-steps (update phi, theta fixed) per round")
          .at_least(1).when("schedule", {"alternating"}, "the alternating schedule's encoder steps"),
      entry("m_steps", "--m-steps", TRAIN(m_steps), G::objective, "alternating: M-steps (update theta, phi fixed) per round")
          .at_least(1).when("schedule", {"alternating"}, "the alternating schedule's decoder steps"),
      entry("seed", "--seed", TRAIN(seed), G::training,
            "Seed of every random draw: initialization, shuffling, binarization, noise"),
      entry("binarize", "--binarize", TRAIN(binarize), G::data,
            "none (pixels in [0,1]), static (threshold 0.5) or dynamic (a fresh Bernoulli draw per step; the test set "
            "gets one fixed draw)"),
      entry("device", "--device", TRAIN(device), G::device,
            "auto (CUDA when a GPU is usable, else CPU; says which), cpu or cuda")
          .resumable(),
      entry("precision", "--precision", TRAIN(precision), G::device, "CPU arithmetic: fp32 or fp64 (slow; for checks)"),
      entry("threads", "--threads", TRAIN(threads), G::device,
            "CPU threads (the products' blocks and the fused passes share them); 0 = all cores, fewer while other "
            "programs keep cores busy. The results are the same bits at any count")
          .at_least(0, "(0 = all cores)").resumable(),
      entry("stream_data", "--stream-data", TRAIN(stream_data), G::device,
            "CUDA: stream the data in chunks even if it fits on the GPU")
          .when("device", {"auto", "cuda"}, "for the CUDA backend"),
      entry("checkpoint_every", "--checkpoint-every", TRAIN(checkpoint_every), G::output,
            "Write the checkpoint every N epochs (and always at the end)")
          .at_least(1).resumable(),
      entry("on_nan", "--on-nan", TRAIN(on_nan), G::training,
            "A step with a non-finite loss or gradient: stop (keep the last good checkpoint) or skip the step"),
      entry("processes", nullptr, TRAIN(processes), G::device,
            "Data parallel: the processes of the run (mpirun -np N); taken from the launch")
          .label("the run's processes").in(1, 1 << 20),
      entry("out", "--out", TRAIN(out), G::output, "Output directory; default runs/<timestamp>. Must be new or empty"),
      entry("overwrite", "--overwrite", TRAIN(overwrite), G::output,
            "Allow --out to be a directory that already holds files")
          .not_recorded(),
  };
}

#undef MODEL
#undef TRAIN

}  // namespace

const std::vector<Option>& options() {
  static const std::vector<Option> table = [] {
    std::vector<Option> all;
    for (auto part : {model_options, training_options, run_options}) {
      std::vector<Option> p = part();
      all.insert(all.end(), p.begin(), p.end());
    }
    return all;
  }();
  return table;
}

}  // namespace vae
