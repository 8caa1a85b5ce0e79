// The flat parameter buffer and its named views (encoder.0.weight, ...). Checkpoints, the
// optimizers and both backends use this one layout. Weights are (out, in), row-major, as in
// PyTorch's nn.Linear; every tensor starts on a 16-float boundary.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "vae/config.h"

namespace vae {

struct TensorView {
  std::string name;
  std::size_t offset = 0;  // in elements from the start of the flat buffer
  int rows = 0;
  int cols = 1;            // 1 for vectors
  std::vector<int> shape;  // {rows, cols} for matrices, {rows} for vectors
  std::size_t size() const { return static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols); }
};

struct LinearView {
  std::size_t weight = 0;  // offset of W (out, in)
  std::size_t bias = 0;    // offset of b (out)
  int in = 0;
  int out = 0;
};

class ParamLayout {
 public:
  explicit ParamLayout(const ModelConfig& cfg);

  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView& at(const std::string& name) const;  // throws if unknown
  // The same tensors, by name and shape, in the same order: parameters of one fit the other.
  bool same_tensors(const ParamLayout& other) const;
  std::size_t total() const { return total_; }           // elements, padding included

  const std::vector<LinearView>& encoder() const { return encoder_; }  // hidden layers
  const LinearView& head() const { return head_; }                     // -> (mu, logvar): 2Z outputs
  const std::vector<LinearView>& decoder() const { return decoder_; }  // hidden layers
  const LinearView& output() const { return output_; }  // -> D logits / means (2D: per-item zero inflation)
  bool has_logvar() const { return has_logvar_; }
  // The likelihood's learned per-feature parameter (D), has_feature_parameter(): the
  // Gaussian's log-variance, or the negative binomial's log inverse dispersion.
  std::size_t logvar() const { return logvar_; }
  bool has_zi() const { return has_zi_; }
  std::size_t zi() const { return zi_; }  // the ZINB's zero-inflation logit per feature (D)
  int max_width() const { return max_width_; }    // widest activation of any layer
  // The encoder's tensors (phi) fill [0, encoder_end()), the decoder's (theta) the rest.
  std::size_t encoder_end() const { return decoder_.empty() ? output_.weight : decoder_.front().weight; }

 private:
  LinearView add_linear(const std::string& prefix, int in, int out);
  std::size_t add(const std::string& name, std::vector<int> shape);

  std::vector<TensorView> tensors_;
  std::vector<LinearView> encoder_, decoder_;
  LinearView head_, output_;
  bool has_logvar_ = false;
  std::size_t logvar_ = 0;
  bool has_zi_ = false;
  std::size_t zi_ = 0;
  std::size_t total_ = 0;
  int max_width_ = 0;
};

// uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) for every weight and bias (PyTorch's nn.Linear
// default), the log-variance at log(sigma^2); padding is zero. Seeded by `seed`.
std::vector<float> init_parameters(const ParamLayout&, const ModelConfig&, std::uint64_t seed);

}  // namespace vae
