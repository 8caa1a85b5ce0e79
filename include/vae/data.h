// Datasets in host memory and the readers that fill them: IDX (the MNIST family, .gz or
// raw) and NPY (2-D float32, float64, uint8, int32 or int64, C order). Pixels are kept as
// uint8 when the source is uint8 (x/255 in [0,1]; a count likelihood reads them as the
// counts 0..255) and as float32 otherwise (any finite values, integers as they are; the
// Bernoulli likelihood needs them in [0,1], which the backends check).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "vae/config.h"

namespace vae {

// A dataset of N items of D values. The readers fill it; a program may also fill one itself
// (source, count, dim, and exactly one of u8 or f32 with count * dim values; height and
// width only matter for pictures). The backends and the binarizers call validate() on it.
struct Dataset {
  std::string source;          // file it came from, for messages
  std::int64_t count = 0;      // N
  int dim = 0;                 // D, the flattened item size
  int height = 0, width = 0;   // for pictures: item shape when it is an image, else 1 x D
  std::vector<std::uint8_t> u8;  // (N, D) when the source was uint8
  std::vector<float> f32;        // (N, D) otherwise

  bool is_u8() const { return !u8.empty(); }
  // The same description (source, count, dim, picture shape) with no values: the start of a
  // transformed copy, whose caller fills u8 or f32.
  Dataset empty_copy() const;
  // Items [begin, begin + n) alone, in the same storage. Throws vae::Error naming `source`
  // unless 0 <= begin <= begin + n <= count.
  Dataset slice(std::int64_t begin, std::int64_t n) const;
  // Throws vae::Error naming `source` unless count >= 0, dim > 0, exactly one of u8 and f32
  // holds count * dim values (both may be empty when count is 0) and every f32 value is
  // finite. (The Bernoulli likelihood further needs values in [0,1]: the backends check that.)
  void validate() const;
  // Item i (0 <= i < count, unchecked) as floats: u8 / 255, or the f32 values as they are.
  void row(std::int64_t i, float* out) const;
  template <class T>
  void row_as(std::int64_t i, T* out) const;
};

// IDX image file (magic 0x00 0x00 0x08 ndim, ndim >= 2), .gz or raw.
Dataset read_idx_images(const std::string& path);
// IDX label file (ndim == 1, uint8).
std::vector<std::uint8_t> read_idx_labels(const std::string& path);
// NPY, 2-D, '<f4' '<f8' '|u1' '<i4' or '<i8', C order (integers within 2^24 of 0).
Dataset read_npy(const std::string& path);
// Picks the reader by content: NPY magic, else IDX. Throws vae::Error naming the file.
Dataset read_dataset(const std::string& path);

// Default data: Debian's dataset-fashion-mnist. Throws, saying how to install it, if missing.
std::string default_fashion_mnist(bool train);
// Its labels file (the path, whether or not it exists).
std::string default_fashion_mnist_labels(bool train);
// A run's training and test files: an empty path becomes Fashion-MNIST's. A training set of
// one's own needs its own test set: a train path other than Fashion-MNIST's with no test path
// throws (Fashion-MNIST's test set would measure the model on other data than it learns).
void resolve_data_paths(std::string& train_path, std::string& test_path);

// Static binarization: threshold 0.5, in place (the result stays uint8 {0,255} or float {0,1}).
// Both binarizers throw vae::Error when the dataset fails Dataset::validate().
void binarize_static(Dataset&);
// A fixed stochastic binarization (one Bernoulli draw per pixel, seeded), used for the test
// set when training binarizes dynamically.
void binarize_fixed_draw(Dataset&, std::uint64_t seed);

}  // namespace vae
