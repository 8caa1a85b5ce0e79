// Writes CPU-path results for the PyTorch cross-check (tests/torch_crosscheck.py): for a
// set of model configurations, the parameters, inputs x, noise eps, the per-data-point
// reconstruction and KL terms, and the gradient of the batch loss, all in double precision,
// as one safetensors file per case. PyTorch recomputes them with autograd and compares.
#include <cstring>
#include <iostream>
#include <random>
#include <string>

#include "cpu_model.h"
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

void dump_case(const std::string& path, const vae::ModelConfig& cfg, int n, std::uint64_t seed) {
  vae::CpuModel<double> model(cfg, n);
  const vae::ParamLayout& layout = model.layout();
  const auto init = vae::init_parameters(layout, cfg, seed);
  std::copy(init.begin(), init.end(), model.params().begin());
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(0.02, 0.98), lv(-0.4, 0.4);
  std::normal_distribution<double> nd(0, 1);
  if (layout.has_logvar())
    for (int d = 0; d < cfg.input_dim; ++d) model.params()[layout.logvar() + d] = lv(g);
  std::vector<double> x(static_cast<std::size_t>(n) * cfg.input_dim), eps(static_cast<std::size_t>(n) * cfg.samples * cfg.latent);
  for (auto& v : x) v = u(g);
  for (auto& v : eps) v = nd(g);
  model.forward(x.data(), eps.data(), n, true);

  std::vector<NamedTensor> out;
  for (const auto& t : layout.tensors()) {
    std::vector<std::int64_t> shape(t.shape.begin(), t.shape.end());
    out.push_back(tensor(t.name, shape, model.params().data() + t.offset));
    out.push_back(tensor("grad." + t.name, shape, model.grads().data() + t.offset));
  }
  out.push_back(tensor("x", {n, cfg.input_dim}, x.data()));
  out.push_back(tensor("eps", {n * cfg.samples, cfg.latent}, eps.data()));
  out.push_back(tensor("recon", {n}, model.recon()));
  out.push_back(tensor("kl", {n}, model.kl()));
  vae::write_safetensors(path, out, {{"config", vae::config_to_json(cfg, vae::TrainConfig{})}});
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
      for (int lik = 0; lik < 3; ++lik) {
        vae::ModelConfig c;
        c.input_dim = 11;
        c.encoder_hidden = {9, 7};
        c.decoder_hidden = {8};
        c.latent = 4;
        c.activation = a;
        c.likelihood = lik == 0 ? vae::Likelihood::bernoulli : vae::Likelihood::gaussian;
        c.learn_sigma = lik == 2;
        c.sigma = 0.6;
        c.samples = 1 + (k % 3);
        c.beta = (k % 2) ? 0.5 : 1.0;
        dump_case(dir + "/case" + std::to_string(k) + ".safetensors", c, 6, 100 + k);
        ++k;
      }
    vae::ModelConfig linear;  // no hidden layers: probabilistic PCA's shape
    linear.input_dim = 10;
    linear.encoder_hidden = {};
    linear.decoder_hidden = {};
    linear.latent = 3;
    linear.likelihood = vae::Likelihood::gaussian;
    linear.learn_sigma = true;
    linear.samples = 2;
    dump_case(dir + "/case" + std::to_string(k++) + ".safetensors", linear, 5, 7);
  } catch (const std::exception& e) {
    std::cerr << "torch_dump: " << e.what() << "\n";
    return 1;
  }
  std::cout << "wrote " << k << " cases to " << dir << "\n";
  return 0;
}
