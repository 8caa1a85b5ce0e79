// Conditional VAEs: the condition joins the encoder's input and the decoder's; what a backend
// says when data and model disagree about it; and, on Fashion-MNIST, that conditioning on
// the labels lowers the test -ELBO and that samples of class k look like class k to a
// classifier trained here on the real images. (The gradient: test_gradcheck.cpp; the GPU
// path against the CPU: tests/cuda; the command line: test_cli.cpp.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <memory>
#include <sstream>
#include <vector>

#include "test_util.h"
#include "vae/vae.h"

namespace vae {
namespace {

ModelConfig conditional_model(int dim, ConditionKind kind, int c) {
  ModelConfig m;
  m.input_dim = dim;
  m.encoder_hidden = {12};
  m.decoder_hidden = {10};
  m.latent = 3;
  m.condition = kind;
  m.condition_dim = c;
  return m;
}

TrainConfig small_train() { return test::cpu_train(16, 10); }

TEST(Conditional, TheLayersTakeTheCondition) {
  const ParamLayout layout(conditional_model(9, ConditionKind::classes, 4));
  EXPECT_EQ(layout.at("encoder.0.weight").shape, (std::vector<int>{12, 9 + 4}));
  EXPECT_EQ(layout.at("decoder.0.weight").shape, (std::vector<int>{10, 3 + 4}));
  EXPECT_EQ(layout.at("decoder.out.weight").shape, (std::vector<int>{9, 10}));
  ModelConfig linear = conditional_model(9, ConditionKind::covariates, 2);
  linear.encoder_hidden = linear.decoder_hidden = {};
  const ParamLayout l2(linear);
  EXPECT_EQ(l2.at("encoder.head.weight").shape, (std::vector<int>{6, 9 + 2}));
  EXPECT_EQ(l2.at("decoder.out.weight").shape, (std::vector<int>{9, 3 + 2}));
  ModelConfig bad = linear;
  bad.condition_dim = 0;
  test::expect_error([&] { bad.validate(); }, "is covariates but condition_dim (the condition's values per item) is 0");
}

TEST(Conditional, DataAndModelMustAgreeOnTheCondition) {
  const ModelConfig m = conditional_model(5, ConditionKind::classes, 3);
  auto b = make_backend(Device::cpu, m, small_train());
  b->set_parameters(init_parameters(b->layout(), m, 1));
  auto data = test::synthetic(12, 5, 3);
  test::expect_error([&] { b->evaluate(*data); },
                     "has no conditions but the model is conditioned on 3 classes: give the items' conditions too");
  std::vector<std::int64_t> labels(12);
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::int64_t>(i % 3);
  Dataset four = *data;
  attach_condition(four, condition_from_labels(labels, 4, "four.idx"));
  test::expect_error([&] { b->evaluate(four); },
                     "conditions 'four.idx' are 4 classes per item but the model is conditioned on 3 classes");
  Dataset cov = *data;
  attach_condition(cov, condition_from_covariates(std::vector<float>(36, 0.5f), 12, 3, "cov.npy"));
  test::expect_error([&] { b->evaluate(cov); }, "are 3 covariates per item but the model is conditioned on 3 classes");
  attach_condition(*data, condition_from_labels(labels, 3, "labels.idx"));
  const LossSums s = b->evaluate(*data);
  EXPECT_TRUE(std::isfinite(s.loss));
  EXPECT_EQ(s.count, 12);

  // decode_means takes one condition per code.
  const std::vector<float> z(6, 0.1f);  // two codes
  test::expect_error([&] { b->decode_means(z); }, "decode_means: the model is conditioned on 3 classes, got no condition");
  test::expect_error([&] { b->decode_means(z, class_condition(1, 3, 3)); }, "decode_means: 2 codes but 3 conditions");
  const auto a = b->decode_means(z, class_condition(0, 3, 2)), c = b->decode_means(z, class_condition(2, 3, 2));
  ASSERT_EQ(a.size(), 10u);
  EXPECT_NE(a, c) << "the class changes the decoder's means";

  // An unconditional model refuses conditions.
  ModelConfig plain = m;
  plain.condition = ConditionKind::none;
  plain.condition_dim = 0;
  auto p = make_backend(Device::cpu, plain, small_train());
  test::expect_error([&] { p->evaluate(*data); }, "comes with conditions ('labels.idx') but the model is not a conditional one");
  test::expect_error([&] { p->decode_means(z, class_condition(0, 3, 2)); }, "given to a model that is not a conditional one");
}

// The encoder sees the condition: the same item under two classes has two posteriors.
TEST(Conditional, TheEncoderAndTheLossSeeTheCondition) {
  const ModelConfig m = conditional_model(5, ConditionKind::classes, 2);
  auto b = make_backend(Device::cpu, m, small_train());
  b->set_parameters(init_parameters(b->layout(), m, 1));
  auto data = test::synthetic(6, 5, 3);
  Dataset zero = *data, one = *data;
  attach_condition(zero, class_condition(0, 2, 6));
  attach_condition(one, class_condition(1, 2, 6));
  EXPECT_NE(b->encode(zero, 0, 6), b->encode(one, 0, 6));
  EXPECT_NE(b->evaluate(zero).loss, b->evaluate(one).loss);
}

// Fashion-MNIST on the CPU path: after 10 epochs each the labels have helped the model; the
// conditional run, resumed to 30 epochs, draws samples of class k that a classifier of the
// real images (softmax regression) takes for class k.
TEST(Conditional, FashionMnistLabelsLowerTheElboAndSamplesHaveTheirClass) {
  const std::string labels = default_fashion_mnist_labels(true);
  if (!std::filesystem::exists(labels)) GTEST_SKIP() << "no Fashion-MNIST (apt-get install dataset-fashion-mnist)";
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "40 epochs of Fashion-MNIST take minutes under AddressSanitizer; the plain build runs this check, "
                  "and the smaller tests here run the same code under it";
#endif
  test::TempDir dir;
  TrainConfig t;
  t.device = Device::cpu;
  t.epochs = 10;
  t.out = dir.file("plain");
  std::ostringstream log;
  const TrainResult plain = train(ModelConfig{}, t, log);
  t.out = dir.file("conditional");
  t.condition_path = labels;
  const TrainResult conditional = train(ModelConfig{}, t, log);
  ASSERT_EQ(conditional.epochs.size(), static_cast<std::size_t>(t.epochs)) << log.str();
  const double gain = plain.epochs.back().test_loss - conditional.epochs.back().test_loss;
  EXPECT_GT(gain, 1.0) << "test -ELBO " << plain.epochs.back().test_loss << " without the labels, "
                       << conditional.epochs.back().test_loss << " with them";
  ResumeOptions more;
  more.epochs = 30;
  const TrainResult longer = resume(dir.file("conditional"), more, log);
  ASSERT_EQ(longer.epochs.size(), 20u) << log.str();

  // The classifier: softmax regression on the real training images (plain minibatch SGD).
  const Dataset train_images = read_dataset(default_fashion_mnist(true));
  const std::vector<std::uint8_t> train_labels = read_idx_labels(labels);
  const int D = train_images.dim, K = 10;
  std::vector<float> w(static_cast<std::size_t>(K) * (D + 1), 0.0f);  // (K, D + 1): weights, then the bias
  const auto scores = [&](const float* x, float* s) {
    for (int k = 0; k < K; ++k) {
      const float* wk = w.data() + static_cast<std::size_t>(k) * (D + 1);
      float a = wk[D];
      for (int j = 0; j < D; ++j) a += wk[j] * x[j];
      s[k] = a;
    }
  };
  std::vector<float> x(D), s(K), g(w.size());
  const int batch = 100;
  for (int epoch = 0; epoch < 3; ++epoch)
    for (std::int64_t b0 = 0; b0 < train_images.count; b0 += batch) {
      std::fill(g.begin(), g.end(), 0.0f);
      for (std::int64_t i = b0; i < b0 + batch; ++i) {
        train_images.row(i, x.data());
        scores(x.data(), s.data());
        const float top = *std::max_element(s.begin(), s.end());
        float z = 0;
        for (float& v : s) z += (v = std::exp(v - top));
        for (int k = 0; k < K; ++k) {
          const float d = s[k] / z - (k == train_labels[static_cast<std::size_t>(i)] ? 1.0f : 0.0f);
          float* gk = g.data() + static_cast<std::size_t>(k) * (D + 1);
          for (int j = 0; j < D; ++j) gk[j] += d * x[j];
          gk[D] += d;
        }
      }
      for (std::size_t q = 0; q < w.size(); ++q) w[q] -= 0.1f * g[q] / batch;
    }
  const auto classify = [&](const float* xi) {
    scores(xi, s.data());
    return static_cast<int>(std::max_element(s.begin(), s.end()) - s.begin());
  };
  // It knows the real test images (about 0.8 of them): the yardstick is sound.
  const Dataset test_images = read_dataset(default_fashion_mnist(false));
  const std::vector<std::uint8_t> test_labels = read_idx_labels(default_fashion_mnist_labels(false));
  int known = 0;
  for (std::int64_t i = 0; i < test_images.count; ++i) {
    test_images.row(i, x.data());
    known += classify(x.data()) == test_labels[static_cast<std::size_t>(i)];
  }
  EXPECT_GT(known, 0.75 * test_images.count) << "the classifier labels " << known << " real test images right";

  const SavedModel saved = load_model(dir.file("conditional") + "/model.safetensors");
  ASSERT_EQ(saved.model.condition, ConditionKind::classes);
  ASSERT_EQ(saved.model.condition_dim, 10);
  auto b = make_backend(Device::cpu, saved.model, saved.train);
  b->set_parameters(saved.params);
  const int n = 200;
  int right = 0;
  std::ostringstream per_class;
  for (int k = 0; k < K; ++k) {
    const std::vector<float> drawn = prior_samples(*b, saved.model, n, 100 + k, class_condition(k, K, n));
    int r = 0;
    for (int i = 0; i < n; ++i) r += classify(drawn.data() + static_cast<std::size_t>(i) * D) == k;
    per_class << " " << k << ":" << r;
    right += r;
  }
  std::cout << "[ info ] test -ELBO " << plain.epochs.back().test_loss << " without the labels, "
            << conditional.epochs.back().test_loss << " with them (10 epochs); classifier on the real test images "
            << known << " of " << test_images.count << "; samples labelled as their class after 30 epochs: " << right
            << " of " << n * K << " (" << per_class.str() << " )\n";
  EXPECT_GE(right, 0.8 * n * K) << "samples labelled as their class, of " << n << " per class:" << per_class.str();
}

}  // namespace
}  // namespace vae
