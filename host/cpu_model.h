// The CPU model: forward pass, per-data-point loss and the hand-written backward pass of
// the MLP VAE, in float or double. It is the oracle every GPU kernel is checked against.
// GEMMs go to BLAS; each piece of elementwise work is one fused pass. All buffers are
// allocated in the constructor for `max_batch` data points of `max_samples` samples each:
// a pass allocates nothing.
#pragma once
#include <vector>

#include "backend_shared.h"  // Pass
#include "vae/backend.h"
#include "vae/config.h"
#include "vae/layout.h"

namespace vae {

template <class T>
class CpuModel {
 public:
  // max_samples: the most samples per data point a pass may use; default cfg.samples.
  CpuModel(const ModelConfig& cfg, int max_batch, int max_samples = 0);

  const ModelConfig& config() const { return cfg_; }
  const ParamLayout& layout() const { return layout_; }
  int max_batch() const { return max_batch_; }
  int max_samples() const { return max_samples_; }
  std::vector<T>& params() { return params_; }
  const std::vector<T>& params() const { return params_; }
  const std::vector<T>& grads() const { return grads_; }
  std::vector<T>& grads_mut() { return grads_; }  // data parallel: scaled and summed across ranks

  // x: (n, D) targets in [0,1] (or any reals for the Gaussian decoder), each row followed
  // by its condition for a conditional model: (n, data_width(cfg)); eps: (n*L, Z),
  // sample l of data point b in row b*L + l. Returns loss sums over the n data points:
  // recon and kl are the ELBO's parts; loss is recon + beta*kl, or for Pass::iwae the IWAE
  // loss. With a gradient pass, grads() holds the gradient of the batch mean of that loss.
  LossSums run(const T* x, const T* eps, int n, int L, double beta, Pass pass);
  // The ELBO with cfg.samples samples and cfg.beta: run(x, eps, n, L, beta, reparam or forward).
  LossSums forward(const T* x, const T* eps, int n, bool backward);

  // Per data point results of the last pass: (n) each.
  const T* recon() const { return recon_.data(); }
  const T* kl() const { return kl_.data(); }
  const T* iwae_bound() const { return bound_.data(); }  // log mean_k w_k (Pass::iwae)
  // Per sample row (n*L): log p(x|z) and log p(z) - log q(z|x) of the last pass.
  const T* row_logp() const { return row_logp_.data(); }
  const T* row_lpq() const { return lpq_.data(); }
  // (n, 2Z) of the last pass: mu in columns [0,Z), log-variance in [Z,2Z).
  const T* head() const { return head_.data(); }

  // Decoder means for decoder inputs z (n, decoder_input_dim: z, then the condition):
  // sigmoid(logits) (Bernoulli) or the mean.
  void decode_mean(const T* z, int n, T* out);
  // log p(x_b|z_r) for codes z (n*L, Z) decoding data point b = r / L of x (as run takes it), into
  // row_logp(); no encoder. The naive estimate of log p(x) draws z from the prior.
  void decode_log_likelihood(const T* x, const T* z, int n, int L);

 private:
  const T* encode(const T* x, int n);     // runs the encoder; returns (n, H_last) or x
  const T* decode(const T* z, int rows);  // runs the hidden decoder layers; returns the last input
  // The decoder's input for codes z (n*L, Z) of data points x: z itself, or [z, c] in zc_.
  const T* decoder_codes(const T* z, const T* x, int n, int L);
  struct BackwardOps;  // backward's operations for backward_walk (host/backward_walk.h)
  void backward(const T* x, const T* eps, int n, int L, double beta, Pass pass);

  ModelConfig cfg_;
  ParamLayout layout_;
  int max_batch_, max_samples_;
  std::vector<T> params_, grads_;
  std::vector<std::vector<T>> enc_act_, dec_act_;  // (B, H_i), (B*L, H'_i)
  std::vector<T> head_;    // (B, 2Z)
  std::vector<T> z_;       // (B*L, Z)
  std::vector<T> logits_;  // (B*L, D); after backward it holds d loss / d logits
  std::vector<T> grad_a_, grad_b_;  // (B*L, max width) ping-pong
  std::vector<T> row_logp_, lpq_;   // (B*L)
  std::vector<T> weights_;          // (B*L) IWAE: normalized importance weights / n
  std::vector<T> xin_;              // (B, D + C) log(1 + x) (and c) with cfg.log1p_input, or empty
  std::vector<T> zc_;               // (B*L, Z + C) the decoder's input [z, c] of a conditional model, or empty
  std::vector<T> dlv_rows_;         // (B*L, D) learned log-variance (log theta) grads per row, or empty
  std::vector<T> dzi_rows_;         // (B*L, D) the ZINB's zero-inflation logit grads per row, or empty
  std::vector<T> recon_, kl_, bound_;  // (B)
};

extern template class CpuModel<float>;
extern template class CpuModel<double>;

}  // namespace vae
