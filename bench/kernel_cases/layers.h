// Cases of the linear layers (kernels/layers.cuh): the cuBLAS products, bias + activation,
// activation backward + bias gradient, and cuBLASLt's GEMM + bias + ReLU epilogue.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cpu_passes.h"
#include "kernel_cases/harness.h"
#include "layers.cuh"
#include "vae/config.h"

namespace vae::cases {

// Y = X W^T exactly (in double), for X (rows, in) and W (out, in).
inline std::vector<double> exact_forward(const std::vector<float>& x, const std::vector<float>& w, int rows, int in,
                                         int out) {
  std::vector<double> y(static_cast<std::size_t>(rows) * out, 0.0);
  for (int b = 0; b < rows; ++b)
    for (int o = 0; o < out; ++o) {
      double acc = 0;
      for (int i = 0; i < in; ++i)
        acc += double(x[static_cast<std::size_t>(b) * in + i]) * w[static_cast<std::size_t>(o) * in + i];
      y[static_cast<std::size_t>(b) * out + o] = acc;
    }
  return y;
}

// The exact products of a linear layer, in double: Y = X W^T, dW = dY^T X, dX = dY W for
// dY (rows, out). The CPU path's are blas::linear_* (OpenBLAS in float, with its own
// rounding); the GPU's are checked against the exact ones.
struct ExactProducts {
  std::vector<double> y, dw, dx;
};
inline ExactProducts exact_products(const std::vector<float>& x, const std::vector<float>& w,
                                    const std::vector<float>& dy, int rows, int in, int out) {
  ExactProducts r{exact_forward(x, w, rows, in, out), std::vector<double>(w.size(), 0.0),
                  std::vector<double>(x.size(), 0.0)};
  for (int b = 0; b < rows; ++b)
    for (int o = 0; o < out; ++o) {
      const double d = dy[static_cast<std::size_t>(b) * out + o];
      for (int i = 0; i < in; ++i) {
        const std::size_t xi = static_cast<std::size_t>(b) * in + i, wi = static_cast<std::size_t>(o) * in + i;
        r.dw[wi] += d * x[xi];
        r.dx[xi] += d * w[wi];
      }
    }
  return r;
}

inline std::string layer_shape(int rows, int in, int out) { return shape(rows, in) + "->" + std::to_string(out); }

// A linear layer's X (rows, in) and W (out, in), uniform in [-1, 1), seeded `seed` and seed + 1.
struct LayerInputs {
  LayerInputs(int rows_, int in_, int out_, std::uint64_t seed)
      : rows(rows_),
        in(in_),
        out(out_),
        x(uniform(static_cast<std::size_t>(rows) * in, -1, 1, seed), "x"),
        w(uniform(static_cast<std::size_t>(out) * in, -1, 1, seed + 1), "W") {}
  std::vector<double> exact_y() const { return exact_forward(x.init(), w.init(), rows, in, out); }
  int rows, in, out;
  Array<float> x, w;
};

// gpu::linear_forward, linear_weight_grad, linear_input_grad (cuBLAS, FP32 without TF32)
// against the exact products; 1e-5 + 1e-5 relative.
class LinearCase final : public OpCase {
 public:
  // used (0 < used < in): also the gradient of the first `used` inputs alone (a conditional
  // decoder's first layer: z, not the condition).
  LinearCase(int rows, int in, int out, int used = 0)
      : OpCase("linear " + layer_shape(rows, in, out) + (used ? " used " + std::to_string(used) : "")),
        l_(rows, in, out, 1),
        used_(used),
        dy_(uniform(static_cast<std::size_t>(rows) * out, -1, 1, 3), "dY"),
        y_(dy_.size(), "Y"),
        dw_(l_.w.size(), "dW"),
        dx_(l_.x.size(), "dX"),
        dxu_(static_cast<std::size_t>(rows) * std::max(used, 1), "dX[:, :used]") {
    arrays({&l_.x, &l_.w, &dy_, &y_, &dw_, &dx_, &dxu_}, {&y_, &dw_, &dx_, &dxu_});
  }
  void launch(Context& ctx) override {
    gpu::linear_forward(ctx.blas(), l_.rows, l_.in, l_.out, l_.x.get(), l_.w.get(), y_.get());
    gpu::linear_weight_grad(ctx.blas(), l_.rows, l_.in, l_.out, dy_.get(), l_.x.get(), dw_.get());
    gpu::linear_input_grad(ctx.blas(), l_.rows, l_.in, l_.out, dy_.get(), l_.w.get(), dx_.get());
    if (used_ > 0) gpu::linear_input_grad(ctx.blas(), l_.rows, l_.in, l_.out, dy_.get(), l_.w.get(), dxu_.get(), used_);
  }
  void verify(Check& c) override {
    const ExactProducts& want =
        want_.get([&] { return exact_products(l_.x.init(), l_.w.init(), dy_.init(), l_.rows, l_.in, l_.out); });
    c.close(y_.download(), want.y, 1e-5, 1e-5, "Y = X W^T");
    c.close(dw_.download(), want.dw, 1e-5, 1e-5, "dW = dY^T X");
    c.close(dx_.download(), want.dx, 1e-5, 1e-5, "dX = dY W");
    if (used_ == 0) return;
    std::vector<double> part;  // the first `used` columns of each row of dX
    for (int r = 0; r < l_.rows; ++r)
      part.insert(part.end(), want.dx.begin() + static_cast<std::ptrdiff_t>(r) * l_.in,
                  want.dx.begin() + static_cast<std::ptrdiff_t>(r) * l_.in + used_);
    c.close(dxu_.download(), part, 1e-5, 1e-5, "dX[:, :used] = dY W[:, :used]");
  }

 private:
  LayerInputs l_;
  int used_;
  Array<float> dy_, y_, dw_, dx_, dxu_;
  Once<ExactProducts> want_;
};

// The (rows, cols) output of an activation.
struct ActLayer {
  Activation act;
  int rows, cols;
  std::size_t size() const { return static_cast<std::size_t>(rows) * cols; }
  std::string name(const char* op) const { return std::string(op) + " " + to_string(act) + " " + shape(rows, cols); }
};

// gpu::bias_act_forward: y <- act(y + b) against cpu::bias_act; 1e-6 + 1e-5 relative.
class BiasActCase final : public OpCase {
 public:
  BiasActCase(Activation act, int rows, int cols)
      : OpCase(ActLayer{act, rows, cols}.name("bias_act")),
        l_{act, rows, cols},
        y_(uniform(l_.size(), -3, 3, 5), "y"),
        b_(uniform(static_cast<std::size_t>(cols), -1, 1, 6), "b") {
    arrays({&y_, &b_}, {&y_});
  }
  void launch(Context& ctx) override {
    gpu::bias_act_forward(l_.act, y_.get(), b_.get(), l_.rows, l_.cols, ctx.stream());
  }
  void verify(Check& c) override {
    const auto& want = want_.get([&] {
      std::vector<float> y = y_.init();
      cpu::bias_act(l_.act, y.data(), b_.init().data(), l_.rows, l_.cols);
      return y;
    });
    c.close(y_.download(), want, 1e-6, 1e-5, "act(y + b)");
  }
  Traffic traffic() const override { return {double(2 * y_.size() + b_.size()) * 4, 0}; }
  Array<float>& y() { return y_; }
  Array<float>& b() { return b_; }
  int rows() const { return l_.rows; }
  int cols() const { return l_.cols; }

 private:
  ActLayer l_;
  Array<float> y_, b_;
  Once<std::vector<float>> want_;
};

// gpu::act_backward_bias_grad: dy <- dy * act'(y) and db = its column sums, against
// cpu::act_backward_bias_grad (y an activation output: cpu::bias_act of random
// pre-activations); dy 1e-6 + 1e-5 relative, db as sums. The tickets end at zero.
class ActBackwardCase final : public OpCase {
 public:
  ActBackwardCase(Activation act, int rows, int cols)
      : OpCase(ActLayer{act, rows, cols}.name("act_backward_bias_grad")),
        l_{act, rows, cols},
        y_(activated(l_), "y"),
        dy_(uniform(l_.size(), -1, 1, 8), "dy"),
        db_(static_cast<std::size_t>(cols), "db"),
        scratch_(reduce_scratch(rows, cols, 1, false)) {
    arrays({&y_, &dy_, &db_}, {&dy_, &db_});
  }
  void launch(Context& ctx) override {
    gpu::act_backward_bias_grad(l_.act, dy_.get(), y_.get(), l_.rows, l_.cols, db_.get(), scratch_.view(),
                                ctx.stream());
  }
  void verify(Check& c) override {
    const auto& want = want_.get([&] {
      std::vector<float> dy = dy_.init(), db(static_cast<std::size_t>(l_.cols));
      cpu::act_backward_bias_grad(l_.act, dy.data(), y_.init().data(), l_.rows, l_.cols, db.data());
      return dy;
    });
    c.close(dy_.download(), want, 1e-6, 1e-5, "dy * act'(y)");
    c.sums(db_.download(), column_sums(want, l_.rows, l_.cols), "bias gradient");
  }
  void extra(Context&, Check& c) override {
    const gpu::ReduceScratch& s = scratch_.view();
    c.bits(download(s.counters, s.counter_count), std::vector<unsigned>(s.counter_count, 0u), "tickets reset");
  }
  Traffic traffic() const override { return {double(3 * dy_.size() + db_.size()) * 4, 0}; }
  Array<float>& y() { return y_; }
  Array<float>& dy() { return dy_; }
  Array<float>& db() { return db_; }
  int rows() const { return l_.rows; }
  int cols() const { return l_.cols; }

 private:
  static std::vector<float> activated(const ActLayer& l) {
    std::vector<float> y = uniform(l.size(), -3, 3, 7);
    const std::vector<float> zero(static_cast<std::size_t>(l.cols), 0.0f);
    cpu::bias_act(l.act, y.data(), zero.data(), l.rows, l.cols);
    return y;
  }
  ActLayer l_;
  Array<float> y_, dy_, db_;
  gpu::ReduceScratchBuffers scratch_;
  Once<std::vector<float>> want_;
};

// gpu::LtBiasRelu: y = relu(X W^T + b) in one cuBLASLt launch, against the exact product
// (1e-5 sqrt(in) + 1e-5 relative) and against cuBLAS GEMM + bias_act_forward, the path it
// replaces. A shape cuBLASLt has no algorithm for launches nothing (then the layer falls
// back): allowed only for leading dimensions that are not multiples of 4.
class LtBiasReluCase final : public OpCase {
 public:
  LtBiasReluCase(int rows, int in, int out)
      : OpCase("lt_bias_relu " + layer_shape(rows, in, out)),
        l_(rows, in, out, 800),
        b_(uniform(static_cast<std::size_t>(out), -1, 1, 802), "b"),
        y_(static_cast<std::size_t>(rows) * out, "y") {
    arrays({&l_.x, &l_.w, &b_, &y_}, {&y_});
  }
  void launch(Context& ctx) override {
    fused_ = ctx.lt().forward(l_.rows, l_.in, l_.out, l_.x.get(), l_.w.get(), b_.get(), y_.get(), ctx.stream());
  }
  // The path the epilogue replaces, into y: cuBLAS GEMM, then bias_act_forward.
  void launch_unfused(Context& ctx) {
    gpu::linear_forward(ctx.blas(), l_.rows, l_.in, l_.out, l_.x.get(), l_.w.get(), y_.get());
    gpu::bias_act_forward(Activation::relu, y_.get(), b_.get(), l_.rows, l_.out, ctx.stream());
  }
  void verify(Check& c) override {
    if (!fused_) {
      c.expect(l_.in % 4 != 0 || l_.out % 4 != 0, "cuBLASLt found no algorithm");
      c.untouched(y_.download(), "y of a refused shape");
      return;
    }
    const auto& want = want_.get([&] {
      std::vector<double> y = l_.exact_y();
      for (std::size_t i = 0; i < y.size(); ++i)
        y[i] = std::max(0.0, y[i] + b_.init()[i % static_cast<std::size_t>(l_.out)]);
      return y;
    });
    c.close(y_.download(), want, tol(), 1e-5, "relu(X W^T + b)");
  }
  void extra(Context& ctx, Check& c) override {
    if (!fused_) return;
    const std::vector<float> lt = y_.download();
    reset();
    launch_unfused(ctx);
    ctx.sync();
    c.close(lt, y_.download(), tol(), 1e-5, "against GEMM + bias_act");
  }
  Traffic traffic() const override {
    return {double(l_.x.size() + y_.size() + l_.w.size() + b_.size()) * 4, 2.0 * l_.rows * l_.in * l_.out};
  }

 private:
  double tol() const { return 1e-5 * std::sqrt(double(l_.in)); }
  LayerInputs l_;
  Array<float> b_, y_;
  bool fused_ = false;
  Once<std::vector<double>> want_;
};

}  // namespace vae::cases
