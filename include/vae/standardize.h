// --standardize: each feature scaled by the training set's mean and standard deviation,
// x' = (x - mean) / std. The model is trained on x' and the backend that holds it does the
// scaling at its edges (Backend::set_standardization): data in, decoder means out, and every
// log-likelihood it reports in the units of the original data, the Jacobian counted:
//   log p(x) = log p(x') - sum_d log std_d.
// The checkpoint and model files keep it as two F32 tensors of shape [D],
// "standardize.mean" and "standardize.std".
#pragma once
#include <string>
#include <vector>

#include "vae/data.h"

namespace vae {

struct NamedTensor;      // vae/io.h
struct SafetensorsFile;

struct Standardization {
  std::vector<float> mean, std;  // one per feature; both empty: no scaling

  bool empty() const { return mean.empty(); }
  int dim() const { return static_cast<int>(mean.size()); }
  // The training set's per-feature mean and (population) standard deviation, in double. A
  // feature that does not vary gets std 1: it is only centred. Throws vae::Error on no items.
  static Standardization fit(const Dataset& train);
  // (x - mean) / std of every value, as float32 (uint8 data is read as x / 255 first).
  // Throws vae::Error naming data.source when its width is not dim().
  Dataset apply(const Dataset& data) const;
  // x' * std + mean, in place, for rows of dim() values.
  void undo(std::vector<float>& rows) const;
  // sum_d log std_d: what a log-likelihood of x' exceeds the same one of x by.
  double log_jacobian() const;

  // The two tensors, appended (nothing when empty).
  void append_tensors(std::vector<NamedTensor>& tensors) const;
  // From a model or checkpoint file: the two tensors when `wanted` (the model's
  // configuration says standardize), each of `dim` finite values, std > 0; else none.
  // Throws vae::Error naming `path` and the tensor.
  static Standardization from_file(const SafetensorsFile& file, const std::string& path, bool wanted, int dim);
};

// Throws vae::Error (naming `who`) unless `scaling` fits `model`: model.input_dim features
// when model.standardize, none otherwise.
void check_scaling(const ModelConfig& model, const Standardization& scaling, const char* who);

}  // namespace vae
