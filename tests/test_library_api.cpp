// libvae used as a library, the way a program links it: datasets the program fills itself,
// checkpoints and model files it writes, pictures of a backend it made. Every misuse must be
// a vae::Error that says what was expected, never a crash or a quietly wrong number.
// Public headers only.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "test_util.h"
#include "vae/vae.h"

namespace vae {
namespace {

ModelConfig small_model() {
  ModelConfig m;
  m.input_dim = 16;
  m.encoder_hidden = {8};
  m.decoder_hidden = {8};
  m.latent = 2;
  return m;
}

TrainConfig small_train() { return test::cpu_train(10, 20); }

std::shared_ptr<Dataset> floats(std::int64_t n, int d, float value) {
  auto p = test::dataset_of("mine", n, d);
  p->f32.assign(static_cast<std::size_t>(n) * static_cast<std::size_t>(d), value);
  return p;
}

std::unique_ptr<Backend> cpu_backend(const ModelConfig& m = small_model()) {
  auto b = make_backend(Device::cpu, m, small_train());
  b->set_parameters(init_parameters(b->layout(), m, 1));
  return b;
}

// --- datasets a program fills itself ------------------------------------------------------

TEST(LibraryDataset, ValidateAcceptsWellFormedSets) {
  floats(4, 16, 0.5f)->validate();
  floats(0, 16, 0.5f)->validate();  // empty is a well-formed set (the backends refuse to train on it)
  Dataset u;
  u.count = 2;
  u.dim = 3;
  u.u8 = {0, 1, 2, 3, 4, 5};
  u.validate();
}

TEST(LibraryDataset, CountWithoutPixelsIsAnErrorNotAnOutOfBoundsRead) {
  auto d = floats(40, 16, 0.5f);
  d->f32.clear();  // count and dim set, the pixels forgotten
  auto b = cpu_backend();
  test::expect_error([&] { b->set_train_data(d); }, "f32 holds 0 values, expected count x dim = 40 x 16 = 640");
  test::expect_error([&] { b->evaluate(*d); }, "f32 holds 0 values");
  test::expect_error([&] { b->estimate_log_likelihood(*d, 2); }, "f32 holds 0 values");
  test::expect_error([&] { b->encode_means(*d, 0, 1); }, "f32 holds 0 values");
}

TEST(LibraryDataset, ShortStorageIsAnError) {
  auto d = floats(40, 16, 0.5f);
  d->f32.resize(10);
  test::expect_error([&] { cpu_backend()->set_train_data(d); }, "'mine': f32 holds 10 values, expected");
}

TEST(LibraryDataset, BothStoragesFilledIsAnError) {
  auto d = floats(4, 16, 0.0f);
  d->u8.assign(64, 255);  // u8 would win quietly
  test::expect_error([&] { cpu_backend()->evaluate(*d); }, "fill exactly one");
}

TEST(LibraryDataset, BernoulliDataOutsideTheUnitIntervalIsAnError) {
  auto d = floats(40, 16, 0.5f);
  d->f32[17] = 200.0f;  // 0..255 pixels, not divided by 255
  auto b = cpu_backend();
  test::expect_error([&] { b->set_train_data(d); }, "value 200 at item 1, feature 1 is outside [0, 1]");
  test::expect_error([&] { b->evaluate(*d); }, "outside [0, 1], which the Bernoulli likelihood needs");
  // The Gaussian likelihood takes any finite value.
  ModelConfig g = small_model();
  g.likelihood = Likelihood::gaussian;
  auto gb = cpu_backend(g);
  gb->set_train_data(d);
  EXPECT_TRUE(std::isfinite(gb->evaluate(*d).mean_loss()));
}

TEST(LibraryDataset, NonFiniteValuesAreAnError) {
  auto d = floats(40, 16, 0.5f);
  d->f32[5] = NAN;
  ModelConfig g = small_model();
  g.likelihood = Likelihood::gaussian;
  test::expect_error([&] { cpu_backend(g)->evaluate(*d); }, "value nan at item 0, feature 5 is not finite");
}

TEST(LibraryDataset, TrainingOnAnEmptySetIsRefusedAtOnce) {
  test::expect_error([&] { cpu_backend()->set_train_data(floats(0, 16, 0.5f)); }, "'mine' holds no items");
}

// An empty set has no mean loss: an error, not sums with count 0 (mean_loss() would say 0).
TEST(LibraryDataset, EvaluatingAnEmptySetIsAnError) {
  auto b = cpu_backend();
  test::expect_error([&] { b->evaluate(*floats(0, 16, 0.5f)); }, "evaluate: data 'mine' holds no items");
  test::expect_error([&] { b->estimate_log_likelihood(*floats(0, 16, 0.5f), 2); },
                     "estimate_log_likelihood: data 'mine' holds no items");
  EXPECT_EQ(b->evaluate(*floats(3, 16, 0.5f)).count, 3);
}

TEST(LibraryDataset, BinarizersCheckTheSet) {
  Dataset d;
  d.source = "made by hand";
  d.count = 5;
  d.dim = 4;  // no pixels
  test::expect_error([&] { binarize_fixed_draw(d, 1); }, "'made by hand': f32 holds 0 values");
  test::expect_error([&] { binarize_static(d); }, "f32 holds 0 values");
  Dataset z;
  z.count = 3;
  test::expect_error([&] { binarize_static(z); }, "dim is 0");
}

TEST(LibraryDataset, LinearGaussianToolsCheckTheSet) {
  auto d = floats(10, 4, 0.5f);
  d->f32.resize(7);
  test::expect_error([&] { fit_ppca(*d, 1); }, "f32 holds 7 values");
  ModelConfig m;
  m.input_dim = 4;
  m.encoder_hidden = {};
  m.decoder_hidden = {};
  m.latent = 1;
  m.likelihood = Likelihood::gaussian;
  test::expect_error([&] { exact_log_likelihood(m, init_parameters(ParamLayout(m), m, 1), *d); }, "f32 holds 7 values");
}

// --- batches a program makes itself --------------------------------------------------------

// Each bad batch is an error naming the call (train_step or compute_gradient) and what was
// wrong; the CUDA backend gives the same messages (tests/cuda/test_backend.cpp).
TEST(LibraryBatch, BadBatchesAreErrorsNamingTheCall) {
  auto b = cpu_backend();
  EXPECT_EQ(test::bad_batch_errors(*b, floats(40, 16, 0.5f), small_train().batch), test::bad_batch_messages(40, 10));
}

// --- checkpoints and model files ----------------------------------------------------------

Checkpoint checkpoint_of(Backend& b, const ModelConfig& m, const TrainConfig& t) {
  Checkpoint ck;
  ck.model = m;
  ck.train = t;
  ck.params = b.parameters();
  ck.optimizer = b.optimizer_state();
  return ck;
}

TEST(LibraryCheckpoint, RoundTripsWithAnEmptyConfigJson) {
  test::TempDir dir;
  const ModelConfig m = small_model();
  const TrainConfig t = small_train();
  auto b = cpu_backend(m);
  const Checkpoint ck = checkpoint_of(*b, m, t);
  save_checkpoint(dir.file("ck.safetensors"), ck, "");  // empty: config_to_json(ck.model, ck.train)
  const Checkpoint back = load_checkpoint(dir.file("ck.safetensors"));
  EXPECT_EQ(back.params, ck.params);
  EXPECT_EQ(back.model.latent, m.latent);
  EXPECT_EQ(back.model.encoder_hidden, m.encoder_hidden);
  EXPECT_EQ(back.train.batch, t.batch);
}

TEST(LibraryCheckpoint, ConfigJsonOfAnotherModelIsRefusedWhenSaving) {
  test::TempDir dir;
  const ModelConfig m = small_model();
  const TrainConfig t = small_train();
  auto b = cpu_backend(m);
  ModelConfig other = m;
  other.latent = 5;
  test::expect_error([&] { save_checkpoint(dir.file("ck.safetensors"), checkpoint_of(*b, m, t), config_to_json(other, t)); },
                     "config_json does not describe ck.model and ck.train");
  test::expect_error([&] { save_checkpoint(dir.file("ck.safetensors"), checkpoint_of(*b, m, t), "{not json"); },
                     "config_json is not a configuration");
  EXPECT_FALSE(std::filesystem::exists(dir.file("ck.safetensors")));
  // The trainer's form, with the device's name, is accepted.
  save_checkpoint(dir.file("ck.safetensors"), checkpoint_of(*b, m, t), config_to_json(m, t, b->name()));
  EXPECT_EQ(load_checkpoint(dir.file("ck.safetensors")).params, b->parameters());
}

TEST(LibraryCheckpoint, MissingOptimizerStateIsRefusedWhenSaving) {
  test::TempDir dir;
  const ModelConfig m = small_model();
  auto b = cpu_backend(m);
  Checkpoint ck = checkpoint_of(*b, m, small_train());
  ck.optimizer = OptimizerState{};  // load_checkpoint could not read such a file back
  test::expect_error([&] { save_checkpoint(dir.file("ck.safetensors"), ck, ""); },
                     "ck.optimizer holds 0 and 0 values in m and v");
  EXPECT_FALSE(std::filesystem::exists(dir.file("ck.safetensors")));
}

TEST(LibraryCheckpoint, SaveModelRefusesTheConfigOfAnotherModel) {
  test::TempDir dir;
  const ModelConfig m = small_model();
  const TrainConfig t = small_train();
  const ParamLayout layout(m);
  const std::vector<float> p = init_parameters(layout, m, 1);
  ModelConfig other = m;
  other.encoder_hidden = {9};
  test::expect_error([&] { save_model(dir.file("m.safetensors"), layout, p, config_to_json(other, t)); },
                     "save_model: config_json describes a model");
  test::expect_error([&] { save_model(dir.file("m.safetensors"), layout, p, ""); }, "save_model: config_json is not a configuration");
  save_model(dir.file("m.safetensors"), layout, p, config_to_json(m, t));
  EXPECT_EQ(load_model(dir.file("m.safetensors")).params, p);
}

// --- pictures -----------------------------------------------------------------------------

TEST(LibraryPictures, AModelConfigThatIsNotTheBackendsIsRefused) {
  test::TempDir dir;
  const ModelConfig m = small_model();
  auto b = cpu_backend(m);
  ModelConfig other = m;
  other.latent = 4;
  auto data = floats(4, 16, 0.5f);
  test::expect_error([&] { write_samples_png(dir.file("s.png"), *b, other, 4, 4, 4, 1); },
                     "is not the backend's model");
  test::expect_error([&] { write_reconstructions_png(dir.file("r.png"), *b, other, *data, 2); },
                     "is not the backend's model");
  test::expect_error([&] { write_interpolation_png(dir.file("i.png"), *b, other, *data, 0, 1, 3); },
                     "is not the backend's model");
  EXPECT_FALSE(std::filesystem::exists(dir.file("s.png")));
  write_samples_png(dir.file("s.png"), *b, m, 4, 4, 4, 1);
  EXPECT_TRUE(std::filesystem::exists(dir.file("s.png")));
}

TEST(LibraryPictures, LatentScatterOfNoPointsIsAnError) {
  test::TempDir dir;
  auto b = cpu_backend();
  auto data = floats(3, 16, 0.5f);
  test::expect_error([&] { write_latent_scatter_png(dir.file("l.png"), *b, small_model(), *data, {0, 1, 2}, 0); },
                     "max_points >= 1");
  test::expect_error([&] { write_latent_scatter_png(dir.file("l.png"), *b, small_model(), *floats(0, 16, 0.5f), {}, 10); },
                     "holds no items");
}

}  // namespace
}  // namespace vae
