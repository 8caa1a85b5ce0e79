// The backward pass of the MLP VAE, walked once for both models: CpuModel (host/cpu_model.cpp)
// and gpu::CudaModel (kernels/cuda_model.cu) each hand it their operations on their own
// buffers (BLAS or cuBLAS products, the fused passes or kernels), so the two walk the same
// layers in the same order by construction.
//   d loss / d logits -> the output layer's weight gradient and d loss / d (its input)
//   -> per decoder layer, last to first: act' + bias gradient, weight gradient, input gradient
//   -> the pass's latent backward: (d mu, d s) and the head bias's gradient
//   -> the head's weight gradient -> the encoder's layers, last to first (none for the data).
//
// Ops, with T the model's scalar:
//   const T* logits()              d loss / d logits (n*L, D); the output bias's gradient is done
//   const T* decoder_in(k)         decoder layer k's input: z, or [z, c] for a conditional model,
//                                  for k = 0; k = layers: the output
//                                  layer's (layer k - 1's output)
//   const T* encoder_in(k)         encoder layer k's input: x for k = 0; k = layers: the head's
//   weight_grad(rows, l, dy, in)   l's weight gradient dW = dy^T in
//   input_grad(rows, l, dy, dx, u) dx = dy W[:, :u] (u = 0: all of W): the decoder's first layer
//                                  takes [z, c] and only z has a gradient
//   act_bias_grad(rows, l, dy, y)  dy *= act'(y) from l's output y; l's bias gradient: the
//                                  column sums of the result
//   latent_backward(pass, dz, dh)  dh = (d mu, d s) (n, 2Z) from dz = d loss / dz (n*L, Z;
//                                  null for elbo_score, which does not go through z), and the
//                                  head bias's gradient
#pragma once
#include <cstddef>
#include <utility>

#include "backend_shared.h"
#include "vae/layout.h"

namespace vae {

// The gradient of a pass whose forward results and d loss / d logits the model holds, into
// its gradient; dcur and dnext: two (n*L, max(widest layer, 2Z)) buffers. `pass` is a
// gradient pass (Pass::forward computes none).
template <class T, class Ops>
void backward_walk(Ops& ops, const ParamLayout& layout, int n, int L, Pass pass, T* dcur, T* dnext) {
  if (pass == Pass::forward) return;
  const int R = n * L;
  const bool need_dz = pass != Pass::elbo_score;  // the score estimator does not go through z
  const std::size_t n_dec = layout.decoder().size(), n_enc = layout.encoder().size();
  const int Z = layout.head().out / 2;  // the decoder's first layer: the gradient of z only

  const auto& out = layout.output();
  ops.weight_grad(R, out, ops.logits(), ops.decoder_in(n_dec));
  if (need_dz || n_dec > 0) ops.input_grad(R, out, ops.logits(), dcur, n_dec == 0 ? Z : 0);
  for (std::size_t k = n_dec; k-- > 0;) {
    const auto& l = layout.decoder()[k];
    ops.act_bias_grad(R, l, dcur, ops.decoder_in(k + 1));  // layer k's output
    ops.weight_grad(R, l, dcur, ops.decoder_in(k));
    if (k == 0 && !need_dz) break;
    ops.input_grad(R, l, dcur, dnext, k == 0 ? Z : 0);
    std::swap(dcur, dnext);
  }

  // dcur = d loss / dz (R, Z) -> dnext = (d mu, d s) (n, 2Z)
  ops.latent_backward(pass, need_dz ? dcur : nullptr, dnext);
  std::swap(dcur, dnext);
  const auto& hd = layout.head();
  ops.weight_grad(n, hd, dcur, ops.encoder_in(n_enc));
  if (n_enc == 0) return;
  ops.input_grad(n, hd, dcur, dnext, 0);
  std::swap(dcur, dnext);

  for (std::size_t k = n_enc; k-- > 0;) {
    const auto& l = layout.encoder()[k];
    ops.act_bias_grad(n, l, dcur, ops.encoder_in(k + 1));  // layer k's output
    ops.weight_grad(n, l, dcur, ops.encoder_in(k));
    if (k == 0) break;  // no gradient for the data
    ops.input_grad(n, l, dcur, dnext, 0);
    std::swap(dcur, dnext);
  }
}

}  // namespace vae
