// `vae train`: options, an optional JSON configuration file underneath them, resume, and
// Ctrl-C handling (a checkpoint, then exit code 130).
#include "cli/commands.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <ctime>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "vae/config.h"
#include "vae/error.h"
#include "vae/trainer.h"

namespace vae::cli {
namespace {

// Each flag writes into its own variable; when it was given on the command line its apply
// function copies it into the configuration, on top of the defaults or of --config.
struct TrainFlags {
  ModelConfig model;
  TrainConfig train;
  std::string hidden, decoder_hidden, activation, likelihood, device, binarize, precision, on_nan;
  std::string optimizer, lr_schedule, objective, estimator, schedule;
  std::string config_file, resume;
  std::vector<std::pair<CLI::Option*, std::function<void(ModelConfig&, TrainConfig&)>>> appliers;

  template <class T>
  CLI::Option* add(CLI::App* cmd, const std::string& name, T& var, const std::string& help, const std::string& group,
                   std::function<void(ModelConfig&, TrainConfig&)> apply) {
    CLI::Option* o = cmd->add_option(name, var, help)->capture_default_str()->group(group);
    appliers.emplace_back(o, std::move(apply));
    return o;
  }
  CLI::Option* flag(CLI::App* cmd, const std::string& name, bool& var, const std::string& help, const std::string& group,
                    std::function<void(ModelConfig&, TrainConfig&)> apply) {
    CLI::Option* o = cmd->add_flag(name, var, help)->group(group);
    appliers.emplace_back(o, std::move(apply));
    return o;
  }
};

// The first Ctrl-C asks for a checkpoint after the current step; another one at least a
// second later stops at once. (Wrappers such as `timeout` forward a signal to the whole
// process group, so one key press can arrive twice within microseconds.)
std::atomic<long long> g_first_interrupt_ns{0};
long long monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);  // async-signal-safe
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
extern "C" void on_interrupt(int) {
  const long long now = monotonic_ns();
  long long first = 0;
  if (g_first_interrupt_ns.compare_exchange_strong(first, now)) {
    vae::request_stop();
  } else if (now - first > 1000000000LL) {
    std::signal(SIGINT, SIG_DFL);
    std::raise(SIGINT);
  }
}

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw_error("cannot open the file");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A flag given on the command line that the configuration would ignore is an error, not a
// silent no-op: `--optimizer adam --weight-decay 0.1` would otherwise train without the weight
// decay a PyTorch user expects from Adam(weight_decay=0.1).
struct FlagUse {
  const char* flag;
  const char* what;     // what the flag is, for the message
  bool applies;         // whether the configuration uses it
  std::string setting;  // the setting that makes it unused
};

void check_flags_apply(const CLI::App& cmd, const ModelConfig& m, const TrainConfig& c) {
  const std::string optimizer = "--optimizer " + std::string(to_string(c.optimizer.kind));
  const std::string lr_schedule = "--lr-schedule " + std::string(to_string(c.optimizer.schedule));
  const std::string schedule = "--schedule " + std::string(to_string(c.schedule));
  const std::string likelihood = "--likelihood " + std::string(to_string(m.likelihood));
  const bool adamw = c.optimizer.kind == Optimizer::adamw, sgd = c.optimizer.kind == Optimizer::sgd;
  const bool rmsprop = c.optimizer.kind == Optimizer::rmsprop, gaussian = m.likelihood == Likelihood::gaussian;
  const bool cosine = c.optimizer.schedule == LrSchedule::cosine, step = c.optimizer.schedule == LrSchedule::step;
  const bool alternating = c.schedule == Schedule::alternating;
  const FlagUse uses[] = {
      {"--weight-decay", "AdamW's decoupled weight decay (--optimizer adamw)", adamw, optimizer},
      {"--momentum", "SGD's momentum (--optimizer sgd)", sgd, optimizer},
      {"--rmsprop-alpha", "RMSprop's smoothing (--optimizer rmsprop)", rmsprop, optimizer},
      {"--lr-min", "the cosine schedule's last learning rate (--lr-schedule cosine)", cosine, lr_schedule},
      {"--lr-step", "the step schedule's period (--lr-schedule step)", step, lr_schedule},
      {"--lr-gamma", "the step schedule's factor (--lr-schedule step)", step, lr_schedule},
      {"--k", "the IWAE objective's sample count (--objective iwae)", c.objective == Objective::iwae,
       "--objective " + std::string(to_string(c.objective))},
      {"--e-steps", "the alternating schedule's encoder steps (--schedule alternating)", alternating, schedule},
      {"--m-steps", "the alternating schedule's decoder steps (--schedule alternating)", alternating, schedule},
      {"--sigma", "the Gaussian decoder's standard deviation (--likelihood gaussian)", gaussian, likelihood},
      {"--learn-sigma", "for the Gaussian decoder (--likelihood gaussian)", gaussian, likelihood},
      {"--test-labels", "for the latent scatter of a 2-D latent space (--latent 2)", m.latent == 2,
       "--latent " + std::to_string(m.latent)},
      {"--stream-data", "for the CUDA backend", c.device != Device::cpu,
       "--device " + std::string(to_string(c.device))},
  };
  for (const FlagUse& u : uses)
    if (cmd.count(u.flag) && !u.applies) throw_error(u.flag, " is ", u.what, "; it has no effect with ", u.setting);
}

}  // namespace

void add_train(CLI::App& app) {
  auto f = std::make_shared<TrainFlags>();  // owned by the command's callback
  TrainFlags* fp = f.get();                 // what the flags' appliers use: no ownership cycle
  ModelConfig& m = f->model;
  TrainConfig& t = f->train;
  f->hidden = "400";
  f->activation = to_string(m.activation);
  f->likelihood = to_string(m.likelihood);
  f->device = to_string(t.device);
  f->binarize = to_string(t.binarize);
  f->precision = to_string(t.precision);
  f->on_nan = to_string(t.on_nan);
  f->optimizer = to_string(t.optimizer.kind);
  f->lr_schedule = to_string(t.optimizer.schedule);
  f->objective = to_string(t.objective);
  f->estimator = to_string(t.estimator);
  f->schedule = to_string(t.schedule);
  CLI::App* cmd = app.add_subcommand("train", "Train a VAE and write metrics, pictures and a checkpoint to OUT");

  cmd->add_option("--config", f->config_file,
                  "Start from this JSON configuration (e.g. an earlier run's OUT/config.json); flags given on the command "
                  "line override it")->group("Run");
  cmd->add_option("--resume", f->resume,
                  "Continue the run in this OUT from its checkpoint, bit for bit; only --epochs, --device, --threads "
                  "and --checkpoint-every may change")->group("Run");

  f->add(cmd, "--train", t.train_path,
         "Training images: IDX (.gz or raw) or NPY (2-D float32/float64/uint8)\n"
         "default: /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz (apt-get install dataset-fashion-mnist)",
         "Data", [fp](ModelConfig&, TrainConfig& c) { c.train_path = fp->train.train_path; });
  f->add(cmd, "--test", t.test_path, "Test images, same formats; default: Fashion-MNIST t10k (needed when --train names other data)", "Data",
         [fp](ModelConfig&, TrainConfig& c) { c.test_path = fp->train.test_path; });
  f->add(cmd, "--test-labels", t.test_labels_path,
         "Labels of the test set (IDX), for the latent scatter of a 2-D latent space; default: Fashion-MNIST's",
         "Data", [fp](ModelConfig&, TrainConfig& c) { c.test_labels_path = fp->train.test_labels_path; });
  f->add(cmd, "--binarize", f->binarize,
         "none (pixels in [0,1]), static (threshold 0.5) or dynamic (a fresh Bernoulli draw per step; the test set "
         "gets one fixed draw)", "Data", [fp](ModelConfig&, TrainConfig& c) { c.binarize = parse_binarize(fp->binarize); });

  f->add(cmd, "--hidden", f->hidden, "Encoder hidden widths, comma-separated (e.g. 512,256), or 'none' for a linear encoder",
         "Model", [fp](ModelConfig& c, TrainConfig&) { c.encoder_hidden = parse_int_list(fp->hidden, "--hidden"); });
  f->add(cmd, "--decoder-hidden", f->decoder_hidden, "Decoder hidden widths; default: the encoder's widths reversed",
         "Model", [fp](ModelConfig& c, TrainConfig&) { c.decoder_hidden = parse_int_list(fp->decoder_hidden, "--decoder-hidden"); });
  f->add(cmd, "--latent", m.latent, "Latent size Z", "Model", [fp](ModelConfig& c, TrainConfig&) { c.latent = fp->model.latent; })
      ->check(integer_in(1, 65536));
  f->add(cmd, "--activation", f->activation, "Hidden activation: relu, tanh, leaky_relu (slope 0.01) or softplus",
         "Model", [fp](ModelConfig& c, TrainConfig&) { c.activation = parse_activation(fp->activation); });
  f->add(cmd, "--likelihood", f->likelihood, "Decoder likelihood: bernoulli (logits, targets in [0,1]) or gaussian (mean output)",
         "Model", [fp](ModelConfig& c, TrainConfig&) { c.likelihood = parse_likelihood(fp->likelihood); });
  f->add(cmd, "--sigma", m.sigma, "Gaussian decoder: fixed standard deviation, or the initial one with --learn-sigma",
         "Model", [fp](ModelConfig& c, TrainConfig&) { c.sigma = fp->model.sigma; });
  f->flag(cmd, "--learn-sigma", m.learn_sigma, "Gaussian decoder: learn a per-dimension log-variance", "Model",
          [fp](ModelConfig& c, TrainConfig&) { c.learn_sigma = fp->model.learn_sigma; });
  f->add(cmd, "--samples", m.samples, "Monte Carlo samples L of z per data point in the ELBO (with --objective iwae: of the test ELBO; training "
         "draws --k)", "Model",
         [fp](ModelConfig& c, TrainConfig&) { c.samples = fp->model.samples; })->check(integer_in(1, 4096));
  f->add(cmd, "--beta", m.beta, "Weight of the KL term (beta-VAE); 1 is the ELBO", "Model",
         [fp](ModelConfig& c, TrainConfig&) { c.beta = fp->model.beta; });

  f->add(cmd, "--epochs", t.epochs, "Passes over the training set", "Training",
         [fp](ModelConfig&, TrainConfig& c) { c.epochs = fp->train.epochs; })->check(integer_in(0, 1 << 30));
  f->add(cmd, "--batch", t.batch, "Minibatch size; the last partial batch of an epoch is kept", "Training",
         [fp](ModelConfig&, TrainConfig& c) { c.batch = fp->train.batch; })->check(integer_in(1, 1 << 20));
  f->add(cmd, "--optimizer", f->optimizer,
         "adam, adamw (decoupled --weight-decay), sgd (with --momentum) or rmsprop; PyTorch's forms", "Optimizer",
         [fp](ModelConfig&, TrainConfig& c) { c.optimizer.kind = parse_optimizer(fp->optimizer); });
  f->add(cmd, "--lr", t.optimizer.lr, "Learning rate (Adam: beta1 0.9, beta2 0.999, eps 1e-8)", "Optimizer",
         [fp](ModelConfig&, TrainConfig& c) { c.optimizer.lr = fp->train.optimizer.lr; });
  f->add(cmd, "--weight-decay", t.optimizer.weight_decay, "AdamW's decoupled weight decay", "Optimizer",
         [fp](ModelConfig&, TrainConfig& c) { c.optimizer.weight_decay = fp->train.optimizer.weight_decay; });
  f->add(cmd, "--momentum", t.optimizer.momentum, "SGD's momentum", "Optimizer",
         [fp](ModelConfig&, TrainConfig& c) { c.optimizer.momentum = fp->train.optimizer.momentum; });
  f->add(cmd, "--rmsprop-alpha", t.optimizer.alpha, "RMSprop's smoothing of the squared gradient", "Optimizer",
         [fp](ModelConfig&, TrainConfig& c) { c.optimizer.alpha = fp->train.optimizer.alpha; });
  f->add(cmd, "--lr-schedule", f->lr_schedule,
         "constant, cosine (from --lr to --lr-min over the run) or step (times --lr-gamma every --lr-step epochs)",
         "Optimizer", [fp](ModelConfig&, TrainConfig& c) { c.optimizer.schedule = parse_lr_schedule(fp->lr_schedule); });
  f->add(cmd, "--lr-min", t.optimizer.lr_min, "cosine: the learning rate at the last step", "Optimizer",
         [fp](ModelConfig&, TrainConfig& c) { c.optimizer.lr_min = fp->train.optimizer.lr_min; });
  f->add(cmd, "--lr-step", t.optimizer.lr_step_epochs, "step: epochs between decays", "Optimizer",
         [fp](ModelConfig&, TrainConfig& c) { c.optimizer.lr_step_epochs = fp->train.optimizer.lr_step_epochs; });
  f->add(cmd, "--lr-gamma", t.optimizer.lr_gamma, "step: the decay factor", "Optimizer",
         [fp](ModelConfig&, TrainConfig& c) { c.optimizer.lr_gamma = fp->train.optimizer.lr_gamma; });
  f->add(cmd, "--objective", f->objective,
         "elbo, or iwae: the importance-weighted bound log mean_k p(x,z_k)/q(z_k|x) with --k samples", "Objective",
         [fp](ModelConfig&, TrainConfig& c) { c.objective = parse_objective(fp->objective); });
  f->add(cmd, "--k", t.iw_k, "IWAE: importance samples per data point", "Objective",
         [fp](ModelConfig&, TrainConfig& c) { c.iw_k = fp->train.iw_k; });
  f->add(cmd, "--kl-warmup", t.kl_warmup_steps, "Ramp the KL weight linearly from 0 to --beta over this many steps",
         "Objective", [fp](ModelConfig&, TrainConfig& c) { c.kl_warmup_steps = fp->train.kl_warmup_steps; });
  f->add(cmd, "--estimator", f->estimator,
         "The encoder's gradient: reparam (pathwise) or score (score function, REINFORCE)", "Objective",
         [fp](ModelConfig&, TrainConfig& c) { c.estimator = parse_estimator(fp->estimator); });
  f->add(cmd, "--schedule", f->schedule,
         "joint, or alternating (variational EM): --e-steps encoder-only steps, then --m-steps decoder-only steps",
         "Objective", [fp](ModelConfig&, TrainConfig& c) { c.schedule = parse_schedule(fp->schedule); });
  f->add(cmd, "--e-steps", t.e_steps, "alternating: E-steps (update phi, theta fixed) per round", "Objective",
         [fp](ModelConfig&, TrainConfig& c) { c.e_steps = fp->train.e_steps; });
  f->add(cmd, "--m-steps", t.m_steps, "alternating: M-steps (update theta, phi fixed) per round", "Objective",
         [fp](ModelConfig&, TrainConfig& c) { c.m_steps = fp->train.m_steps; });
  f->add(cmd, "--seed", t.seed, "Seed of every random draw: initialization, shuffling, binarization, noise", "Training",
         [fp](ModelConfig&, TrainConfig& c) { c.seed = fp->train.seed; })
      ->check(integer_in<std::uint64_t>(0, UINT64_MAX).description(""));  // a negative seed is refused, not wrapped
  f->add(cmd, "--on-nan", f->on_nan,
         "A step with a non-finite loss or gradient: stop (keep the last good checkpoint) or skip the step",
         "Training", [fp](ModelConfig&, TrainConfig& c) { c.on_nan = parse_nan_policy(fp->on_nan); });
  f->add(cmd, "--eval-batch", t.eval_batch, "Batch size of the test-set evaluation", "Training",
         [fp](ModelConfig&, TrainConfig& c) { c.eval_batch = fp->train.eval_batch; });

  f->add(cmd, "--device", f->device, "auto (CUDA when a GPU is usable, else CPU; says which), cpu or cuda", "Device",
         [fp](ModelConfig&, TrainConfig& c) { c.device = parse_device(fp->device); });
  f->add(cmd, "--threads", t.threads, "CPU threads (BLAS and the fused passes share them); 0 = all cores", "Device",
         [fp](ModelConfig&, TrainConfig& c) { c.threads = fp->train.threads; });
  f->add(cmd, "--precision", f->precision, "CPU arithmetic: fp32 or fp64 (slow; for checks)", "Device",
         [fp](ModelConfig&, TrainConfig& c) { c.precision = parse_precision(fp->precision); });
  f->flag(cmd, "--stream-data", t.stream_data, "CUDA: stream the data in chunks even if it fits on the GPU", "Device",
          [fp](ModelConfig&, TrainConfig& c) { c.stream_data = fp->train.stream_data; });

  f->add(cmd, "--out", t.out, "Output directory; default runs/<timestamp>. Must be new or empty", "Output",
         [fp](ModelConfig&, TrainConfig& c) { c.out = fp->train.out; });
  f->flag(cmd, "--overwrite", t.overwrite, "Allow --out to be a directory that already holds files", "Output",
          [fp](ModelConfig&, TrainConfig& c) { c.overwrite = fp->train.overwrite; });
  f->add(cmd, "--checkpoint-every", t.checkpoint_every, "Write the checkpoint every N epochs (and always at the end)",
         "Output", [fp](ModelConfig&, TrainConfig& c) { c.checkpoint_every = fp->train.checkpoint_every; });

  cmd->footer(
      "\nOutputs in OUT:\n"
      "  config.json          the effective configuration (feed it back with --config to repeat the run)\n"
      "  metrics.csv          per epoch: epoch,train_loss,test_loss,test_recon,test_kl,seconds,samples_per_sec\n"
      "                       losses in nats per data point: -ELBO = recon + KL, or recon + beta*KL with --beta,\n"
      "                       the -IWAE bound for train_loss with --objective iwae; train_loss averages the steps;\n"
      "                       seconds and samples/s count the training steps, not the test evaluation\n"
      "  model.safetensors    a complete checkpoint: parameters by name (encoder.0.weight, ...), Adam's state,\n"
      "                       the data position and the configuration; readable with Python's safetensors\n"
      "  samples.png          decoder means for z drawn from the prior\n"
      "  reconstructions.png  test images (odd rows) and their reconstructions at z = mu (even rows)\n"
      "  elbo.png             the ELBO curve: train and test -ELBO, test reconstruction and KL per epoch\n"
      "  latent.png           with --latent 2: the test set's posterior means coloured by label\n"
      "\nCtrl-C writes a checkpoint after the current step and exits with code 130 (a second Ctrl-C a second later\n"
      "stops at once); --resume OUT continues the run exactly where it stopped.\n"
      "\nThe defaults are the reference model: 784-400-20 encoder, 20-400-784 decoder, ReLU, Bernoulli decoder,\n"
      "batch 128, Adam lr 1e-3, 10 epochs, 1 sample, seed 1, on Fashion-MNIST.\n"
      "Examples:\n"
      "  vae train --device cpu --hidden 512,256 --latent 32 --epochs 20 --out runs/wide\n"
      "  vae train --config runs/wide/config.json --seed 2 --out runs/wide-seed2\n"
      "  vae train --resume runs/wide --epochs 30");

  cmd->callback([f, cmd]() {
    const bool progress = isatty(STDOUT_FILENO) == 1;
    std::signal(SIGINT, on_interrupt);
    TrainResult r;
    if (!f->resume.empty()) {
      ResumeOptions o;
      for (const auto& [opt, apply] : f->appliers) {
        if (!opt->count()) continue;
        const std::string name = opt->get_name();
        if (name == "--epochs") o.epochs = f->train.epochs;
        else if (name == "--device") o.device = parse_device(f->device), o.device_given = true;
        else if (name == "--threads") o.threads = f->train.threads;
        else if (name == "--checkpoint-every") o.checkpoint_every = f->train.checkpoint_every;
        else throw_error("--resume continues a run as it was configured; ", name, " cannot change (only --epochs, "
                         "--device, --threads and --checkpoint-every can)");
      }
      if (!f->config_file.empty()) throw_error("--resume and --config cannot be combined");
      o.progress = progress;
      r = resume(f->resume, o, std::cout);
    } else {
      ModelConfig model;
      TrainConfig config;
      if (!f->config_file.empty()) {
        try {
          config_from_json(read_text(f->config_file), model, config);
        } catch (const Error& e) {
          throw_error("--config '", f->config_file, "': ", e.what());
        }
        config.out.clear();  // a configuration names the run it came from: never write there by default
      }
      for (const auto& [opt, apply] : f->appliers)
        if (opt->count()) apply(model, config);
      if (cmd->count("--hidden") && !cmd->count("--decoder-hidden"))
        model.decoder_hidden.assign(model.encoder_hidden.rbegin(), model.encoder_hidden.rend());
      check_flags_apply(*cmd, model, config);
      config.progress = progress;
      r = vae::train(model, config, std::cout);
    }
    if (r.interrupted) std::exit(130);
  });
}

}  // namespace vae::cli
