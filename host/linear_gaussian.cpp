// Exact log-likelihoods of linear-Gaussian models and the maximum-likelihood PPCA solution,
// in double precision through LAPACK (OpenBLAS's dpotrf and dsyev) and CBLAS.
#include "vae/linear_gaussian.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "elementwise.h"
#include "vae/error.h"
#include "vae/options.h"
#include "vae/layout.h"

extern "C" {
// LAPACK (Fortran interface; the trailing arguments are the lengths of the character flags).
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info, std::size_t uplo_len);
void dsyev_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w, double* work,
            const int* lwork, int* info, std::size_t jobz_len, std::size_t uplo_len);
}

namespace vae {
namespace {

// Sum over the data of log N(x; mean, C), C (D, D) symmetric positive definite.
double gaussian_log_likelihood(std::vector<double> C, const std::vector<double>& mean, const Dataset& data) {
  const int D = data.dim;
  int info = 0;
  dpotrf_("L", &D, C.data(), &D, &info, 1);  // C = L L^T (column-major lower = row-major upper)
  if (info != 0) throw_error("exact log-likelihood: the covariance is not positive definite (dpotrf info ", info, ")");
  double logdet = 0;
  for (int i = 0; i < D; ++i) logdet += 2.0 * std::log(C[static_cast<std::size_t>(i) * D + i]);
  const std::int64_t chunk = 4096;
  std::vector<double> r(static_cast<std::size_t>(chunk) * D);
  std::vector<float> row(static_cast<std::size_t>(D));
  double total = 0;
  for (std::int64_t b = 0; b < data.count; b += chunk) {
    const int n = static_cast<int>(std::min(chunk, data.count - b));
    for (int i = 0; i < n; ++i) {
      data.row(b + i, row.data());
      for (int d = 0; d < D; ++d) r[static_cast<std::size_t>(i) * D + d] = double(row[d]) - mean[d];
    }
    // Solve L Y = R for the n residual columns (R column-major (D, n) = our row-major (n, D)).
    cblas_dtrsm(CblasColMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, D, n, 1.0, C.data(), D, r.data(), D);
    for (int i = 0; i < n; ++i) {
      double q = 0;
      for (int d = 0; d < D; ++d) q += r[static_cast<std::size_t>(i) * D + d] * r[static_cast<std::size_t>(i) * D + d];
      total += -0.5 * (D * ew::kLog2Pi + logdet + q);
    }
  }
  return total;
}

}  // namespace

bool has_exact_log_likelihood(const ModelConfig& m) {
  return m.likelihood == Likelihood::gaussian && m.decoder_hidden.empty() && m.condition == ConditionKind::none;
}

double exact_log_likelihood(const ModelConfig& m, const std::vector<float>& params, const Dataset& data,
                            const Standardization& scaling) {
  if (!has_exact_log_likelihood(m))
    throw_error("exact log-likelihood: only for an unconditional model with a linear decoder (",
                flag_of("decoder_hidden"), " none) and ", flag_of("likelihood"), " gaussian");
  data.validate();
  if (data.dim != m.input_dim)
    throw_error("exact log-likelihood: data '", data.source, "' has ", data.dim, " features, the model ", m.input_dim);
  const ParamLayout layout(m);
  if (params.size() != layout.total()) throw_error("exact log-likelihood: parameters do not match the model");
  check_scaling(m, scaling, "exact log-likelihood");
  const int D = m.input_dim, Z = m.latent;
  const auto& out = layout.output();
  std::vector<double> C(static_cast<std::size_t>(D) * D, 0.0), mean(D);
  for (int i = 0; i < D; ++i) {
    mean[i] = params[out.bias + i];
    for (int j = 0; j <= i; ++j) {
      double s = 0;
      for (int k = 0; k < Z; ++k)
        s += double(params[out.weight + static_cast<std::size_t>(i) * Z + k]) *
             double(params[out.weight + static_cast<std::size_t>(j) * Z + k]);
      C[static_cast<std::size_t>(i) * D + j] = C[static_cast<std::size_t>(j) * D + i] = s;
    }
    C[static_cast<std::size_t>(i) * D + i] +=
        layout.has_logvar() ? std::exp(double(params[layout.logvar() + i])) : m.sigma * m.sigma;
  }
  if (!scaling.empty())  // x = mean + std * x': the same Gaussian, in the data's own units
    for (int i = 0; i < D; ++i) {
      mean[i] = double(scaling.mean[i]) + double(scaling.std[i]) * mean[i];
      for (int j = 0; j < D; ++j) C[static_cast<std::size_t>(i) * D + j] *= double(scaling.std[i]) * double(scaling.std[j]);
    }
  return gaussian_log_likelihood(std::move(C), mean, data);
}

PpcaSolution fit_ppca(const Dataset& data, int q) {
  data.validate();
  const int D = data.dim;
  if (q < 1 || q >= D) throw_error("fit_ppca: q must be in [1, D-1], got ", q, " for D = ", D);
  if (data.count < 2) throw_error("fit_ppca: needs at least 2 data points");
  PpcaSolution sol;
  sol.mean.assign(D, 0.0);
  std::vector<float> row(D);
  for (std::int64_t i = 0; i < data.count; ++i) {
    data.row(i, row.data());
    for (int d = 0; d < D; ++d) sol.mean[d] += row[d];
  }
  for (auto& v : sol.mean) v /= double(data.count);
  std::vector<double> S(static_cast<std::size_t>(D) * D, 0.0);  // the ML (1/N) covariance
  for (std::int64_t i = 0; i < data.count; ++i) {
    data.row(i, row.data());
    for (int a = 0; a < D; ++a)
      for (int b = 0; b <= a; ++b)
        S[static_cast<std::size_t>(a) * D + b] += (row[a] - sol.mean[a]) * (row[b] - sol.mean[b]);
  }
  for (int a = 0; a < D; ++a)
    for (int b = 0; b <= a; ++b)
      S[static_cast<std::size_t>(b) * D + a] = S[static_cast<std::size_t>(a) * D + b] /= double(data.count);
  std::vector<double> U = S, lambda(D);
  int lwork = -1, info = 0;
  double query = 0;
  dsyev_("V", "L", &D, U.data(), &D, lambda.data(), &query, &lwork, &info, 1, 1);
  lwork = static_cast<int>(query);
  std::vector<double> work(static_cast<std::size_t>(std::max(1, lwork)));
  dsyev_("V", "L", &D, U.data(), &D, lambda.data(), work.data(), &lwork, &info, 1, 1);
  if (info != 0) throw_error("fit_ppca: the eigendecomposition failed (dsyev info ", info, ")");
  // Ascending eigenvalues; eigenvector j is column j of the column-major U (row j of our view).
  sol.sigma2 = 0;
  for (int j = 0; j < D - q; ++j) sol.sigma2 += lambda[j];
  sol.sigma2 /= double(D - q);
  sol.w.assign(static_cast<std::size_t>(D) * q, 0.0);
  for (int k = 0; k < q; ++k) {
    const int j = D - 1 - k;  // the k-th largest
    const double scale = std::sqrt(std::max(0.0, lambda[j] - sol.sigma2));
    for (int d = 0; d < D; ++d) sol.w[static_cast<std::size_t>(d) * q + k] = U[static_cast<std::size_t>(j) * D + d] * scale;
  }
  std::vector<double> C(static_cast<std::size_t>(D) * D, 0.0);
  for (int a = 0; a < D; ++a)
    for (int b = 0; b < D; ++b) {
      double s = a == b ? sol.sigma2 : 0.0;
      for (int k = 0; k < q; ++k) s += sol.w[static_cast<std::size_t>(a) * q + k] * sol.w[static_cast<std::size_t>(b) * q + k];
      C[static_cast<std::size_t>(a) * D + b] = s;
    }
  sol.log_likelihood = gaussian_log_likelihood(std::move(C), sol.mean, data);
  return sol;
}

}  // namespace vae
