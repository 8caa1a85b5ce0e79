// Writes CPU-path results for the PyTorch cross-check (tests/torch_crosscheck.py), all in
// double precision, one safetensors file per case:
// - case<k>: for a model configuration and a gradient pass (the reparameterized ELBO, the
//   score-function ELBO, or the IWAE bound), the parameters, inputs x, noise eps, the
//   per-data-point reconstruction and KL terms (and IWAE bounds), and the gradient of the
//   batch loss. PyTorch recomputes them with autograd and compares.
// - opt<k>: for each optimizer, a parameter vector, a sequence of gradients and learning
//   rates, and the parameters and state after the CPU path's optimizer pass (the functions
//   the CPU backend calls) took them. PyTorch replays them with torch.optim.
#include <cmath>
#include <cstring>
#include <iostream>
#include <random>
#include <string>

#include "cpu_model.h"
#include "cpu_passes.h"
#include "elementwise.h"
#include "vae/config.h"
#include "vae/io.h"
#include "vae/layout.h"

namespace {

using vae::NamedTensor;

NamedTensor tensor(const std::string& name, const std::vector<std::int64_t>& shape, const double* data) {
  NamedTensor t;
  t.name = name;
  t.dtype = "F64";
  t.shape = shape;
  std::size_t n = 1;
  for (auto d : shape) n *= static_cast<std::size_t>(d);
  t.bytes.resize(n * sizeof(double));
  std::memcpy(t.bytes.data(), data, t.bytes.size());
  return t;
}

const char* pass_name(vae::Pass pass) {
  switch (pass) {
    case vae::Pass::elbo_reparam: return "elbo";
    case vae::Pass::elbo_score: return "score";
    case vae::Pass::iwae: return "iwae";
    case vae::Pass::forward: break;
  }
  return "forward";
}

void dump_case(const std::string& path, const vae::ModelConfig& cfg, int n, std::uint64_t seed, vae::Pass pass) {
  vae::CpuModel<double> model(cfg, n);
  const vae::ParamLayout& layout = model.layout();
  const auto init = vae::init_parameters(layout, cfg, seed);
  std::copy(init.begin(), init.end(), model.params().begin());
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(0.02, 0.98), lv(-0.4, 0.4);
  std::normal_distribution<double> nd(0, 1);
  if (layout.has_logvar())
    for (int d = 0; d < cfg.input_dim; ++d) model.params()[layout.logvar() + d] = lv(g);
  if (layout.has_zi())
    for (int d = 0; d < cfg.input_dim; ++d) model.params()[layout.zi() + d] = 4 * lv(g) - 0.5;
  const int W = vae::data_width(cfg);  // each row: the features, then a condition (one-hot class, or covariates)
  std::vector<double> x(static_cast<std::size_t>(n) * W), eps(static_cast<std::size_t>(n) * cfg.samples * cfg.latent);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const int col = static_cast<int>(i % static_cast<std::size_t>(W));
    if (col < cfg.input_dim) x[i] = vae::counts_likelihood(cfg.likelihood) ? std::floor(u(g) * 7.0) : u(g);  // counts 0..6
    else if (cfg.condition == vae::ConditionKind::classes) x[i] = (col - cfg.input_dim) == static_cast<int>(i / W) % cfg.condition_dim;
    else x[i] = nd(g);
  }
  for (auto& v : eps) v = nd(g);
  model.run(x.data(), eps.data(), n, cfg.samples, cfg.beta, pass);

  std::vector<NamedTensor> out;
  for (const auto& t : layout.tensors()) {
    std::vector<std::int64_t> shape(t.shape.begin(), t.shape.end());
    out.push_back(tensor(t.name, shape, model.params().data() + t.offset));
    out.push_back(tensor("grad." + t.name, shape, model.grads().data() + t.offset));
  }
  out.push_back(tensor("x", {n, W}, x.data()));
  out.push_back(tensor("eps", {n * cfg.samples, cfg.latent}, eps.data()));
  out.push_back(tensor("recon", {n}, model.recon()));
  out.push_back(tensor("kl", {n}, model.kl()));
  if (pass == vae::Pass::iwae) out.push_back(tensor("bound", {n}, model.iwae_bound()));
  vae::write_safetensors(path, out,
                         {{"config", vae::config_to_json(cfg, vae::TrainConfig{})}, {"pass", pass_name(pass)}});
}

// `steps` updates of a P-vector by optimizer `o`, from random parameters, gradients and
// per-step learning rates (as a schedule would give), through ew::optimizer_scalars and
// cpu::optimizer_pass. Writes p0, the gradients (steps, P), the rates, and p, s1, s2 after.
void dump_optimizer(const std::string& path, const vae::OptimizerConfig& o, int steps, std::uint64_t seed) {
  const int P = 13;
  std::mt19937_64 g(seed);
  std::normal_distribution<double> nd(0, 1);
  std::uniform_real_distribution<double> lr_jitter(0.5, 1.5);
  std::vector<double> p0(P), grads(static_cast<std::size_t>(steps) * P), lrs(steps);
  for (auto& v : p0) v = nd(g);
  for (int t = 0; t < steps; ++t) {
    const double scale = std::exp(nd(g));  // gradients of changing size, some tiny
    for (int i = 0; i < P; ++i) grads[static_cast<std::size_t>(t) * P + i] = scale * nd(g);
    lrs[t] = o.lr * lr_jitter(g);
  }
  std::vector<double> p = p0, s1(P, 0.0), s2(P, 0.0);
  for (int t = 0; t < steps; ++t) {
    const vae::ew::OptimizerScalars sc = vae::ew::optimizer_scalars(o, lrs[t], t + 1);
    vae::cpu::optimizer_pass(p.data(), s1.data(), s2.data(), grads.data() + static_cast<std::size_t>(t) * P,
                             static_cast<std::size_t>(P), sc);
  }
  vae::TrainConfig train;
  train.optimizer = o;
  const std::vector<NamedTensor> out = {tensor("p0", {P}, p0.data()), tensor("grads", {steps, P}, grads.data()),
                                        tensor("lrs", {steps}, lrs.data()), tensor("p", {P}, p.data()),
                                        tensor("s1", {P}, s1.data()),       tensor("s2", {P}, s2.data())};
  vae::write_safetensors(path, out, {{"config", vae::config_to_json(vae::ModelConfig{}, train)}});
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: " << argv[0] << " OUTPUT_DIR\n";
    return 2;
  }
  const std::string dir = argv[1];
  int k = 0;
  try {
    for (vae::Activation a : {vae::Activation::relu, vae::Activation::tanh, vae::Activation::leaky_relu,
                              vae::Activation::softplus})
      for (int lik = 0; lik < 6; ++lik) {
        vae::ModelConfig c;
        c.input_dim = 11;
        c.encoder_hidden = {9, 7};
        c.decoder_hidden = {8};
        c.latent = 4;
        c.activation = a;
        c.likelihood = lik == 0   ? vae::Likelihood::bernoulli
                       : lik == 3 ? vae::Likelihood::poisson
                       : lik == 4 ? vae::Likelihood::negative_binomial
                       : lik == 5 ? vae::Likelihood::zinb
                                  : vae::Likelihood::gaussian;
        c.learn_sigma = lik == 2;
        c.sigma = 0.6;
        c.samples = 1 + (k % 3);
        c.beta = (k % 2) ? 0.5 : 1.0;
        dump_case(dir + "/case" + std::to_string(k) + ".safetensors", c, 6, 100 + k, vae::Pass::elbo_reparam);
        ++k;
      }
    // The score-function ELBO and the IWAE bound on a few of those shapes (L = K samples).
    for (vae::Pass pass : {vae::Pass::elbo_score, vae::Pass::iwae})
      for (int lik = 0; lik < 6; ++lik) {
        vae::ModelConfig c;
        c.input_dim = 11;
        c.encoder_hidden = {9};
        c.decoder_hidden = {8, 6};
        c.latent = 3;
        c.activation = lik == 0 ? vae::Activation::relu
                       : lik == 1 ? vae::Activation::tanh
                       : lik == 2 ? vae::Activation::softplus
                       : lik == 3 ? vae::Activation::leaky_relu
                                  : vae::Activation::tanh;
        c.likelihood = lik == 0   ? vae::Likelihood::bernoulli
                       : lik == 3 ? vae::Likelihood::poisson
                       : lik == 4 ? vae::Likelihood::negative_binomial
                       : lik == 5 ? vae::Likelihood::zinb
                                  : vae::Likelihood::gaussian;
        c.learn_sigma = lik == 2;
        c.sigma = 0.7;
        c.samples = 2 + lik % 3;
        c.beta = lik == 1 ? 0.5 : 1.0;
        dump_case(dir + "/case" + std::to_string(k) + ".safetensors", c, 5, 200 + k, pass);
        ++k;
      }
    {  // counts with the encoder on log(1 + x), its first layer the head (no hidden layer)
      vae::ModelConfig c;
      c.input_dim = 11;
      c.encoder_hidden = {};
      c.decoder_hidden = {8};
      c.latent = 3;
      c.likelihood = vae::Likelihood::poisson;
      c.log1p_input = true;
      c.samples = 2;
      dump_case(dir + "/case" + std::to_string(k++) + ".safetensors", c, 5, 9, vae::Pass::elbo_reparam);
      c.encoder_hidden = {9};
      dump_case(dir + "/case" + std::to_string(k++) + ".safetensors", c, 5, 10, vae::Pass::iwae);
    }
    {  // conditional models (classes, covariates; with and without hidden layers) and --library-size
      vae::ModelConfig c;
      c.input_dim = 11;
      c.encoder_hidden = {9};
      c.decoder_hidden = {8};
      c.latent = 3;
      c.activation = vae::Activation::tanh;
      c.condition = vae::ConditionKind::classes;
      c.condition_dim = 4;
      c.samples = 2;
      dump_case(dir + "/case" + std::to_string(k++) + ".safetensors", c, 6, 11, vae::Pass::elbo_reparam);
      c.likelihood = vae::Likelihood::negative_binomial;
      c.library_size = true;
      c.log1p_input = true;
      dump_case(dir + "/case" + std::to_string(k++) + ".safetensors", c, 6, 12, vae::Pass::iwae);
      c.encoder_hidden = c.decoder_hidden = {};
      c.likelihood = vae::Likelihood::gaussian;
      c.library_size = c.log1p_input = false;
      c.learn_sigma = true;
      c.condition = vae::ConditionKind::covariates;
      c.condition_dim = 2;
      dump_case(dir + "/case" + std::to_string(k++) + ".safetensors", c, 5, 13, vae::Pass::elbo_reparam);
      c.condition = vae::ConditionKind::none;
      c.condition_dim = 0;
      c.encoder_hidden = {7};
      c.learn_sigma = false;
      c.likelihood = vae::Likelihood::zinb;
      c.library_size = true;
      dump_case(dir + "/case" + std::to_string(k++) + ".safetensors", c, 6, 14, vae::Pass::elbo_reparam);
      c.zero_inflation = vae::ZeroInflation::item;  // the decoder gives the zero-inflation logits
      dump_case(dir + "/case" + std::to_string(k++) + ".safetensors", c, 6, 15, vae::Pass::elbo_reparam);
      c.library_size = false;
      c.encoder_hidden = {};
      dump_case(dir + "/case" + std::to_string(k++) + ".safetensors", c, 5, 16, vae::Pass::iwae);
    }
    vae::ModelConfig linear;  // no hidden layers: probabilistic PCA's shape
    linear.input_dim = 10;
    linear.encoder_hidden = {};
    linear.decoder_hidden = {};
    linear.latent = 3;
    linear.likelihood = vae::Likelihood::gaussian;
    linear.learn_sigma = true;
    linear.samples = 2;
    dump_case(dir + "/case" + std::to_string(k++) + ".safetensors", linear, 5, 7, vae::Pass::elbo_reparam);
    dump_case(dir + "/case" + std::to_string(k++) + ".safetensors", linear, 5, 8, vae::Pass::iwae);

    int j = 0;
    for (vae::Optimizer kind : {vae::Optimizer::adam, vae::Optimizer::adamw, vae::Optimizer::sgd, vae::Optimizer::rmsprop}) {
      vae::OptimizerConfig o;
      o.kind = kind;
      o.lr = kind == vae::Optimizer::sgd ? 0.05 : 0.01;
      o.beta1 = 0.8;
      o.beta2 = 0.95;
      o.eps = 1e-6;
      o.weight_decay = 0.3;
      o.momentum = 0.7;
      o.alpha = 0.9;
      dump_optimizer(dir + "/opt" + std::to_string(j) + ".safetensors", o, 25, 300 + j);
      ++j;
    }
    std::cout << "wrote " << j << " optimizer cases to " << dir << "\n";
  } catch (const std::exception& e) {
    std::cerr << "torch_dump: " << e.what() << "\n";
    return 1;
  }
  std::cout << "wrote " << k << " cases to " << dir << "\n";
  return 0;
}
