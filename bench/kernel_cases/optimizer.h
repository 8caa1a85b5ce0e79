// Cases of the step's end (kernels/optimizer.cuh, kernels/step_guard.cuh): the one-launch
// optimizer over the flat buffer, its scalars computed on the device, and the step guard.
#pragma once
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "cpu_passes.h"
#include "elementwise.h"
#include "kernel_cases/harness.h"
#include "optimizer.cuh"
#include "step_guard.cuh"
#include "vae/config.h"
#include "vae/layout.h"

namespace vae::cases {

struct OptimizerShape {
  OptimizerConfig cfg;
  double lr = 0;                         // the record's learning rate
  std::array<int, 2> update{1, 1};       // the record's update_encoder, update_decoder
  std::size_t n = 0, encoder_end = 0;    // the flat buffer and its group split
  std::array<std::int64_t, 2> counts{};  // each group's update count, this one included
  std::vector<TensorView> tensors;       // when given: values only inside them, zero between (a model's padding)
};

// gpu::optimizer_step against cpu::optimizer_pass over each updated group with that
// group's ew::optimizer_scalars (the CPU backend's loop): params 1e-7 + 1e-6 relative,
// slot 1 1e-8 + 1e-6, slot 2 1e-10 + 1e-6; a group the record does not update stays as it
// was, bit for bit, an updated one moves; the learning rate from the record, the counts
// from device memory (read, not changed). extra(): a dropped step (the skip flag) changes
// nothing.
class OptimizerCase final : public OpCase {
 public:
  explicit OptimizerCase(OptimizerShape s)
      : OpCase(std::string("optimizer_step ") + to_string(s.cfg.kind) + (s.update[0] ? " encoder" : "") +
               (s.update[1] ? " decoder" : "") + " n=" + std::to_string(s.n)),
        s_(std::move(s)),
        p_(values(-1, 1, 100), "params"),
        g_(values(-1, 1, 103), "gradients"),
        s1_(values(-0.1, 0.1, 101), "slot 1"),
        s2_(values(0, 0.01, 102), "slot 2"),
        counts_(std::vector<std::int64_t>{s_.counts[0], s_.counts[1]}, "update counts"),
        record_(header(), {0}) {
    arrays({&p_, &g_, &s1_, &s2_, &counts_}, {&p_, &s1_, &s2_});
  }
  void launch(Context& ctx) override { gpu::optimizer_step(args(nullptr), s_.cfg, ctx.stream()); }
  void verify(Check& c) override {
    std::vector<float> p = p_.init(), s1 = s1_.init(), s2 = s2_.init();
    const std::size_t begin[2] = {0, s_.encoder_end}, end[2] = {s_.encoder_end, s_.n};
    for (int grp = 0; grp < 2; ++grp)
      if (s_.update[grp])
        cpu::optimizer_pass(p.data() + begin[grp], s1.data() + begin[grp], s2.data() + begin[grp],
                            g_.init().data() + begin[grp], end[grp] - begin[grp],
                            ew::optimizer_scalars(s_.cfg, s_.lr, s_.counts[grp]));
    const auto gp = p_.download(), gs1 = s1_.download(), gs2 = s2_.download();
    c.close(gp, p, 1e-7, 1e-6, "params");
    c.close(gs1, s1, 1e-8, 1e-6, "slot 1");
    c.close(gs2, s2, 1e-10, 1e-6, "slot 2");
    for (int grp = 0; grp < 2; ++grp) {
      auto part = [&](const std::vector<float>& v) {
        return std::vector<float>(v.begin() + static_cast<std::ptrdiff_t>(begin[grp]),
                                  v.begin() + static_cast<std::ptrdiff_t>(end[grp]));
      };
      const std::string group = grp == 0 ? "encoder group" : "decoder group";
      if (s_.update[grp]) {
        c.expect(part(gp) != part(p_.init()), group + " did not move");
      } else {
        c.bits(part(gp), part(p_.init()), group + " params, not updated");
        c.bits(part(gs1), part(s1_.init()), group + " slot 1, not updated");
        c.bits(part(gs2), part(s2_.init()), group + " slot 2, not updated");
      }
    }
    c.bits(counts_.download(), counts_.init(), "the update counts (read, not written)");
  }
  void extra(Context& ctx, Check& c) override {
    const auto p = p_.download(), s1 = s1_.download(), s2 = s2_.download();
    Array<int> skip(std::vector<int>{1}, "skip flag");
    gpu::optimizer_step(args(skip.get()), s_.cfg, ctx.stream());
    ctx.sync();
    c.bits(p_.download(), p, "params after a dropped step");
    c.bits(s1_.download(), s1, "slot 1 after a dropped step");
    c.bits(s2_.download(), s2, "slot 2 after a dropped step");
  }
  Traffic traffic() const override { return {double(7 * s_.n) * 4, 0}; }  // p, g, s1, s2 read; p, s1, s2 written
  const OptimizerShape& shape() const { return s_; }
  Array<float>& p() { return p_; }
  Array<float>& g() { return g_; }
  Array<float>& s1() { return s1_; }
  Array<float>& s2() { return s2_; }

 private:
  std::vector<float> values(double lo, double hi, std::uint64_t seed) const {
    std::vector<float> v = uniform(s_.n, lo, hi, seed);
    if (s_.tensors.empty()) return v;
    std::vector<float> padded(s_.n, 0.0f);
    for (const auto& t : s_.tensors)
      std::copy(v.begin() + static_cast<std::ptrdiff_t>(t.offset),
                v.begin() + static_cast<std::ptrdiff_t>(t.offset + t.size()),
                padded.begin() + static_cast<std::ptrdiff_t>(t.offset));
    return padded;
  }
  gpu::StepHeader header() const {
    gpu::StepHeader h;
    h.lr = s_.lr;
    h.update_encoder = s_.update[0];
    h.update_decoder = s_.update[1];
    return h;
  }
  gpu::OptimizerArgs args(const int* skip) const {
    gpu::OptimizerArgs a;
    a.p = p_.get();
    a.g = g_.get();
    a.s1 = s1_.get();
    a.s2 = s2_.get();
    a.n = s_.n;
    a.encoder_end = s_.encoder_end;
    a.hdr = record_.header();
    a.updates = counts_.get();
    a.skip = skip;
    return a;
  }
  OptimizerShape s_;
  Array<float> p_, g_, s1_, s2_;
  Array<std::int64_t> counts_;
  Record record_;
};

// gpu::optimizer_scalars_on_device against ew::optimizer_scalars, the host function the CPU
// backend calls: every field equal, except Adam's two bias-corrected terms (pow may differ
// by an ulp or two between libdevice and glibc, and 1 - b^t, >= 1e-3 here, magnifies that
// to ~1e-13): within 1e-12 relative, and as floats equal or one float apart (a double on
// a rounding boundary: rare, not a bug).
class OptimizerScalarsCase final : public OpCase {
 public:
  OptimizerScalarsCase(const OptimizerConfig& cfg)
      : OpCase(std::string("optimizer_scalars_on_device ") + to_string(cfg.kind)),
        cfg_(cfg),
        t_(std::vector<std::int64_t>{1, 2, 3, 10, 99, 1000, 4691, 100000, 10000000}, "update counts"),
        lr_(decaying(t_.size()), "learning rates"),
        out_(t_.size(), "scalars") {
    arrays({&t_, &lr_, &out_}, {});
  }
  void launch(Context& ctx) override {
    gpu::optimizer_scalars_on_device(lr_.get(), t_.get(), static_cast<int>(t_.size()), cfg_, out_.get(), ctx.stream());
  }
  void verify(Check& c) override {
    const auto got = out_.download();
    for (std::size_t i = 0; i < got.size(); ++i) {
      const ew::OptimizerScalars want = ew::optimizer_scalars(cfg_, lr_.init()[i], t_.init()[i]);
      const std::string what = "t=" + std::to_string(t_.init()[i]);
      c.equal(got[i].kind, want.kind, what + " kind");
      c.equal(got[i].lr, want.lr, what + " lr");
      c.equal(got[i].decay, want.decay, what + " 1 - lr*wd (the same double operations)");
      c.equal(got[i].momentum, want.momentum, what + " momentum");
      c.equal(got[i].alpha, want.alpha, what + " alpha");
      c.equal(got[i].eps, want.eps, what + " eps");
      for (const auto& [g, w] : {std::pair{got[i].adam.step_size, want.adam.step_size},
                                 std::pair{got[i].adam.inv_sqrt_bc2, want.adam.inv_sqrt_bc2}}) {
        c.near(g, w, 1e-12 * w, what + " Adam bias correction");
        const float gf = static_cast<float>(g), wf = static_cast<float>(w);
        c.expect(gf == wf || gf == std::nextafter(wf, 0.0f) || gf == std::nextafter(wf, 2 * wf),
                 what + ": as floats " + std::to_string(gf) + " vs " + std::to_string(wf));
      }
    }
  }

 private:
  static std::vector<double> decaying(std::size_t n) {  // a decaying schedule
    std::vector<double> lrs;
    for (std::size_t i = 0; i < n; ++i) lrs.push_back(1e-3 * std::pow(0.7, double(i)));
    return lrs;
  }
  OptimizerConfig cfg_;
  Array<std::int64_t> t_;
  Array<double> lr_;
  Array<ew::OptimizerScalars> out_;
};

// gpu::step_guard, against the CPU backend's own check (first_non_finite and the counts it
// keeps, inline in host/cpu_backend.cpp), over five steps: finite (counted, both groups'
// counts advance); two non-finite gradients (dropped, the lower index remembered, halted
// under `stop`); an infinite loss (dropped; the first dropped step stays the one
// remembered); finite encoder-only (skip carries on, stop stays halted); decoder-only.
class StepGuardScenario final : public KernelCase {
 public:
  explicit StepGuardScenario(bool stop)
      : KernelCase(std::string("step_guard ") + (stop ? "stop" : "skip")), stop_(stop) {}
  void check(Context& ctx, Check& c) override {
    const bool stop = stop_;
    auto grads = uniform(kN, -1, 1, 110);
    Array<float> g(grads, "gradients");
    Array<gpu::DeviceStepState> state(std::vector<gpu::DeviceStepState>{gpu::DeviceStepState{}}, "step state");
    Array<gpu::DeviceLossSums> acc(std::vector<gpu::DeviceLossSums>{gpu::DeviceLossSums{}}, "running sums");
    Record rec(gpu::StepHeader{}, {0});
    gpu::StepHeader h;
    auto step = [&](std::int64_t t, double loss) {
      h.step = t;
      rec.write(h, {0});
      auto st = state.download()[0];
      st.step = gpu::DeviceLossSums{loss, 8.5, 2.0, 7};
      state.set({st});
      gpu::step_guard(g.get(), kN, rec.header(), state.get(), acc.get(), stop, ctx.stream());
      ctx.sync();
      return state.download()[0];
    };
    auto st = step(40, 10.5);
    c.equal(st.bad, 0, "1: finite step dropped");
    c.equal(st.updates[0], 1, "1: encoder count");
    c.equal(st.updates[1], 1, "1: decoder count");
    c.equal(acc.download()[0].count, 7LL, "1: count in the sums");
    c.equal(acc.download()[0].loss, 10.5, "1: loss in the sums");
    grads[4123] = NAN;
    grads[9001] = INFINITY;
    g.set(grads);
    st = step(41, 10.5);
    c.equal(st.bad, 1, "2: non-finite gradients kept");
    c.equal(st.updates[0], 1, "2: encoder count");
    c.equal(st.updates[1], 1, "2: decoder count");
    c.equal(st.bad_steps, 1, "2: dropped steps");
    c.equal(st.first_bad_step, 41, "2: first dropped step");
    c.equal(st.first_bad_index, 4123, "2: first non-finite index (the lower one)");
    c.equal(st.halted, stop ? 1 : 0, "2: halted");
    c.equal(st.min_bad, gpu::kNoBadIndex, "2: the scratch minimum is reset for the next step");
    c.equal(st.ticket, 0u, "2: the ticket is reset for the next step");
    c.equal(acc.download()[0].count, 7LL, "2: a dropped step adds nothing");
    later_steps(c, step, grads, g, acc, h);
  }

 private:
  static constexpr std::size_t kN = 4 * 5000;
  template <class Step>
  void later_steps(Check& c, Step& step, std::vector<float>& grads, Array<float>& g,
                   const Array<gpu::DeviceLossSums>& acc, gpu::StepHeader& h) const {
    const bool stop = stop_;
    grads[4123] = 0.5f;
    grads[9001] = 0.25f;
    g.set(grads);
    auto st = step(42, INFINITY);
    c.equal(st.bad, 1, "3: infinite loss kept");
    c.equal(st.bad_steps, stop ? 1 : 2, "3: dropped steps");
    c.equal(st.first_bad_index, 4123, "3: the first dropped step stays the one remembered");
    h.update_decoder = 0;
    st = step(43, 10.5);
    c.equal(st.bad, stop ? 1 : 0, "4: an encoder-only step after a dropped one");
    c.equal(st.updates[0], stop ? 1 : 2, "4: encoder count");
    c.equal(st.updates[1], 1, "4: an encoder-only step leaves the decoder's count");
    c.equal(acc.download()[0].count, stop ? 7LL : 14LL, "4: count in the sums");
    h.update_encoder = 0;
    h.update_decoder = 1;
    st = step(44, 10.5);
    c.equal(st.updates[0], stop ? 1 : 2, "5: a decoder-only step leaves the encoder's count");
    c.equal(st.updates[1], stop ? 1 : 2, "5: decoder count");
  }
  bool stop_;
};

}  // namespace vae::cases
