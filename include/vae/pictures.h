// Pictures of a model and of a run, as PNG files (written atomically). The model's pictures
// are computed by a backend (Backend::encode_means / decode_means) holding the model's
// parameters: the CUDA backend or the CPU path, whichever the caller made.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "vae/backend.h"
#include "vae/config.h"
#include "vae/data.h"

namespace vae {

// Why the model's pictures (samples, reconstructions, interpolations) would mean nothing, in
// one line; empty when they can be drawn. Those functions throw vae::Error with this line.
std::string why_no_pictures(const ModelConfig& model);

// Decoder means (n, D) for n codes z drawn from the prior N(0, I) with `seed` (the draws of
// samples.png, vae sample and the Python layer's sample()). n >= 1. A conditional model
// takes the samples' conditions, n rows (Backend::decode_means).
std::vector<float> prior_samples(Backend& backend, const ModelConfig& model, int n, std::uint64_t seed,
                                 const Condition& condition = {});
// For a model conditioned on classes: every class `per_class` times, class by class (the
// rows of a samples grid with per_class columns).
Condition class_grid_condition(const ModelConfig& model, int per_class);
// A grid of prior_samples, `cols` to a row (0: about sqrt(n)); items of height x width pixels
// (when height * width is not model.input_dim, as 1 x input_dim strips). n in [1, 4096].
// In every function here `model` is the ModelConfig `backend` was made with (vae::Error if
// its layout differs) and `data` has model.input_dim values per item (and, for a
// conditional model, the items' conditions).
void write_samples_png(const std::string& path, Backend& backend, const ModelConfig& model, int n, int height,
                       int width, std::uint64_t seed, const Condition& condition = {}, int cols = 0);
// Rows of inputs above their reconstructions (decoder means at z = mu), for the first n items.
void write_reconstructions_png(const std::string& path, Backend& backend, const ModelConfig& model,
                               const Dataset& data, int n);
// Item `from`, the decoder means along the straight latent path from its mu to the mu of
// item `to` in `steps` steps (and, for a conditional model, from its condition to the
// other's), then item `to`; one row.
void write_interpolation_png(const std::string& path, Backend& backend, const ModelConfig& model, const Dataset& data,
                             std::int64_t from, std::int64_t to, int steps);
// The ELBO curve from a run's metrics.csv: train and test -ELBO, test reconstruction and
// test KL per epoch, in three panels.
void write_elbo_curve_png(const std::string& path, const std::string& metrics_csv);
// For a 2-D latent space: the posterior means of up to max_points (>= 1) items, coloured by
// label (labels: one per item of data). class_names: one per label value (empty: the numbers).
void write_latent_scatter_png(const std::string& path, Backend& backend, const ModelConfig& model, const Dataset& data,
                              const std::vector<std::uint8_t>& labels, std::int64_t max_points,
                              const std::vector<std::string>& class_names = {});

// Fashion-MNIST's class names, for the scatter's legend.
const std::vector<std::string>& fashion_mnist_classes();

}  // namespace vae
