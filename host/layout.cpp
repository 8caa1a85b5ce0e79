// The flat parameter layout and its seeded initialization.
#include "vae/layout.h"

#include <algorithm>
#include <cmath>

#include "rng.h"
#include "vae/error.h"

namespace vae {
namespace {
constexpr std::size_t kAlign = 16;  // floats: every tensor starts on a 64-byte boundary
std::size_t align_up(std::size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
}  // namespace

std::size_t ParamLayout::add(const std::string& name, std::vector<int> shape) {
  TensorView t;
  t.name = name;
  t.offset = total_;
  t.rows = shape[0];
  t.cols = shape.size() > 1 ? shape[1] : 1;
  t.shape = std::move(shape);
  total_ = align_up(total_ + t.size());
  tensors_.push_back(t);
  return t.offset;
}

LinearView ParamLayout::add_linear(const std::string& prefix, int in, int out) {
  LinearView l;
  l.in = in;
  l.out = out;
  l.weight = add(prefix + ".weight", {out, in});
  l.bias = add(prefix + ".bias", {out});
  max_width_ = std::max({max_width_, in, out});
  return l;
}

ParamLayout::ParamLayout(const ModelConfig& cfg) {
  cfg.validate();
  int width = data_width(cfg);  // [x, c]: a condition joins the encoder's input ...
  for (std::size_t i = 0; i < cfg.encoder_hidden.size(); ++i) {
    encoder_.push_back(add_linear("encoder." + std::to_string(i), width, cfg.encoder_hidden[i]));
    width = cfg.encoder_hidden[i];
  }
  head_ = add_linear("encoder.head", width, 2 * cfg.latent);  // rows [0,Z): mu, [Z,2Z): logvar
  width = decoder_input_dim(cfg);  // ... and the decoder's, [z, c]
  for (std::size_t i = 0; i < cfg.decoder_hidden.size(); ++i) {
    decoder_.push_back(add_linear("decoder." + std::to_string(i), width, cfg.decoder_hidden[i]));
    width = cfg.decoder_hidden[i];
  }
  output_ = add_linear("decoder.out", width, output_width(cfg));  // D, or 2D with per-item zero inflation
  if (has_feature_parameter(cfg)) {
    has_logvar_ = true;
    logvar_ = add(cfg.likelihood == Likelihood::gaussian ? "decoder.logvar" : "decoder.log_theta", {cfg.input_dim});
  }
  if (cfg.likelihood == Likelihood::zinb && !zero_inflation_per_item(cfg)) {
    has_zi_ = true;
    zi_ = add("decoder.zi_logit", {cfg.input_dim});
  }
}

const TensorView& ParamLayout::at(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return t;
  throw_error("no parameter tensor named '", name, "' in this model");
}

bool ParamLayout::same_tensors(const ParamLayout& other) const {
  if (tensors_.size() != other.tensors_.size()) return false;
  for (std::size_t i = 0; i < tensors_.size(); ++i)
    if (tensors_[i].name != other.tensors_[i].name || tensors_[i].shape != other.tensors_[i].shape) return false;
  return true;
}

std::vector<float> init_parameters(const ParamLayout& layout, const ModelConfig& cfg, std::uint64_t seed) {
  std::vector<float> p(layout.total(), 0.0f);
  // One uniform draw for the whole buffer from cuRAND's host Philox, then scaled per tensor.
  std::vector<float> u(round_up_even(layout.total()));
  HostPhilox rng(derive_seed(seed, RngStream::init));
  rng.uniform(u.data(), layout.total(), 0);
  auto fill = [&](const LinearView& l) {
    const float bound = 1.0f / std::sqrt(static_cast<float>(l.in));
    const std::size_t nw = static_cast<std::size_t>(l.in) * static_cast<std::size_t>(l.out);
    for (std::size_t i = 0; i < nw; ++i) p[l.weight + i] = bound * (2.0f * u[l.weight + i] - 1.0f);
    for (int i = 0; i < l.out; ++i) p[l.bias + i] = bound * (2.0f * u[l.bias + i] - 1.0f);
  };
  for (const auto& l : layout.encoder()) fill(l);
  fill(layout.head());
  for (const auto& l : layout.decoder()) fill(l);
  fill(layout.output());
  if (layout.has_logvar()) {  // log sigma^2; a log theta starts at 0 (theta 1)
    const float lv = cfg.likelihood != Likelihood::gaussian ? 0.0f : static_cast<float>(2.0 * std::log(cfg.sigma));
    for (int i = 0; i < cfg.input_dim; ++i) p[layout.logvar() + i] = lv;
  }
  // zero-inflation logits start at -2: 12% structural zeros (per item: the output bias of columns [D, 2D))
  const std::size_t zi_bias = layout.has_zi() ? layout.zi() : layout.output().bias + static_cast<std::size_t>(cfg.input_dim);
  if (cfg.likelihood == Likelihood::zinb)
    for (int i = 0; i < cfg.input_dim; ++i) p[zi_bias + i] = -2.0f;
  return p;
}

}  // namespace vae
