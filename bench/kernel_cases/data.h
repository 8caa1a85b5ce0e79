// Cases of the step's inputs (kernels/gather.cuh, kernels/noise.cuh): the batch gather
// (uint8 or float rows, dynamic binarization) and the device noise blocks.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gather.cuh"
#include "kernel_cases/harness.h"
#include "noise.cuh"
#include "rng.h"
#include "vae/data.h"

namespace vae::cases {

// gpu::gather_rows against Dataset::row, the CPU backend's gather (x/255 is one IEEE
// multiply on both sides: bit for bit). With `bin_step` >= 0, dynamic binarization with the
// uniforms of that step from a device noise block of three steps: x = u <= x ? 1 : 0, as the
// CPU backend binarizes (inline in CpuBackend::train_step) with the host generator's
// uniforms (StepNoise); every pixel equal, and between 10% and 90% of them ones.
class GatherCase final : public OpCase {
 public:
  GatherCase(std::shared_ptr<const Dataset> data, std::vector<std::uint32_t> indices, std::int64_t bin_step = -1)
      : OpCase(std::string("gather_rows ") + (data->f32.empty() ? "uint8" : "float") + " " +
               shape(static_cast<int>(indices.size()), data->dim) +
               (bin_step >= 0 ? ", binarized at step " + std::to_string(bin_step) : "")),
        data_(std::move(data)),
        idx_(std::move(indices)),
        n_(static_cast<int>(idx_.size())),
        bin_step_(bin_step),
        rows_(bytes_of(*data_), "rows"),
        x_(idx_.size() * static_cast<std::size_t>(data_->dim), "x"),
        record_(header(), idx_) {
    arrays({&rows_, &x_}, {&x_});
    if (bin_step >= 0) {
      block_ = std::make_unique<gpu::NoiseBlock>(bin_seed(), gpu::NoiseBlock::Kind::uniform, stride(), 3 * stride(),
                                                 nullptr, "case uniforms");
      gpu::StepHeader h = header();
      h.step = bin_step;
      h.bin_offset = block_->prepare(bin_step);
      VAE_CUDA_CHECK(cudaDeviceSynchronize());
      record_.write(h, idx_);
    }
  }
  void launch(Context& ctx) override {
    gpu::gather_rows(record_.header(), record_.indices(), n_, data_->dim, block_ ? block_->data() : nullptr, x_.get(),
                     ctx.stream());
  }
  void verify(Check& c) override {
    const std::size_t D = static_cast<std::size_t>(data_->dim);
    std::vector<float> want(x_.size());
    for (std::size_t i = 0; i < idx_.size(); ++i) data_->row(idx_[i], want.data() + i * D);
    if (bin_step_ < 0) return c.bits(x_.download(), want, "rows");
    StepNoise host(bin_seed(), StepNoise::Kind::uniform, stride(), 3 * stride());
    const float* u = host.step(bin_step_);
    double ones = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
      want[i] = u[i] <= want[i] ? 1.0f : 0.0f;
      ones += want[i];
    }
    c.bits(x_.download(), want, "binarized pixels");
    c.expect(ones > 0.1 * double(want.size()) && ones < 0.9 * double(want.size()), "between 10% and 90% ones");
  }

 private:
  static std::vector<unsigned char> bytes_of(const Dataset& d) {
    if (d.f32.empty()) return d.u8;
    std::vector<unsigned char> b(d.f32.size() * sizeof(float));
    std::memcpy(b.data(), d.f32.data(), b.size());
    return b;
  }
  static std::uint64_t bin_seed() { return derive_seed(9, RngStream::bin); }
  std::size_t stride() const { return round_up_4(idx_.size() * static_cast<std::size_t>(data_->dim)); }  // as RngPlan
  gpu::StepHeader header() const {
    gpu::StepHeader h;
    h.rows = reinterpret_cast<std::uint64_t>(rows_.get());
    h.rows_u8 = data_->f32.empty() ? 1 : 0;
    h.n = n_;
    return h;
  }
  std::shared_ptr<const Dataset> data_;
  std::vector<std::uint32_t> idx_;
  int n_;
  std::int64_t bin_step_;
  Array<unsigned char> rows_;
  Array<float> x_;
  Record record_;
  std::unique_ptr<gpu::NoiseBlock> block_;
};

// gpu::NoiseBlock (cuRAND's device Philox generator) against StepNoise, the host
// generator the CPU path draws from, at the same seed and offsets, across block boundaries
// and back: normals within 1e-6 + 1e-6 relative (Box-Muller on the device against host
// libm), uniforms bit for bit; 8 blocks drawn for the step sequence (4 steps per block).
// Notes the fraction of bit-exact values.
class NoiseBlockScenario final : public KernelCase {
 public:
  explicit NoiseBlockScenario(StepNoise::Kind kind)
      : KernelCase(std::string("NoiseBlock ") + (kind == StepNoise::Kind::normal ? "normal" : "uniform")),
        kind_(kind) {}
  void check(Context& ctx, Check& c) override {
    const bool normal = kind_ == StepNoise::Kind::normal;
    const std::size_t stride = round_up_4(2 * 37 * 13);  // a multiple of 4, as RngPlan lays steps out
    const std::uint64_t seed = normal ? 77 : 78;
    gpu::NoiseBlock dev(seed, normal ? gpu::NoiseBlock::Kind::normal : gpu::NoiseBlock::Kind::uniform, stride,
                        4 * stride, ctx.stream(), "case noise");
    StepNoise host(seed, kind_, stride, 4 * stride);
    std::size_t exact = 0, total = 0;
    for (std::int64_t t : {0, 1, 5, 3, 4, 12, 2, 13, 40, 0}) {
      const std::int64_t off = dev.prepare(t);
      ctx.sync();
      const auto got = download(dev.data() + off, stride);
      const std::vector<float> want(host.step(t), host.step(t) + stride);
      const std::string what = "step " + std::to_string(t);
      if (normal)
        c.close(got, want, 1e-6, 1e-6, what);
      else
        c.bits(got, want, what);
      for (std::size_t i = 0; i < stride; ++i) exact += got[i] == want[i];
      total += stride;
    }
    c.equal(dev.refills(), std::int64_t{8}, "blocks drawn for the step sequence (4 steps per block)");
    c.note(normal ? "normal_bit_exact_fraction" : "uniform_bit_exact_fraction",
           std::to_string(double(exact) / double(total)));
  }

 private:
  StepNoise::Kind kind_;
};

// A block of six steps equals the same steps drawn one block at a time, on the device.
class NoiseStepsScenario final : public KernelCase {
 public:
  NoiseStepsScenario() : KernelCase("NoiseBlock: a block of steps equals the steps drawn one by one") {}
  void check(Context& ctx, Check& c) override {
    const std::size_t stride = round_up_4(2 * 9 * 7);
    gpu::NoiseBlock big(5, gpu::NoiseBlock::Kind::normal, stride, 6 * stride, ctx.stream(), "big");
    gpu::NoiseBlock one(5, gpu::NoiseBlock::Kind::normal, stride, stride, ctx.stream(), "one");
    for (std::int64_t t = 3; t < 9; ++t) {
      const auto a = download(big.data() + big.prepare(t), stride);
      const auto b = download(one.data() + one.prepare(t), stride);
      c.bits(a, b, "step " + std::to_string(t));
    }
    c.equal(big.refills(), std::int64_t{1}, "blocks of the big generator");
    c.equal(one.refills(), std::int64_t{6}, "blocks of the one-step generator");
  }
};

}  // namespace vae::cases
