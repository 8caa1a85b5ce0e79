// --standardize: the scaling itself, the CPU backend's edges, the files that keep it, and a
// standardized run resumed bit for bit. (tests/standardize_exact.py checks vae eval's exact
// log p(x) of such a model against a numpy closed form.)
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "test_util.h"
#include "vae/vae.h"

namespace vae {
namespace {

ModelConfig gaussian_model(int dim) {
  ModelConfig m;
  m.input_dim = dim;
  m.encoder_hidden = {9};
  m.decoder_hidden = {7};
  m.latent = 3;
  m.likelihood = Likelihood::gaussian;
  m.learn_sigma = true;
  m.standardize = true;
  return m;
}

TrainConfig small_train() {
  TrainConfig t = test::cpu_train(8, 6);
  t.epochs = 2;
  return t;
}

TEST(Standardize, FitsEachFeaturesMeanAndPopulationStd) {
  auto d = test::dataset_of("three", 2, 3);
  d->f32 = {0.0f, 5.0f, -1.0f,  //
            4.0f, 5.0f, 3.0f};
  const Standardization s = Standardization::fit(*d);
  EXPECT_EQ(s.mean, (std::vector<float>{2.0f, 5.0f, 1.0f}));
  EXPECT_EQ(s.std, (std::vector<float>{2.0f, 1.0f, 2.0f}));  // a constant feature: std 1, centred only
  EXPECT_DOUBLE_EQ(s.log_jacobian(), 2 * std::log(2.0));
  const Dataset x = s.apply(*d);
  EXPECT_EQ(x.f32, (std::vector<float>{-1.0f, 0.0f, -1.0f, 1.0f, 0.0f, 1.0f}));
  std::vector<float> back = x.f32;
  s.undo(back);
  EXPECT_EQ(back, d->f32);

  auto pixels = test::dataset_of("pixels", 2, 1);  // uint8 reads as x / 255
  pixels->u8 = {0, 255};
  const Standardization p = Standardization::fit(*pixels);
  EXPECT_FLOAT_EQ(p.mean[0], 0.5f);
  EXPECT_FLOAT_EQ(p.std[0], 0.5f);
  EXPECT_EQ(p.apply(*pixels).f32, (std::vector<float>{-1.0f, 1.0f}));

  test::expect_error([&] { Standardization::fit(*test::dataset_of("none", 0, 3)); }, "'none' holds no items");
  test::expect_error([&] { s.apply(*pixels); }, "data 'pixels' has 1 features per item, the scaling 3");
}

TEST(Standardize, TheCpuBackendScalesAtItsEdges) {
  const ModelConfig m = gaussian_model(11);
  ModelConfig unscaled = m;  // the same layout; a standardized model refuses unscaled training data
  unscaled.standardize = false;
  auto scaled = make_backend(Device::cpu, m, small_train());
  auto plain = make_backend(Device::cpu, unscaled, small_train());
  const auto params = init_parameters(scaled->layout(), m, 3);
  scaled->set_parameters(params);
  plain->set_parameters(params);
  test::expect_scaling_at_the_edges(*scaled, *plain, test::real_valued(29, 11, 7));
}

TEST(Standardize, AScalingThatDoesNotFitTheModelIsRefused) {
  auto b = make_backend(Device::cpu, gaussian_model(11), small_train());
  test::expect_error([&] { b->set_standardization(Standardization::fit(*test::real_valued(5, 4, 1))); },
                     "Backend::set_standardization: the model is standardized (--standardize) and needs the "
                     "training set's scaling of 11 features; got 4");
  // A standardized model trains on scaled data only; a model that is not takes no scaling.
  test::expect_error([&] { b->set_train_data(test::real_valued(9, 11, 2)); },
                     "set_train_data: the model is standardized (--standardize) and needs the training set's scaling");
  ModelConfig plain = gaussian_model(11);
  plain.standardize = false;
  auto p = make_backend(Device::cpu, plain, small_train());
  test::expect_error([&] { p->set_standardization(Standardization::fit(*test::real_valued(5, 11, 1))); },
                     "a scaling was given for a model that is not standardized");
}

TEST(Standardize, ARunResumedFromItsCheckpointContinuesBitForBit) {
  test::TempDir dir;
  const ModelConfig m = gaussian_model(11);
  const auto train = test::real_valued(37, 11, 2);
  const auto test_set = test::real_valued(13, 11, 3);

  Session whole(m, small_train());
  whole.set_train_data(train);
  std::optional<EpochOutcome> last;
  for (int e = 0; e < 2; ++e) last = whole.train_epoch(test_set.get(), nullptr);

  Session first(m, small_train());
  first.set_train_data(train);
  first.train_epoch(test_set.get(), nullptr);
  save_checkpoint(dir.file("ck.safetensors"), first.checkpoint(), "");
  const Checkpoint ck = load_checkpoint(dir.file("ck.safetensors"));
  EXPECT_EQ(ck.scaling.mean, Standardization::fit(*train).mean);
  EXPECT_EQ(ck.scaling.std, Standardization::fit(*train).std);
  Session resumed(ck);
  resumed.set_train_data(train);
  const auto again = resumed.train_epoch(test_set.get(), nullptr);

  ASSERT_TRUE(last && again);
  EXPECT_EQ(resumed.backend().parameters(), whole.backend().parameters());
  EXPECT_EQ(again->metrics.test_loss, last->metrics.test_loss);
  EXPECT_EQ(again->metrics.train_loss, last->metrics.train_loss);
  EXPECT_TRUE(std::isfinite(last->metrics.test_loss));
  // The reported losses are in the data's units: the scaled model's plus the Jacobian.
  const LossSums inside = [&] {
    auto plain = make_backend(Device::cpu, m, small_train());
    plain->set_parameters(whole.backend().parameters());
    return plain->evaluate(ck.scaling.apply(*test_set));
  }();
  EXPECT_DOUBLE_EQ(last->metrics.test_loss, inside.mean_loss() + ck.scaling.log_jacobian());
}

TEST(Standardize, FilesWithoutTheirScalingOrWithABadOneAreRefused) {
  test::TempDir dir;
  const ModelConfig m = gaussian_model(5);
  auto b = make_backend(Device::cpu, m, small_train());
  b->set_parameters(init_parameters(b->layout(), m, 1));
  const Standardization s = Standardization::fit(*test::real_valued(9, 5, 4));
  const std::string cfg = config_to_json(m, small_train());
  test::expect_error([&] { save_model(dir.file("m.safetensors"), b->layout(), b->parameters(), cfg); },
                     "save_model: the model is standardized (--standardize) and needs the training set's scaling of 5");
  save_model(dir.file("m.safetensors"), b->layout(), b->parameters(), cfg, s);
  const SavedModel back = load_model(dir.file("m.safetensors"));
  EXPECT_EQ(back.scaling.mean, s.mean);
  EXPECT_EQ(back.scaling.std, s.std);

  // The same file with one tensor left out, and with a standard deviation of zero.
  SafetensorsFile f = read_safetensors(dir.file("m.safetensors"));
  std::vector<NamedTensor> without;
  for (const NamedTensor& t : f.tensors)
    if (t.name != "standardize.std") without.push_back(t);
  write_safetensors(dir.file("without.safetensors"), without, f.metadata);
  test::expect_error([&] { load_model(dir.file("without.safetensors")); },
                     "its configuration says standardize, but it has no tensor 'standardize.std'");
  for (NamedTensor& t : f.tensors)
    if (t.name == "standardize.std") std::fill(t.bytes.begin(), t.bytes.begin() + 4, 0);
  write_safetensors(dir.file("zero.safetensors"), f.tensors, f.metadata);
  test::expect_error([&] { load_model(dir.file("zero.safetensors")); },
                     "tensor 'standardize.std' holds 0 at feature 0; a standard deviation must be finite and > 0");

  ModelConfig plain = m;
  plain.standardize = false;
  auto pb = make_backend(Device::cpu, plain, small_train());
  test::expect_error(
      [&] { save_model(dir.file("p.safetensors"), pb->layout(), b->parameters(), config_to_json(plain, small_train()), s); },
      "a scaling was given for a model that is not standardized");
}

}  // namespace
}  // namespace vae
