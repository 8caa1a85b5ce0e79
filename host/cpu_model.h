// The CPU model: forward pass, per-data-point loss and the hand-written backward pass of
// the MLP VAE, in float or double. It is the oracle every GPU kernel is checked against.
// GEMMs go to BLAS; each piece of elementwise work is one fused pass. All buffers are
// allocated in the constructor for `max_rows` data points: a step allocates nothing.
#pragma once
#include <vector>

#include "vae/backend.h"
#include "vae/config.h"
#include "vae/layout.h"

namespace vae {

template <class T>
class CpuModel {
 public:
  CpuModel(const ModelConfig& cfg, int max_batch);

  const ModelConfig& config() const { return cfg_; }
  const ParamLayout& layout() const { return layout_; }
  int max_batch() const { return max_batch_; }
  std::vector<T>& params() { return params_; }
  const std::vector<T>& params() const { return params_; }
  const std::vector<T>& grads() const { return grads_; }

  // x: (n, D) targets in [0,1] (or any reals for the Gaussian decoder); eps: (n*L, Z).
  // Returns loss sums over the n data points. With `backward`, grads() afterwards holds
  // the gradient of the batch loss mean_b[ -(1/L) sum_l log p(x_b|z_bl) + beta*KL_b ].
  LossSums forward(const T* x, const T* eps, int n, bool backward);

  // Per data point results of the last forward: (n) each.
  const T* recon() const { return recon_.data(); }
  const T* kl() const { return kl_.data(); }
  // (n, 2Z) of the last forward: mu in columns [0,Z), log-variance in [Z,2Z).
  const T* head() const { return head_.data(); }

  // Decoder means for latent codes z (n, Z): sigmoid(logits) (Bernoulli) or the mean.
  void decode_mean(const T* z, int n, T* out);

 private:
  const T* encode(const T* x, int n);  // runs the encoder; returns (n, H_last) or x
  const T* decode(const T* z, int rows);  // runs the hidden decoder layers; returns the last input
  void backward(const T* x, const T* eps, int n);

  ModelConfig cfg_;
  ParamLayout layout_;
  int max_batch_;
  std::vector<T> params_, grads_;
  std::vector<std::vector<T>> enc_act_, dec_act_;  // (B, H_i), (B*L, H'_i)
  std::vector<T> head_;    // (B, 2Z)
  std::vector<T> z_;       // (B*L, Z)
  std::vector<T> logits_;  // (B*L, D); after backward it holds d loss / d logits
  std::vector<T> grad_a_, grad_b_;  // (B*L, max width) ping-pong
  std::vector<T> row_logp_;         // (B*L)
  std::vector<T> dlv_rows_;         // (B*L, D) learned log-variance grads per row, or empty
  std::vector<T> recon_, kl_;       // (B)
};

extern template class CpuModel<float>;
extern template class CpuModel<double>;

}  // namespace vae
