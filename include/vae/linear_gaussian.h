// Exact answers for the linear-Gaussian case, the check on every estimate of log p(x).
// A model whose decoder is linear (no decoder hidden layer) with a Gaussian likelihood is
// probabilistic PCA (fixed sigma) or factor analysis (learned per-dimension variance):
//   p(x) = N(x; b, W W^T + diag(sigma^2)),  W = decoder.out.weight (D, Z), b = decoder.out.bias,
// so log p(x) is exact in closed form, whatever the encoder.
#pragma once
#include <vector>

#include "vae/config.h"
#include "vae/data.h"
#include "vae/standardize.h"

namespace vae {

bool has_exact_log_likelihood(const ModelConfig& model);
// Sum over the data points of the exact log p(x); throws if the model has no closed form.
// A standardized model (--standardize, `scaling` its training set's) is a Gaussian in the
// data's own units too: mean + std * b and S (W W^T + diag(sigma^2)) S, S = diag(std).
double exact_log_likelihood(const ModelConfig& model, const std::vector<float>& params, const Dataset& data,
                            const Standardization& scaling = {});

// Maximum-likelihood probabilistic PCA (Tipping & Bishop, 1999) with q latent dimensions:
// sigma^2 = the mean of the D - q smallest eigenvalues of the data covariance S,
// W = U_q (Lambda_q - sigma^2 I)^(1/2), mean = the data mean.
struct PpcaSolution {
  std::vector<double> mean;  // (D)
  std::vector<double> w;     // (D, q), row-major
  double sigma2 = 0;
  double log_likelihood = 0;  // sum over the data points
};
PpcaSolution fit_ppca(const Dataset& data, int q);

}  // namespace vae
