// The subcommands of `vae`.
#include "cli/commands.h"

#include <iostream>
#include <memory>
#include <string>

#include "vae/config.h"
#include "vae/trainer.h"

namespace vae::cli {
namespace {

// Options shared by every command that builds a model.
struct ModelOptions {
  std::string hidden = "400";
  std::string decoder_hidden;  // empty: the encoder's widths reversed
  std::string activation = "relu";
  std::string likelihood = "bernoulli";
  ModelConfig model;

  void add(CLI::App& cmd) {
    cmd.add_option("--hidden", hidden,
                   "Encoder hidden widths, comma-separated (e.g. 512,256), or 'none' for a linear encoder")
        ->capture_default_str()->group("Model");
    cmd.add_option("--decoder-hidden", decoder_hidden,
                   "Decoder hidden widths; default: the encoder's widths reversed")->group("Model");
    cmd.add_option("--latent", model.latent, "Latent size Z")->capture_default_str()->check(CLI::Range(1, 65536))->group("Model");
    cmd.add_option("--activation", activation, "Hidden activation: relu, tanh, leaky_relu (slope 0.01) or softplus")
        ->capture_default_str()->group("Model");
    cmd.add_option("--likelihood", likelihood,
                   "Decoder likelihood: bernoulli (logits, targets in [0,1]) or gaussian (mean output)")
        ->capture_default_str()->group("Model");
    cmd.add_option("--sigma", model.sigma,
                   "Gaussian decoder: fixed standard deviation, or the initial one with --learn-sigma")
        ->capture_default_str()->group("Model");
    cmd.add_flag("--learn-sigma", model.learn_sigma, "Gaussian decoder: learn a per-dimension log-variance")->group("Model");
    cmd.add_option("--samples", model.samples, "Monte Carlo samples L of z per data point")
        ->capture_default_str()->check(CLI::Range(1, 4096))->group("Model");
    cmd.add_option("--beta", model.beta, "Weight of the KL term (beta-VAE); 1 is the ELBO")->capture_default_str()->group("Model");
  }

  ModelConfig resolve() {
    ModelConfig m = model;
    m.encoder_hidden = parse_int_list(hidden, "--hidden");
    if (decoder_hidden.empty()) m.decoder_hidden.assign(m.encoder_hidden.rbegin(), m.encoder_hidden.rend());
    else m.decoder_hidden = parse_int_list(decoder_hidden, "--decoder-hidden");
    m.activation = parse_activation(activation);
    m.likelihood = parse_likelihood(likelihood);
    return m;
  }
};

struct TrainOptions {
  ModelOptions model;
  TrainConfig train;
  std::string device = "auto";
  std::string binarize = "none";
  std::string precision = "fp32";
};

}  // namespace

void add_train(CLI::App& app) {
  auto opt = std::make_shared<TrainOptions>();
  CLI::App* cmd = app.add_subcommand("train", "Train a VAE and write metrics, pictures and a checkpoint to OUT");
  TrainConfig& t = opt->train;
  cmd->add_option("--train", t.train_path, "Training images: IDX (.gz or raw) or NPY (2-D float32/float64/uint8)\n"
                  "default: /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz (apt-get install dataset-fashion-mnist)")
      ->group("Data");
  cmd->add_option("--test", t.test_path, "Test images, same formats; default: Fashion-MNIST t10k")->group("Data");
  cmd->add_option("--binarize", opt->binarize,
                  "none (pixels in [0,1]), static (threshold 0.5) or dynamic (a fresh Bernoulli draw per step; "
                  "the test set gets one fixed draw)")
      ->capture_default_str()->group("Data");
  opt->model.add(*cmd);
  cmd->add_option("--epochs", t.epochs, "Passes over the training set")->capture_default_str()->check(CLI::NonNegativeNumber)->group("Training");
  cmd->add_option("--batch", t.batch, "Minibatch size; the last partial batch of an epoch is kept")
      ->capture_default_str()->check(CLI::Range(1, 1 << 20))->group("Training");
  cmd->add_option("--lr", t.adam.lr, "Adam learning rate (beta1 0.9, beta2 0.999, eps 1e-8)")->capture_default_str()->group("Training");
  cmd->add_option("--seed", t.seed, "Seed of every random draw: initialization, shuffling, binarization, noise")
      ->capture_default_str()->group("Training");
  cmd->add_option("--eval-batch", t.eval_batch, "Batch size of the test-set evaluation")->capture_default_str()->group("Training");
  cmd->add_option("--device", opt->device, "auto (CUDA when a GPU is usable, else CPU; says which), cpu or cuda")
      ->capture_default_str()->group("Device");
  cmd->add_option("--threads", t.threads, "CPU threads for BLAS; 0 = all cores")->capture_default_str()->group("Device");
  cmd->add_option("--precision", opt->precision, "CPU arithmetic: fp32 or fp64 (slow; for checks)")->capture_default_str()->group("Device");
  cmd->add_flag("--stream-data", t.stream_data, "CUDA: stream the data in chunks even if it fits on the GPU")->group("Device");
  cmd->add_option("--out", t.out, "Output directory; default runs/<timestamp>. Must be new or empty")->group("Output");
  cmd->add_flag("--overwrite", t.overwrite, "Allow --out to be a directory that already holds files")->group("Output");
  cmd->footer(
      "\nOutputs in OUT:\n"
      "  config.json          the effective configuration\n"
      "  metrics.csv          per epoch: epoch,train_loss,test_loss,test_recon,test_kl,seconds,samples_per_sec\n"
      "                       losses are -ELBO in nats per data point; train_loss averages the epoch's steps;\n"
      "                       seconds and samples/s count the training steps, not the test evaluation\n"
      "  model.safetensors    the parameters by name (encoder.0.weight, ...), config in the metadata\n"
      "  samples.png          decoder means for z drawn from the prior\n"
      "  reconstructions.png  test images (odd rows) and their reconstructions at z = mu (even rows)\n"
      "\nThe defaults are the reference model: 784-400-20 encoder, 20-400-784 decoder, ReLU, Bernoulli decoder,\n"
      "batch 128, Adam lr 1e-3, 10 epochs, 1 sample, seed 1, on Fashion-MNIST.\n"
      "Example: vae train --device cpu --hidden 512,256 --latent 32 --epochs 20 --out runs/wide");
  cmd->callback([opt]() {
    TrainConfig cfg = opt->train;
    cfg.device = parse_device(opt->device);
    cfg.binarize = parse_binarize(opt->binarize);
    cfg.precision = parse_precision(opt->precision);
    const ModelConfig model = opt->model.resolve();
    train(model, cfg, std::cout);
  });
}

}  // namespace vae::cli
