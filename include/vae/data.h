// Datasets in host memory and the readers that fill them: IDX (the MNIST family, .gz or
// raw) and NPY (2-D float32, float64, uint8, int32 or int64, C order). Pixels are kept as
// uint8 when the source is uint8 (x/255 in [0,1]; a count likelihood reads them as the
// counts 0..255) and as float32 otherwise (any finite values, integers as they are; the
// Bernoulli likelihood needs them in [0,1], which the backends check).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vae/config.h"

namespace vae {

// "10 classes", "3 covariates" or "no condition": a condition's kind and size in words.
std::string describe_condition(ConditionKind kind, int dim);

// A conditional VAE's conditions (ModelConfig::condition): one row of `dim` values per item,
// a one-hot class or covariates; read_condition and the condition_from_* functions make them.
struct Condition {
  std::string source;  // file (or array) it came from, for messages
  ConditionKind kind = ConditionKind::none;
  int dim = 0;                // C: classes (one-hot width) or covariates per item
  std::vector<float> values;  // (N, dim), row-major
  std::int64_t count() const { return dim > 0 ? static_cast<std::int64_t>(values.size()) / dim : 0; }
  bool empty() const { return kind == ConditionKind::none; }
  // "10 classes" or "3 covariates": what a model or a file is conditioned on, for messages.
  std::string describe() const { return describe_condition(kind, dim); }
  // Rows [begin, begin + n); throws vae::Error naming `source` unless they exist.
  Condition rows(std::int64_t begin, std::int64_t n) const;
};

// What a check of a dataset's values asks (Dataset::first_bad_value): every value finite, and
// of the features (not an appended condition) what the likelihood needs: [0, 1] for the
// Bernoulli likelihood, non-negative integers for the count likelihoods.
enum class ValueRule : unsigned char { finite, unit_interval, counts };

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
  // Or the values in place in a memory-mapped file (read_dataset's `map`): uint8 or float32,
  // read-only, shared by the copies of this Dataset. Read them through u8_values / f32_values.
  struct Mapping;
  std::shared_ptr<const Mapping> mapping;
  Condition condition;           // the items' conditions (attach_condition), or none
  // Only in a backend's view (with_condition_appended): the last `appended` of the dim
  // values per item are its condition, not features.
  int appended = 0;
  int features() const { return dim - appended; }

  bool is_u8() const;
  bool is_mapped() const { return mapping != nullptr; }
  // The count * dim values: u8's or the mapping's bytes (null for float data), f32's or the
  // mapping's floats (null for uint8 data).
  const std::uint8_t* u8_values() const;
  const float* f32_values() const;
  // The same description (source, count, dim, picture shape) and conditions with no values:
  // the start of a transformed copy, whose caller fills u8 or f32.
  Dataset empty_copy() const;
  // Items [begin, begin + n) alone, in the same storage. Throws vae::Error naming `source`
  // unless 0 <= begin <= begin + n <= count.
  Dataset slice(std::int64_t begin, std::int64_t n) const;
  // Throws vae::Error naming `source` unless count >= 0, dim > 0, exactly one of u8 and f32
  // holds count * dim values (both may be empty when count is 0), every f32 value is finite
  // and a condition, if any, has one finite row per item. (The Bernoulli likelihood further
  // needs values in [0,1]: the backends check that.) `values` false: all but the finite check
  // (read_dataset maps a file without it; the first validate() that checks runs it, once).
  void validate(bool values = true) const;
  // The raw values (uint8 or float32 bytes) of rows indices[0..n) into out, row after row. A
  // mapped file's rows are copied with pread, which maps none of its pages (row_as and the
  // CUDA stream read rows at random this way).
  void read_rows(const std::uint32_t* indices, int n, unsigned char* out) const;
  // A mapped dataset's sequential readers of its values in place (the finite check, a resident
  // upload, evaluation chunks) report the bytes they read: every 256 MiB the mapping lets go of
  // its resident pages, so that a file larger than memory streams through a bounded resident
  // set. Nothing for data in memory.
  void note_read(std::size_t bytes) const;
  // The check of float values, items [begin, end): the flat index of the first value that
  // breaks `rule`, or -1 (always -1 for uint8). In 64 MiB chunks, with a progress line on a
  // terminal for over 1 GiB. validate() runs the finite check once over a mapped file; a
  // training run checks each mapped file once for its likelihood's rule, split among the
  // ranks (first_bad_value_across_ranks, vae/distributed.h), then mark_checked(rule).
  std::int64_t first_bad_value(std::int64_t begin, std::int64_t end, ValueRule rule = ValueRule::finite) const;
  [[noreturn]] void throw_non_finite(std::int64_t flat_index) const;
  // A mapped file's values passed the check of `rule` (and so are finite): later checks of it
  // skip the file. Data in memory is never marked: its values may change.
  void mark_checked(ValueRule rule = ValueRule::finite) const;
  bool values_checked(ValueRule rule) const;
  // Item i (0 <= i < count, unchecked) as floats: u8 / 255, or the f32 values as they are.
  void row(std::int64_t i, float* out) const;
  template <class T>
  void row_as(std::int64_t i, T* out) const;
};

// IDX image file (magic 0x00 0x00 0x08 ndim, ndim >= 2), .gz or raw.
Dataset read_idx_images(const std::string& path);
// How read_dataset reads: into memory, or memory-mapped (a raw IDX file, or a raw NPY of
// float32 or uint8: their bytes in place; anything else is an error saying why), or
// automatically: mapped when the file exceeds half of the memory available and can be
// mapped. A mapped file's pages go from resident memory as it is read (note_read), and its
// floats' finite check waits for the first validate(), which runs it once.
enum class DataAccess { read, map, automatic };
// IDX label file (ndim == 1, uint8).
std::vector<std::uint8_t> read_idx_labels(const std::string& path);
// NPY, 2-D, '<f4' '<f8' '|u1' '<i4' or '<i8', C order (integers within 2^24 of 0).
Dataset read_npy(const std::string& path);
// Whether the file starts with gzip's magic (false if it cannot be read): such a file cannot be
// mapped and is read whole.
bool is_gzip(const std::string& path);
// Picks the reader by content: NPY magic, else IDX. Throws vae::Error naming the file.
Dataset read_dataset(const std::string& path, DataAccess how = DataAccess::read);

// Conditions from a file: class labels (an IDX labels file, or an NPY of integers, uint8,
// int32 or int64, of shape (N,) or (N, 1)) one-hot encoded into `classes` columns (0: the
// largest label + 1), or covariates (an NPY of float32 or float64, shape (N, C) or (N,)).
// Throws vae::Error naming the file: a negative label, a label >= classes, a value that is
// not finite.
Condition read_condition(const std::string& path, int classes = 0);
// The same from values in memory; `source` names them in messages.
Condition condition_from_labels(const std::vector<std::int64_t>& labels, int classes, const std::string& source);
Condition condition_from_covariates(std::vector<float> values, std::int64_t count, int dim, const std::string& source);
// n rows of class k, one-hot among `classes` (the condition of `vae sample --condition k`);
// throws vae::Error unless 0 <= k < classes.
Condition class_condition(int k, int classes, std::int64_t n);
// Gives each item of `data` its condition; throws vae::Error naming both files unless there
// is one condition per item.
void attach_condition(Dataset& data, Condition condition);
// The data as a conditional model's passes see it: each item's values, then its condition
// (dim + C values, `appended` = C); uint8 when the data are uint8 and the conditions 0 or 1
// (a one-hot class), float otherwise. Without a condition, a copy.
Dataset with_condition_appended(const Dataset& data);

// Default data: Debian's dataset-fashion-mnist. Throws, saying how to install it, if missing.
std::string default_fashion_mnist(bool train);
// Its labels file (the path, whether or not it exists).
std::string default_fashion_mnist_labels(bool train);
// A run's condition files: none, or both. Fashion-MNIST's training labels as the condition,
// with its test set, take its test labels as the test condition; any other condition file
// given without the test items' throws (and so does a test condition alone).
void resolve_condition_paths(const std::string& condition_path, std::string& test_condition_path,
                             const std::string& test_path);
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
