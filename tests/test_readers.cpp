// The IDX and NPY readers and the safetensors model file, on good files and bad ones.
// Every bad file must give a vae::Error that names the file, never a crash.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "test_util.h"
#include "vae/backend.h"
#include "vae/checkpoint.h"
#include "vae/data.h"
#include "vae/error.h"
#include "vae/io.h"
#include "vae/session.h"
#include "vae/layout.h"

namespace vae {
namespace {

using Bytes = std::vector<unsigned char>;

void write_raw(const std::string& path, const Bytes& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

void write_gz(const std::string& path, const Bytes& b) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, b.data(), static_cast<unsigned>(b.size())), static_cast<int>(b.size()));
  gzclose(f);
}

Bytes idx_bytes(unsigned char type, const std::vector<std::uint32_t>& dims, const Bytes& payload) {
  Bytes b = {0, 0, type, static_cast<unsigned char>(dims.size())};
  for (auto d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<unsigned char>((d >> s) & 0xFF));
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

Bytes npy_bytes(const std::string& descr, const std::string& shape, const Bytes& payload, bool fortran = false) {
  std::string f = test::npy_file(descr, shape, payload.data(), payload.size());
  if (fortran) f.replace(f.find("False"), 5, "True ");
  return Bytes(f.begin(), f.end());
}

template <class T>
Bytes as_bytes(const std::vector<T>& v) {
  Bytes b(v.size() * sizeof(T));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

Bytes pixels(std::size_t n) {
  Bytes p(n);
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<unsigned char>((i * 37 + 11) % 256);
  return p;
}

// Expect read(path) to throw vae::Error whose message holds the path and `phrase`.
template <class F>
void expect_error(F read, const std::string& path, const std::string& phrase) {
  try {
    read(path);
    ADD_FAILURE() << "no error for " << path << " (expected '" << phrase << "')";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << "message does not name the file: " << msg;
    EXPECT_NE(msg.find(phrase), std::string::npos) << "message lacks '" << phrase << "': " << msg;
  }
}

TEST(IdxReader, ReadsRawAndGzipImages) {
  test::TempDir dir;
  const Bytes payload = pixels(5 * 3 * 4);
  const Bytes file = idx_bytes(0x08, {5, 3, 4}, payload);
  write_raw(dir.file("img.idx"), file);
  write_gz(dir.file("img.idx.gz"), file);
  for (const auto& name : {"img.idx", "img.idx.gz"}) {
    const Dataset d = read_idx_images(dir.file(name));
    EXPECT_EQ(d.count, 5);
    EXPECT_EQ(d.dim, 12);
    EXPECT_EQ(d.height, 3);
    EXPECT_EQ(d.width, 4);
    ASSERT_TRUE(d.is_u8());
    EXPECT_EQ(d.u8, payload);
    std::vector<float> row(12);
    d.row(2, row.data());
    for (int j = 0; j < 12; ++j) EXPECT_FLOAT_EQ(row[j], payload[24 + j] / 255.0f);
    const Dataset via_dispatch = read_dataset(dir.file(name));
    EXPECT_EQ(via_dispatch.u8, payload);
  }
}

TEST(IdxReader, ReadsLabelsAndFourDimensionalImages) {
  test::TempDir dir;
  write_raw(dir.file("labels"), idx_bytes(0x08, {4}, {3, 1, 4, 1}));
  EXPECT_EQ(read_idx_labels(dir.file("labels")), (Bytes{3, 1, 4, 1}));
  write_raw(dir.file("vol"), idx_bytes(0x08, {2, 2, 3, 5}, pixels(60)));
  const Dataset d = read_idx_images(dir.file("vol"));
  EXPECT_EQ(d.dim, 30);
  EXPECT_EQ(d.height, 1);  // 30 is not a square: pictures are drawn as 1 x 30 strips
}

TEST(IdxReader, RejectsBadFiles) {
  test::TempDir dir;
  auto images = [](const std::string& p) { return read_idx_images(p); };
  const Bytes good = idx_bytes(0x08, {4, 2, 2}, pixels(16));

  write_raw(dir.file("empty"), {});
  expect_error(images, dir.file("empty"), "truncated");
  Bytes magic = good;
  magic[0] = 0x1f;
  magic[1] = 0x00;
  write_raw(dir.file("magic"), magic);
  expect_error(images, dir.file("magic"), "not an IDX file");
  write_raw(dir.file("float"), idx_bytes(0x0D, {4, 2, 2}, pixels(64)));
  expect_error(images, dir.file("float"), "float32");
  write_raw(dir.file("short_header"), Bytes(good.begin(), good.begin() + 9));
  expect_error(images, dir.file("short_header"), "truncated");
  write_raw(dir.file("short_payload"), Bytes(good.begin(), good.end() - 3));
  expect_error(images, dir.file("short_payload"), "truncated");
  write_gz(dir.file("short_payload.gz"), Bytes(good.begin(), good.end() - 3));
  expect_error(images, dir.file("short_payload.gz"), "truncated");
  Bytes extra = good;
  extra.push_back(7);
  write_raw(dir.file("extra"), extra);
  expect_error(images, dir.file("extra"), "more data than its header");
  write_raw(dir.file("labels"), idx_bytes(0x08, {4}, {1, 2, 3, 4}));
  expect_error(images, dir.file("labels"), "labels file");
  write_raw(dir.file("zero_count"), idx_bytes(0x08, {0, 2, 2}, {}));
  expect_error(images, dir.file("zero_count"), "holds no images");
  write_raw(dir.file("zero_dim"), idx_bytes(0x08, {3, 0, 2}, {}));
  expect_error(images, dir.file("zero_dim"), "must be positive");
  write_raw(dir.file("overflow"), idx_bytes(0x08, {0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, pixels(10)));
  expect_error(images, dir.file("overflow"), "overflow");
  write_raw(dir.file("huge_claim"), idx_bytes(0x08, {1000000, 1000, 1000}, pixels(100)));
  expect_error(images, dir.file("huge_claim"), "truncated");
  Bytes corrupt_gz;
  write_gz(dir.file("corrupt.gz"), good);
  {
    std::ifstream f(dir.file("corrupt.gz"), std::ios::binary);
    corrupt_gz.assign(std::istreambuf_iterator<char>(f), {});
  }
  for (std::size_t i = 12; i < corrupt_gz.size() - 8; ++i) corrupt_gz[i] ^= 0x5A;
  write_raw(dir.file("corrupt.gz"), corrupt_gz);
  try {
    read_idx_images(dir.file("corrupt.gz"));
    ADD_FAILURE() << "corrupt gzip data was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir.file("corrupt.gz")), std::string::npos) << e.what();
  }
  expect_error(images, dir.file("does-not-exist"), "no such file");
  expect_error(images, dir.path(), "directory");
  auto labels = [](const std::string& p) { return read_idx_labels(p); };
  expect_error(labels, dir.file("extra"), "exactly 1");
}

TEST(NpyReader, ReadsFloat32Float64AndUint8) {
  test::TempDir dir;
  const std::vector<float> f = {0.0f, 0.25f, 0.5f, 1.0f, 0.125f, 0.75f};
  const std::vector<double> d(f.begin(), f.end());
  write_raw(dir.file("f4.npy"), npy_bytes("<f4", "(2, 3)", as_bytes(f)));
  write_raw(dir.file("f8.npy"), npy_bytes("<f8", "(2, 3)", as_bytes(d)));
  write_raw(dir.file("u1.npy"), npy_bytes("|u1", "(3, 2)", pixels(6)));
  for (const auto& name : {"f4.npy", "f8.npy"}) {
    const Dataset ds = read_npy(dir.file(name));
    EXPECT_EQ(ds.count, 2);
    EXPECT_EQ(ds.dim, 3);
    EXPECT_EQ(ds.f32, f);
    EXPECT_EQ(read_dataset(dir.file(name)).f32, f);  // dispatch by magic
  }
  const Dataset u = read_npy(dir.file("u1.npy"));
  EXPECT_EQ(u.count, 3);
  EXPECT_EQ(u.dim, 2);
  EXPECT_EQ(u.u8, pixels(6));
}

TEST(NpyReader, RejectsBadFiles) {
  test::TempDir dir;
  auto npy = [](const std::string& p) { return read_npy(p); };
  const std::vector<float> six = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f};
  write_raw(dir.file("magic.npy"), Bytes{'N', 'U', 'M', 'P', 'Y', 'X', 1, 0, 0, 0});
  expect_error(npy, dir.file("magic.npy"), "not an NPY file");
  write_raw(dir.file("fortran.npy"), npy_bytes("<f4", "(2, 3)", as_bytes(six), true));
  expect_error(npy, dir.file("fortran.npy"), "Fortran order");
  write_raw(dir.file("3d.npy"), npy_bytes("<f4", "(1, 2, 3)", as_bytes(six)));
  expect_error(npy, dir.file("3d.npy"), "expected a 2-D array");
  write_raw(dir.file("1d.npy"), npy_bytes("<f4", "(6,)", as_bytes(six)));
  expect_error(npy, dir.file("1d.npy"), "expected a 2-D array");
  write_raw(dir.file("be.npy"), npy_bytes(">f4", "(2, 3)", as_bytes(six)));
  expect_error(npy, dir.file("be.npy"), "big-endian");
  write_raw(dir.file("i2.npy"), npy_bytes("<i2", "(2, 3)", Bytes(12, 1)));
  expect_error(npy, dir.file("i2.npy"), "dtype '<i2' is not supported; expected float32 ('<f4'), float64 ('<f8'), uint8");
  {  // integers are read as they are (counts), within float32's exact range
    const std::vector<std::int32_t> i4 = {0, 3, 255, 1000, 16777216, 7};
    write_raw(dir.file("i4.npy"), npy_bytes("<i4", "(2, 3)", as_bytes(i4)));
    EXPECT_EQ(read_npy(dir.file("i4.npy")).f32, (std::vector<float>{0, 3, 255, 1000, 16777216, 7}));
    const std::vector<std::int64_t> i8 = {0, 1, 2, 16777217, 4, 5};
    write_raw(dir.file("i8.npy"), npy_bytes("<i8", "(2, 3)", as_bytes(i8)));
    expect_error(npy, dir.file("i8.npy"), "integer 16777217 at item 1, feature 0 is beyond 2^24");
  }
  Bytes short_payload = as_bytes(six);
  short_payload.pop_back();
  write_raw(dir.file("short.npy"), npy_bytes("<f4", "(2, 3)", short_payload));
  expect_error(npy, dir.file("short.npy"), "truncated");
  write_raw(dir.file("empty.npy"), npy_bytes("<f4", "(0, 3)", {}));
  expect_error(npy, dir.file("empty.npy"), "holds no items");
  write_raw(dir.file("overflow.npy"), npy_bytes("<f8", "(999999999999999, 999999999999999)", as_bytes(six)));
  expect_error(npy, dir.file("overflow.npy"), "overflow");
  auto nan = six;
  nan[4] = std::nanf("");
  write_raw(dir.file("nan.npy"), npy_bytes("<f4", "(2, 3)", as_bytes(nan)));
  expect_error(npy, dir.file("nan.npy"), "not finite");
  auto big = six;
  big[1] = 255.0f;
  big[2] = -12.5f;
  write_raw(dir.file("range.npy"), npy_bytes("<f4", "(2, 3)", as_bytes(big)));
  {  // real values are read as they are: only the Bernoulli likelihood needs [0, 1] (the backends check it)
    const Dataset d = read_npy(dir.file("range.npy"));
    EXPECT_EQ(d.f32[1], 255.0f);
    EXPECT_EQ(d.f32[2], -12.5f);
    ModelConfig m;
    m.input_dim = 3;
    test::expect_error([&] { check_data(m, d); }, "value 255 at item 0, feature 1 is outside [0, 1], which the Bernoulli");
    m.likelihood = Likelihood::gaussian;
    check_data(m, d);
  }
  const std::vector<double> huge = {0.5, 1e300, 0.5, 0.5, 0.5, 0.5};
  write_raw(dir.file("huge.npy"), npy_bytes("<f8", "(2, 3)", as_bytes(huge)));
  expect_error(npy, dir.file("huge.npy"), "value 1e+300 at item 0, feature 1 does not fit in float32");
  write_raw(dir.file("header.npy"), Bytes{0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 20, 0, '{', '}'});
  expect_error(npy, dir.file("header.npy"), "truncated");
  write_raw(dir.file("noshape.npy"), npy_bytes("<f4", "(2, 3)", as_bytes(six)));
  {
    std::ifstream f(dir.file("noshape.npy"), std::ios::binary);
    Bytes b(std::istreambuf_iterator<char>(f), {});
    const std::string h(b.begin(), b.end());
    const auto k = h.find("'shape'");
    std::memcpy(b.data() + k, "'shope'", 7);
    write_raw(dir.file("noshape.npy"), b);
  }
  expect_error(npy, dir.file("noshape.npy"), "no 'shape' field");
  write_raw(dir.file("noshapevalue.npy"), npy_bytes("<f4", "}", as_bytes(six)));  // found by fuzz_npy
  expect_error(npy, dir.file("noshapevalue.npy"), "is not a tuple");
  write_raw(dir.file("list.npy"), npy_bytes("<f4", "[2, 3]", as_bytes(six)));
  expect_error(npy, dir.file("list.npy"), "is not a tuple");
  auto any = [](const std::string& p) { return read_dataset(p); };
  write_raw(dir.file("empty"), {});
  expect_error(any, dir.file("empty"), "is empty");
}

// Conditions: labels (IDX, or integer NPY of shape (N,) or (N, 1)) one-hot; covariates
// (float NPY); every bad value named with its file and place.
TEST(ConditionReader, LabelsBecomeOneHotAndFloatsCovariates) {
  test::TempDir dir;
  write_gz(dir.file("labels.idx.gz"), idx_bytes(0x08, {4}, Bytes{2, 0, 1, 2}));
  write_raw(dir.file("i64.npy"), npy_bytes("<i8", "(4,)", as_bytes(std::vector<std::int64_t>{2, 0, 1, 2})));
  write_raw(dir.file("i32.npy"), npy_bytes("<i4", "(4, 1)", as_bytes(std::vector<std::int32_t>{2, 0, 1, 2})));
  write_raw(dir.file("u8.npy"), npy_bytes("|u1", "(4,)", Bytes{2, 0, 1, 2}));
  const std::vector<float> one_hot = {0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1};
  for (const char* name : {"labels.idx.gz", "i64.npy", "i32.npy", "u8.npy"}) {
    const Condition c = read_condition(dir.file(name));
    EXPECT_EQ(c.kind, ConditionKind::classes) << name;
    EXPECT_EQ(c.dim, 3) << name << ": the largest label + 1";
    EXPECT_EQ(c.count(), 4) << name;
    EXPECT_EQ(c.values, one_hot) << name;
    EXPECT_EQ(c.source, dir.file(name));
    const Condition five = read_condition(dir.file(name), 5);
    EXPECT_EQ(five.dim, 5) << name;
    EXPECT_EQ(five.values[2], 1.0f) << name;
    EXPECT_EQ(five.values[5], 1.0f) << name;
  }
  const std::vector<float> cov = {0.5f, -1.25f, 3, 2e-3f, -7, 11};
  write_raw(dir.file("cov.npy"), npy_bytes("<f4", "(3, 2)", as_bytes(cov)));
  const Condition c = read_condition(dir.file("cov.npy"));
  EXPECT_EQ(c.kind, ConditionKind::covariates);
  EXPECT_EQ(c.dim, 2);
  EXPECT_EQ(c.values, cov);
  EXPECT_EQ(c.rows(1, 2).values, std::vector<float>(cov.begin() + 2, cov.end()));
  write_raw(dir.file("cov1.npy"), npy_bytes("<f8", "(3,)", as_bytes(std::vector<double>{1.5, -2, 0})));
  const Condition one = read_condition(dir.file("cov1.npy"));
  EXPECT_EQ(one.kind, ConditionKind::covariates);
  EXPECT_EQ(one.dim, 1);
  EXPECT_EQ(one.values, (std::vector<float>{1.5f, -2, 0}));
  EXPECT_EQ(c.describe(), "2 covariates");
  EXPECT_EQ(read_condition(dir.file("u8.npy"), 10).describe(), "10 classes");
}

TEST(ConditionReader, RejectsBadConditions) {
  test::TempDir dir;
  const auto read3 = [](const std::string& p) { read_condition(p, 3); };
  const auto read = [](const std::string& p) { read_condition(p); };
  write_raw(dir.file("big.npy"), npy_bytes("<i8", "(3,)", as_bytes(std::vector<std::int64_t>{0, 5, 1})));
  expect_error(read3, dir.file("big.npy"), "label 5 at item 1 is not one of the 3 classes 0..2");
  write_raw(dir.file("neg.npy"), npy_bytes("<i4", "(2,)", as_bytes(std::vector<std::int32_t>{1, -1})));
  expect_error(read, dir.file("neg.npy"), "label -1 at item 1 is negative");
  write_raw(dir.file("two.npy"), npy_bytes("<i4", "(2, 2)", as_bytes(std::vector<std::int32_t>{1, 0, 0, 1})));
  expect_error(read, dir.file("two.npy"), "holds integers in 2 columns; class labels are one column");
  write_raw(dir.file("nan.npy"), npy_bytes("<f4", "(2, 1)", as_bytes(std::vector<float>{1, NAN})));
  expect_error(read, dir.file("nan.npy"), "at item 1, feature 0 is not finite");
  write_raw(dir.file("3d.npy"), npy_bytes("<f4", "(1, 1, 1)", as_bytes(std::vector<float>{1})));
  expect_error(read, dir.file("3d.npy"), "has 3 dimensions");
  write_raw(dir.file("images.idx"), idx_bytes(0x08, {2, 2, 2}, pixels(8)));
  expect_error(read, dir.file("images.idx"), "a labels file has exactly 1");
  expect_error(read, dir.file("none.npy"), "no such file");
  test::expect_error([] { class_condition(10, 10, 2); }, "class 10 is not one of the model's 10 classes 0..9");
  test::expect_error([] { condition_from_covariates({1, 2, 3}, 2, 2, "mine"); },
                     "conditions 'mine': 3 values are not 2 items of 2 covariates");

  // One condition per item, or an error naming both files; nothing is attached.
  Dataset d = read_idx_images(dir.file("images.idx"));
  Condition three = condition_from_labels({0, 1, 2}, 0, "three.idx");
  test::expect_error([&] { attach_condition(d, three); },
                     "conditions 'three.idx' hold 3 rows but the data '" + dir.file("images.idx") + "' has 2 items");
  EXPECT_TRUE(d.condition.empty());
  attach_condition(d, three.rows(0, 2));
  EXPECT_EQ(d.condition.count(), 2);
  EXPECT_EQ(d.slice(1, 1).condition.values, (std::vector<float>{0, 1, 0}));
}

// A backend's view: the condition after each item's values, uint8 kept for one-hot classes.
TEST(ConditionReader, TheBackendsViewAppendsTheCondition) {
  Dataset d;
  d.source = "d";
  d.count = 2;
  d.dim = 3;
  d.u8 = {0, 51, 255, 102, 0, 204};
  attach_condition(d, condition_from_labels({1, 0}, 2, "labels"));
  const Dataset v = with_condition_appended(d);
  EXPECT_EQ(v.dim, 5);
  EXPECT_EQ(v.appended, 2);
  EXPECT_EQ(v.features(), 3);
  EXPECT_TRUE(v.condition.empty());
  EXPECT_EQ(v.u8, (Bytes{0, 51, 255, 0, 255, 102, 0, 204, 255, 0}));
  attach_condition(d, condition_from_covariates({0.5f, -2, 3, 4}, 2, 2, "cov"));
  const Dataset f = with_condition_appended(d);
  ASSERT_FALSE(f.is_u8());
  const auto px = [](int b) { return static_cast<float>(b) * static_cast<float>(1.0 / 255.0); };  // Dataset::row's x / 255
  EXPECT_EQ(f.f32, (std::vector<float>{0, px(51), 1, 0.5f, -2, px(102), 0, px(204), 3, 4}));
}

// Memory-mapped data (--mmap): the file's bytes in place, the same values as a read, the same
// training bit for bit; what cannot be mapped says why.
TEST(MappedData, AMappedFileGivesTheSameValuesAndTheSameTraining) {
  test::TempDir dir;
  const Bytes payload = pixels(60 * 12);
  write_raw(dir.file("img.idx"), idx_bytes(0x08, {60, 3, 4}, payload));
  std::vector<float> floats(60 * 12);
  for (std::size_t i = 0; i < floats.size(); ++i) floats[i] = payload[i] / 255.0f;
  write_raw(dir.file("f4.npy"), npy_bytes("<f4", "(60, 12)", as_bytes(floats)));
  write_raw(dir.file("u1.npy"), npy_bytes("|u1", "(60, 12)", payload));
  for (const char* name : {"img.idx", "f4.npy", "u1.npy"}) {
    const Dataset read = read_dataset(dir.file(name)), mapped = read_dataset(dir.file(name), DataAccess::map);
    EXPECT_FALSE(read.is_mapped()) << name;
    ASSERT_TRUE(mapped.is_mapped()) << name;
    EXPECT_EQ(mapped.count, 60) << name;
    EXPECT_EQ(mapped.dim, 12) << name;
    EXPECT_EQ(mapped.is_u8(), read.is_u8()) << name;
    std::vector<float> a(12), b(12);
    for (std::int64_t i : {0, 31, 59}) {
      read.row(i, a.data());
      mapped.row(i, b.data());
      EXPECT_EQ(a, b) << name << " item " << i;
    }
    EXPECT_EQ(mapped.slice(10, 5).is_mapped(), false) << "a slice is a copy";
    // Training on the mapped file equals training on the read one, bit for bit.
    ModelConfig m;
    m.input_dim = 12;
    m.encoder_hidden = m.decoder_hidden = {8};
    m.latent = 2;
    std::vector<float> params[2];
    for (int k = 0; k < 2; ++k) {
      Session s(m, test::cpu_train(16, 20));
      s.set_train_data(std::make_shared<Dataset>(k == 0 ? read : mapped));
      for (int e = 0; e < 2; ++e) ASSERT_TRUE(s.train_epoch(&mapped, nullptr).has_value());
      params[k] = s.backend().parameters();
    }
    EXPECT_EQ(params[0], params[1]) << name;
  }
  // Automatic: a small file is read.
  EXPECT_FALSE(read_dataset(dir.file("img.idx"), DataAccess::automatic).is_mapped());
  // Binarization makes the values its own; the file stays.
  Dataset b = read_dataset(dir.file("u1.npy"), DataAccess::map);
  binarize_static(b);
  EXPECT_FALSE(b.is_mapped());
  EXPECT_EQ(read_dataset(dir.file("u1.npy"), DataAccess::map).u8_values()[0], payload[0]);
}

TEST(MappedData, WhatCannotBeMappedSaysWhy) {
  test::TempDir dir;
  const auto map = [](const std::string& p) { read_dataset(p, DataAccess::map); };
  write_gz(dir.file("img.idx.gz"), idx_bytes(0x08, {4, 2, 2}, pixels(16)));
  expect_error(map, dir.file("img.idx.gz"), "is gzip-compressed and cannot be memory-mapped");
  EXPECT_FALSE(read_dataset(dir.file("img.idx.gz"), DataAccess::automatic).is_mapped());
  write_raw(dir.file("f8.npy"), npy_bytes("<f8", "(2, 2)", as_bytes(std::vector<double>{1, 2, 3, 4})));
  expect_error(map, dir.file("f8.npy"), "holds <f8 values, which cannot be memory-mapped");
  write_raw(dir.file("nan.npy"), npy_bytes("<f4", "(2, 2)", as_bytes(std::vector<float>{1, 2, NAN, 4})));
  // A mapped file's floats are checked at first use, once, not as it is mapped.
  EXPECT_NO_THROW(read_dataset(dir.file("nan.npy"), DataAccess::map));
  const auto map_and_check = [](const std::string& p) { read_dataset(p, DataAccess::map).validate(); };
  expect_error(map_and_check, dir.file("nan.npy"), "at item 1, feature 0 is not finite");
  const auto map_and_train = [](const std::string& p) {
    ModelConfig m;
    m.input_dim = 2;
    m.likelihood = Likelihood::gaussian;
    Session s(m, test::cpu_train(2, 2));
    s.set_train_data(std::make_shared<Dataset>(read_dataset(p, DataAccess::map)));
  };
  expect_error(map_and_train, dir.file("nan.npy"), "at item 1, feature 0 is not finite");
  write_raw(dir.file("short.idx"), idx_bytes(0x08, {4, 2, 2}, pixels(15)));
  // A file shorter or longer than its header says: the reader's words, mapped or read.
  for (const DataAccess how : {DataAccess::map, DataAccess::read}) {
    const auto open = [how](const std::string& p) { read_dataset(p, how); };
    expect_error(open, dir.file("short.idx"), "is truncated: the header promises 16 bytes of data but the file holds only 15");
    write_raw(dir.file("long.npy"), npy_bytes("<f4", "(2, 2)", as_bytes(std::vector<float>{1, 2, 3, 4, 5})));
    expect_error(open, dir.file("long.npy"), "has more data than its header describes (16 bytes expected)");
  }
}

// The likelihood's check of a mapped file's values ([0, 1] for the Bernoulli likelihood, counts
// for the count likelihoods) runs once, as the finite check does, and says what is wrong.
TEST(MappedData, TheLikelihoodsCheckOfAMappedFileRunsOnce) {
  test::TempDir dir;
  const auto train = [](Likelihood lik, const Dataset& d) {
    ModelConfig m;
    m.input_dim = 2;
    m.likelihood = lik;
    Session s(m, test::cpu_train(2, 2));
    s.set_train_data(std::make_shared<Dataset>(d));
  };
  write_raw(dir.file("unit.npy"), npy_bytes("<f4", "(2, 2)", as_bytes(std::vector<float>{0, 0.25f, 1, 0.5f})));
  const Dataset unit = read_dataset(dir.file("unit.npy"), DataAccess::map);
  EXPECT_FALSE(unit.values_checked(ValueRule::unit_interval));
  train(Likelihood::bernoulli, unit);
  EXPECT_TRUE(unit.values_checked(ValueRule::unit_interval));
  EXPECT_TRUE(unit.values_checked(ValueRule::finite));
  EXPECT_FALSE(unit.values_checked(ValueRule::counts));  // 0.25 is no count: that check fails
  test::expect_error([&] { train(Likelihood::poisson, unit); }, "value 0.25 at item 0, feature 1 is not a count");
  EXPECT_FALSE(unit.values_checked(ValueRule::counts));
  write_raw(dir.file("wide.npy"), npy_bytes("<f4", "(2, 2)", as_bytes(std::vector<float>{0, 1, 1.5f, 0})));
  const auto bernoulli = [&](const std::string& p) { train(Likelihood::bernoulli, read_dataset(p, DataAccess::map)); };
  expect_error(bernoulli, dir.file("wide.npy"), "value 1.5 at item 1, feature 0 is outside [0, 1]");
  // In memory nothing is marked: the values may change.
  const Dataset read = read_dataset(dir.file("unit.npy"));
  train(Likelihood::bernoulli, read);
  EXPECT_FALSE(read.values_checked(ValueRule::unit_interval));
}

TEST(Binarize, StaticThresholdAndFixedDraw) {
  Dataset d;
  d.count = 1;
  d.dim = 4;
  d.u8 = {0, 127, 128, 255};
  binarize_static(d);
  EXPECT_EQ(d.u8, (Bytes{0, 0, 255, 255}));
  Dataset g;
  g.count = 200;
  g.dim = 50;
  g.u8.assign(200 * 50, 77);  // p = 0.302
  Dataset h = g;
  binarize_fixed_draw(g, 5);
  binarize_fixed_draw(h, 5);
  EXPECT_EQ(g.u8, h.u8);  // seeded
  double on = 0;
  for (auto v : g.u8) {
    ASSERT_TRUE(v == 0 || v == 255);
    on += v == 255;
  }
  EXPECT_NEAR(on / g.u8.size(), 77.0 / 255.0, 0.02);
}

TEST(Safetensors, ModelRoundTripAndBadFiles) {
  test::TempDir dir;
  ModelConfig cfg;
  cfg.input_dim = 10;
  cfg.encoder_hidden = {6};
  cfg.decoder_hidden = {5, 4};
  cfg.latent = 3;
  cfg.likelihood = Likelihood::gaussian;
  cfg.learn_sigma = true;
  const ParamLayout layout(cfg);
  const auto params = init_parameters(layout, cfg, 9);
  TrainConfig tc;
  save_model(dir.file("m.safetensors"), layout, params, config_to_json(cfg, tc));
  const SavedModel m = load_model(dir.file("m.safetensors"));
  EXPECT_EQ(m.params, params);
  EXPECT_EQ(m.model.decoder_hidden, cfg.decoder_hidden);
  EXPECT_TRUE(m.model.learn_sigma);

  // A model file is not a checkpoint (no optimizer state), and a format this vae does not
  // know is refused by name, not read as if it were one it knows.
  expect_error([](const std::string& p) { load_checkpoint(p); }, dir.file("m.safetensors"),
               "is of format 'vae-model-1', but this reads vae-checkpoint-1");
  write_safetensors(dir.file("new.safetensors"), {}, {{"config", config_to_json(cfg, tc)}, {"format", "vae-model-9"}});
  expect_error([](const std::string& p) { load_model(p); }, dir.file("new.safetensors"),
               "is of format 'vae-model-9', but this reads vae-model-1 or vae-checkpoint-1");

  // Named tensors with the shapes of the layout, readable by name.
  const auto f = read_safetensors(dir.file("m.safetensors"));
  ASSERT_NE(f.find("encoder.0.weight"), nullptr);
  EXPECT_EQ(f.find("encoder.0.weight")->shape, (std::vector<std::int64_t>{6, 10}));
  EXPECT_EQ(f.find("decoder.logvar")->shape, (std::vector<std::int64_t>{10}));

  Bytes b;
  {
    std::ifstream in(dir.file("m.safetensors"), std::ios::binary);
    b.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto load = [](const std::string& p) { return load_model(p); };
  write_raw(dir.file("trunc.safetensors"), Bytes(b.begin(), b.end() - 10));
  expect_error(load, dir.file("trunc.safetensors"), "outside the file");
  write_raw(dir.file("tiny.safetensors"), Bytes{1, 2, 3});
  expect_error(load, dir.file("tiny.safetensors"), "not a safetensors file");
  Bytes bad_len = b;
  bad_len[7] = 0x7F;
  write_raw(dir.file("len.safetensors"), bad_len);
  expect_error(load, dir.file("len.safetensors"), "header length");
  Bytes bad_json = b;
  bad_json[8] = '[';
  bad_json[9] = '[';
  write_raw(dir.file("json.safetensors"), bad_json);
  expect_error(load, dir.file("json.safetensors"), "safetensors");
  auto nan_params = params;
  nan_params[layout.at("decoder.out.bias").offset + 2] = std::nanf("");
  save_model(dir.file("nan.safetensors"), layout, nan_params, config_to_json(cfg, tc));
  expect_error(load, dir.file("nan.safetensors"), "non-finite");
  write_safetensors(dir.file("noconfig.safetensors"), {}, {});
  expect_error(load, dir.file("noconfig.safetensors"), "no 'config' metadata");
}

// Shapes and data offsets must be JSON integers in range: the fuzzer found a shape entry
// written as 2888...8 (55 digits, which JSON parsers read as a float) that was converted to
// int64 with undefined behaviour.
TEST(Safetensors, NonIntegerShapesAndOffsetsAreClearErrors) {
  test::TempDir dir;
  auto file = [&](const std::string& name, const std::string& shape, const std::string& offsets) {
    const std::string header = "{\"w\": {\"dtype\": \"F32\", \"shape\": " + shape + ", \"data_offsets\": " + offsets + "}}";
    Bytes b(8);
    for (int i = 0; i < 8; ++i) b[static_cast<std::size_t>(i)] = static_cast<unsigned char>(header.size() >> (8 * i));
    b.insert(b.end(), header.begin(), header.end());
    b.resize(b.size() + 24, 0);  // six floats of data
    write_raw(dir.file(name), b);
    return dir.file(name);
  };
  auto read = [](const std::string& p) { return read_safetensors(p); };
  const auto ok = read(file("ok.safetensors", "[2, 3]", "[0, 24]"));
  ASSERT_NE(ok.find("w"), nullptr);
  EXPECT_EQ(ok.find("w")->shape, (std::vector<std::int64_t>{2, 3}));
  expect_error(read, file("huge.safetensors", "[2, 2888888888888888888888888888888888888888888888888888888]", "[0, 24]"),
               "tensor 'w' shape[1] must be an integer");
  expect_error(read, file("frac.safetensors", "[2, 3.0]", "[0, 24]"), "shape[1] must be an integer");
  expect_error(read, file("neg.safetensors", "[2, 3]", "[-8, 24]"), "data_offsets[0] must be an integer in [0, ");
  expect_error(read, file("float_off.safetensors", "[2, 3]", "[0, 24.5]"), "data_offsets[1] must be an integer");
  expect_error(read, file("not_list.safetensors", "6", "[0, 24]"), "shape must be a list of integers");
  // A byte that is not UTF-8 in the header: the JSON parser's message quotes it, escaped.
  expect_error(read, file("byte.safetensors", "[2, \xc5]", "[0, 24]"), "last read: '2, \\xc5'");
}

// Every message is printable UTF-8 (a terminal's text, a Python str): valid UTF-8 as it is, and
// any other byte or a control character (but tab and newline) as \xNN.
TEST(Errors, MessagesArePrintableUtf8) {
  const auto message = [](const std::string& text) { return std::string(Error(text).what()); };
  EXPECT_EQ(message("donn\xc3\xa9" "es \xf0\x9f\x99\x82 a\tb\nc"), "donn\xc3\xa9" "es \xf0\x9f\x99\x82 a\tb\nc");
  EXPECT_EQ(message("bad \xc5 byte"), "bad \\xc5 byte");
  EXPECT_EQ(message("cut \xe2\x82"), "cut \\xe2\\x82");              // a sequence cut short
  EXPECT_EQ(message("long \xc0\xaf"), "long \\xc0\\xaf");            // an overlong '/'
  EXPECT_EQ(message("half \xed\xa0\x80"), "half \\xed\\xa0\\x80");  // a UTF-16 surrogate
  EXPECT_EQ(message(std::string("nul \0 bell \a del \x7f", 18)), "nul \\x00 bell \\x07 del \\x7f");
}

TEST(Png, WritesAValidPngFile) {
  test::TempDir dir;
  std::vector<float> img(3 * 4 * 5);
  for (std::size_t i = 0; i < img.size(); ++i) img[i] = float(i) / float(img.size());
  write_png_grid(dir.file("g.png"), img, 3, 4, 5, 2);
  std::ifstream f(dir.file("g.png"), std::ios::binary);
  Bytes b(std::istreambuf_iterator<char>(f), {});
  ASSERT_GT(b.size(), 50u);
  EXPECT_EQ(Bytes(b.begin(), b.begin() + 8), (Bytes{0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A}));
}

}  // namespace
}  // namespace vae
