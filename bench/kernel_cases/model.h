// The device model (kernels/cuda_model.cuh) against CpuModel: every pass of one model
// configuration, which runs all the kernels above in the order of a training step.
#pragma once
#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "cpu_model.h"
#include "cuda_model.cuh"
#include "kernel_cases/harness.h"
#include "loss_sums.cuh"
#include "rng.h"
#include "vae/config.h"
#include "vae/layout.h"

namespace vae::cases {

// gpu::CudaModel against CpuModel<float> for one configuration (D 61, Z 13, n 37, beta
// 0.8): each gradient pass (reparameterized ELBO, score-function ELBO, IWAE), then the
// forward pass on a shorter batch (29), then the naive estimate's decoder-only pass.
// Tolerances: loss sums 1e-5 relative; the head 1e-5 + 1e-5 relative; per-item recon, KL,
// IWAE bound and per-row terms 1e-4 + 1e-5 relative; each gradient tensor fully written
// and within 1e-5 relative in norm, IWAE 1e-4: its weights are exp(lw_k - max) of
// log-weights that are sums of D + Z float terms (tens of nats) added in another order on
// each side, so a rounding difference of ~1e-5 in lw_k is ~1e-5 relative in w_k, and in
// the gradient it scales. A forward-only pass leaves the gradients alone.
class DeviceModelScenario final : public KernelCase {
 public:
  // x: (n, D) inputs.
  DeviceModelScenario(ModelConfig cfg, std::vector<float> x)
      : KernelCase(std::string("CudaModel ") + to_string(cfg.activation) + "/" + to_string(cfg.likelihood) +
                   (cfg.learn_sigma ? " learned" : "") + " L=" + std::to_string(cfg.samples) + " enc " +
                   std::to_string(cfg.encoder_hidden.size()) + " dec " + std::to_string(cfg.decoder_hidden.size())),
        cfg_(std::move(cfg)),
        x_(std::move(x)) {}
  void check(Context& ctx, Check& c) override {
    CpuModel<float> cpu(cfg_, kMaxBatch);
    const auto params = init_parameters(cpu.layout(), cfg_, 5);
    std::copy(params.begin(), params.end(), cpu.params().begin());
    const auto eps = normal(round_up_even(static_cast<std::size_t>(kN) * cfg_.samples * cfg_.latent), 22);
    gpu::CudaModel dev(cfg_, kMaxBatch, kMaxBatch * cfg_.samples, ctx.stream(), ctx.blas());
    c.equal(dev.total(), params.size(), "parameter count");
    if (dev.total() != params.size()) return;
    copy_in(dev.params(), params);
    copy_in(dev.x(), x_);
    Array<float> deps(eps, "eps");
    Array<double> beta(std::vector<double>{cfg_.beta}, "beta");
    Array<gpu::DeviceLossSums> acc(std::vector<gpu::DeviceLossSums>{gpu::DeviceLossSums{}},
                                   "loss sums");  // reset: zero
    std::vector<float> grads;
    for (const auto& [gpass, cpass] :
         {std::pair{gpu::Pass::elbo_reparam, Pass::elbo_reparam}, std::pair{gpu::Pass::elbo_score, Pass::elbo_score},
          std::pair{gpu::Pass::iwae, Pass::iwae}}) {
      const LossSums want = cpu.run(x_.data(), eps.data(), kN, cfg_.samples, cfg_.beta, cpass);
      grads = gradient_pass(ctx, c, dev, cpu, want, {gpass, cpass}, deps, beta, acc);
    }
    forward_passes(ctx, c, dev, cpu, eps, deps, beta, acc, grads);
  }

 private:
  static constexpr int kN = 37, kN2 = 29, kMaxBatch = 40;
  static void copy_in(float* device, const std::vector<float>& host) {
    VAE_CUDA_CHECK(cudaMemcpy(device, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice));
    VAE_CUDA_CHECK(cudaDeviceSynchronize());
  }
  static void poison(const float* device, std::size_t n) {
    VAE_CUDA_CHECK(cudaMemset(const_cast<float*>(device), 0xFF, n * sizeof(float)));
    VAE_CUDA_CHECK(cudaDeviceSynchronize());
  }
  static std::vector<float> host(const float* p, std::size_t n) { return std::vector<float>(p, p + n); }
  // One gradient pass on both sides; returns the device's gradients.
  std::vector<float> gradient_pass(Context& ctx, Check& c, gpu::CudaModel& dev, const CpuModel<float>& cpu,
                                   const LossSums& want, std::pair<gpu::Pass, Pass> pass, const Array<float>& eps,
                                   const Array<double>& beta, Array<gpu::DeviceLossSums>& acc) {
    const bool iwae = pass.second == Pass::iwae;
    const std::string what = pass.second == Pass::elbo_reparam ? ", reparameterized ELBO"
                             : iwae                            ? ", IWAE"
                                                               : ", score-function ELBO";
    for (const auto& t : dev.layout().tensors()) poison(dev.grads() + t.offset, t.size());
    poison(dev.bound(), kN);
    acc.reset();
    dev.run(eps.get(), nullptr, kN, cfg_.samples, pass.first, beta.get());
    gpu::loss_accumulate(dev.row_logp(), dev.kl(), iwae ? dev.bound() : nullptr, kN, cfg_.samples, beta.get(),
                         dev.recon(), acc.get(), true, ctx.stream());
    ctx.sync();
    expect_sums(c, acc.download()[0], want, what);
    const std::size_t n = kN;
    c.close(download(dev.head(), n * 2 * cfg_.latent), host(cpu.head(), n * 2 * cfg_.latent), 1e-5, 1e-5,
            "head" + what);
    c.close(download(dev.recon(), n), host(cpu.recon(), n), 1e-4, 1e-5, "recon per item" + what);
    c.close(download(dev.kl(), n), host(cpu.kl(), n), 1e-4, 1e-5, "KL per item" + what);
    if (iwae) c.close(download(dev.bound(), n), host(cpu.iwae_bound(), n), 1e-4, 1e-5, "IWAE bound per item" + what);
    const auto grads = download(dev.grads(), dev.total());
    for (const auto& t : dev.layout().tensors()) {
      const std::vector<float> g(grads.begin() + static_cast<std::ptrdiff_t>(t.offset),
                                 grads.begin() + static_cast<std::ptrdiff_t>(t.offset + t.size()));
      const std::vector<float> w(cpu.grads().begin() + static_cast<std::ptrdiff_t>(t.offset),
                                 cpu.grads().begin() + static_cast<std::ptrdiff_t>(t.offset + t.size()));
      c.expect(std::none_of(g.begin(), g.end(), [](float v) { return std::isnan(v); }),
               t.name + " fully written" + what);
      c.norm_close(g, w, iwae ? 1e-4 : 1e-5, t.name + what);
    }
    return grads;
  }
  static void expect_sums(Check& c, const gpu::DeviceLossSums& got, const LossSums& want, const std::string& what) {
    c.near(got.loss, want.loss, 1e-5 * std::fabs(want.loss), "loss" + what);
    c.near(got.recon, want.recon, 1e-5 * std::fabs(want.recon), "recon" + what);
    c.near(got.kl, want.kl, 1e-5 * std::fabs(want.kl) + 1e-6, "KL" + what);
    c.equal(got.count, static_cast<long long>(kN), "count" + what);
  }
  // The forward pass alone on a shorter batch, then the decoder-only pass of the naive estimate.
  void forward_passes(Context& ctx, Check& c, gpu::CudaModel& dev, CpuModel<float>& cpu, const std::vector<float>& eps,
                      const Array<float>& deps, const Array<double>& beta, Array<gpu::DeviceLossSums>& acc,
                      const std::vector<float>& grads) {
    const LossSums want = cpu.run(x_.data(), eps.data(), kN2, cfg_.samples, cfg_.beta, Pass::forward);
    const std::size_t R = static_cast<std::size_t>(kN2) * cfg_.samples;
    acc.reset();
    poison(dev.lpq(), R);
    dev.run(deps.get(), nullptr, kN2, cfg_.samples, gpu::Pass::forward, nullptr);
    gpu::loss_accumulate(dev.row_logp(), dev.kl(), nullptr, kN2, cfg_.samples, beta.get(), dev.recon(), acc.get(), true,
                         ctx.stream());
    ctx.sync();
    const auto got = acc.download()[0];
    c.near(got.loss, want.loss, 1e-5 * std::fabs(want.loss), "loss, forward only");
    c.close(download(dev.lpq(), R), host(cpu.row_lpq(), R), 1e-4, 1e-5, "log p(z) - log q(z|x) per row, forward only");
    c.close(download(dev.row_logp(), R), host(cpu.row_logp(), R), 1e-4, 1e-5, "log p(x|z) per row, forward only");
    c.bits(download(dev.grads(), dev.total()), grads, "gradients after a forward-only pass");

    const auto codes = normal(R * cfg_.latent, 23);
    cpu.decode_log_likelihood(x_.data(), codes.data(), kN2, cfg_.samples);
    Array<float> dcodes(codes, "codes");
    poison(dev.row_logp(), R);
    dev.decode_log_likelihood(dcodes.get(), kN2, cfg_.samples);
    ctx.sync();
    c.close(download(dev.row_logp(), R), host(cpu.row_logp(), R), 1e-4, 1e-5, "decode_log_likelihood");
  }
  ModelConfig cfg_;
  std::vector<float> x_;
};

}  // namespace vae::cases
