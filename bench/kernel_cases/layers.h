// Cases of the linear layers (kernels/layers.cuh): the cuBLAS products, bias + activation,
// activation backward + bias gradient, and cuBLASLt's GEMM + bias + ReLU epilogue.
#pragma once
#include <algorithm>
#include <cmath>
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

// gpu::linear_forward, linear_weight_grad, linear_input_grad (cuBLAS, FP32 without TF32)
// against the exact products; 1e-5 + 1e-5 relative.
class LinearCase final : public OpCase {
 public:
  LinearCase(int rows, int in, int out)
      : OpCase("linear " + shape(rows, in) + "->" + std::to_string(out)),
        rows_(rows),
        in_(in),
        out_(out),
        x_(uniform(static_cast<std::size_t>(rows) * in, -1, 1, 1), "x"),
        w_(uniform(static_cast<std::size_t>(out) * in, -1, 1, 2), "W"),
        dy_(uniform(static_cast<std::size_t>(rows) * out, -1, 1, 3), "dY"),
        y_(dy_.size(), "Y"),
        dw_(w_.size(), "dW"),
        dx_(x_.size(), "dX") {
    arrays({&x_, &w_, &dy_, &y_, &dw_, &dx_}, {&y_, &dw_, &dx_});
  }
  void launch(Context& ctx) override {
    gpu::linear_forward(ctx.blas(), rows_, in_, out_, x_.get(), w_.get(), y_.get());
    gpu::linear_weight_grad(ctx.blas(), rows_, in_, out_, dy_.get(), x_.get(), dw_.get());
    gpu::linear_input_grad(ctx.blas(), rows_, in_, out_, dy_.get(), w_.get(), dx_.get());
  }
  void verify(Check& c) override {
    const ExactProducts& want =
        want_.get([&] { return exact_products(x_.init(), w_.init(), dy_.init(), rows_, in_, out_); });
    c.close(y_.download(), want.y, 1e-5, 1e-5, "Y = X W^T");
    c.close(dw_.download(), want.dw, 1e-5, 1e-5, "dW = dY^T X");
    c.close(dx_.download(), want.dx, 1e-5, 1e-5, "dX = dY W");
  }

 private:
  int rows_, in_, out_;
  Array<float> x_, w_, dy_, y_, dw_, dx_;
  Once<ExactProducts> want_;
};

// gpu::bias_act_forward: y <- act(y + b) against cpu::bias_act; 1e-6 + 1e-5 relative.
class BiasActCase final : public OpCase {
 public:
  BiasActCase(Activation act, int rows, int cols)
      : OpCase(std::string("bias_act ") + to_string(act) + " " + shape(rows, cols)),
        act_(act),
        rows_(rows),
        cols_(cols),
        y_(uniform(static_cast<std::size_t>(rows) * cols, -3, 3, 5), "y"),
        b_(uniform(static_cast<std::size_t>(cols), -1, 1, 6), "b") {
    arrays({&y_, &b_}, {&y_});
  }
  void launch(Context& ctx) override { gpu::bias_act_forward(act_, y_.get(), b_.get(), rows_, cols_, ctx.stream()); }
  void verify(Check& c) override {
    const auto& want = want_.get([&] {
      std::vector<float> y = y_.init();
      cpu::bias_act(act_, y.data(), b_.init().data(), rows_, cols_);
      return y;
    });
    c.close(y_.download(), want, 1e-6, 1e-5, "act(y + b)");
  }
  Traffic traffic() const override { return {double(2 * y_.size() + b_.size()) * 4, 0}; }
  Array<float>& y() { return y_; }
  Array<float>& b() { return b_; }
  int rows() const { return rows_; }
  int cols() const { return cols_; }

 private:
  Activation act_;
  int rows_, cols_;
  Array<float> y_, b_;
  Once<std::vector<float>> want_;
};

// gpu::act_backward_bias_grad: dy <- dy * act'(y) and db = its column sums, against
// cpu::act_backward_bias_grad (y an activation output: cpu::bias_act of random
// pre-activations); dy 1e-6 + 1e-5 relative, db as sums. The tickets end at zero.
class ActBackwardCase final : public OpCase {
 public:
  ActBackwardCase(Activation act, int rows, int cols)
      : OpCase(std::string("act_backward_bias_grad ") + to_string(act) + " " + shape(rows, cols)),
        act_(act),
        rows_(rows),
        cols_(cols),
        y_(activated(act, rows, cols), "y"),
        dy_(uniform(static_cast<std::size_t>(rows) * cols, -1, 1, 8), "dy"),
        db_(static_cast<std::size_t>(cols), "db"),
        scratch_(reduce_scratch(rows, cols, 1, false)) {
    arrays({&y_, &dy_, &db_}, {&dy_, &db_});
  }
  void launch(Context& ctx) override {
    gpu::act_backward_bias_grad(act_, dy_.get(), y_.get(), rows_, cols_, db_.get(), scratch_.view(), ctx.stream());
  }
  void verify(Check& c) override {
    const auto& want = want_.get([&] {
      std::vector<float> dy = dy_.init(), db(static_cast<std::size_t>(cols_));
      cpu::act_backward_bias_grad(act_, dy.data(), y_.init().data(), rows_, cols_, db.data());
      return dy;
    });
    c.close(dy_.download(), want, 1e-6, 1e-5, "dy * act'(y)");
    c.sums(db_.download(), column_sums(want, rows_, cols_), "bias gradient");
  }
  void extra(Context&, Check& c) override {
    const gpu::ReduceScratch& s = scratch_.view();
    c.bits(download(s.counters, s.counter_count), std::vector<unsigned>(s.counter_count, 0u), "tickets reset");
  }
  Traffic traffic() const override { return {double(3 * dy_.size() + db_.size()) * 4, 0}; }
  Array<float>& y() { return y_; }
  Array<float>& dy() { return dy_; }
  Array<float>& db() { return db_; }
  int rows() const { return rows_; }
  int cols() const { return cols_; }

 private:
  static std::vector<float> activated(Activation act, int rows, int cols) {
    std::vector<float> y = uniform(static_cast<std::size_t>(rows) * cols, -3, 3, 7);
    const std::vector<float> zero(static_cast<std::size_t>(cols), 0.0f);
    cpu::bias_act(act, y.data(), zero.data(), rows, cols);
    return y;
  }
  Activation act_;
  int rows_, cols_;
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
      : OpCase("lt_bias_relu " + shape(rows, in) + "->" + std::to_string(out)),
        rows_(rows),
        in_(in),
        out_(out),
        x_(uniform(static_cast<std::size_t>(rows) * in, -1, 1, 800), "x"),
        w_(uniform(static_cast<std::size_t>(out) * in, -1, 1, 801), "W"),
        b_(uniform(static_cast<std::size_t>(out), -1, 1, 802), "b"),
        y_(static_cast<std::size_t>(rows) * out, "y") {
    arrays({&x_, &w_, &b_, &y_}, {&y_});
  }
  void launch(Context& ctx) override {
    fused_ = ctx.lt().forward(rows_, in_, out_, x_.get(), w_.get(), b_.get(), y_.get(), ctx.stream());
  }
  // The path the epilogue replaces, into y: cuBLAS GEMM, then bias_act_forward.
  void launch_unfused(Context& ctx) {
    gpu::linear_forward(ctx.blas(), rows_, in_, out_, x_.get(), w_.get(), y_.get());
    gpu::bias_act_forward(Activation::relu, y_.get(), b_.get(), rows_, out_, ctx.stream());
  }
  void verify(Check& c) override {
    if (!fused_) {
      c.expect(in_ % 4 != 0 || out_ % 4 != 0, "cuBLASLt found no algorithm");
      c.untouched(y_.download(), "y of a refused shape");
      return;
    }
    const auto& want = want_.get([&] {
      std::vector<double> y = exact_forward(x_.init(), w_.init(), rows_, in_, out_);
      for (std::size_t i = 0; i < y.size(); ++i)
        y[i] = std::max(0.0, y[i] + b_.init()[i % static_cast<std::size_t>(out_)]);
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
    return {double(x_.size() + y_.size() + w_.size() + b_.size()) * 4, 2.0 * rows_ * in_ * out_};
  }

 private:
  double tol() const { return 1e-5 * std::sqrt(double(in_)); }
  int rows_, in_, out_;
  Array<float> x_, w_, b_, y_;
  bool fused_ = false;
  Once<std::vector<double>> want_;
};

}  // namespace vae::cases
