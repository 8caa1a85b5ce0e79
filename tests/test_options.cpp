// The option table (vae/options.h): what it generates (text forms, parsing, ranges and their
// messages, conditions, config.json) and that each option's flag is spelled in one source
// file, the table's, so that an option is added or renamed in one place.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "source_literals.h"
#include "test_util.h"
#include "vae/config.h"
#include "vae/options.h"

namespace vae {
namespace {

namespace fs = std::filesystem;

TEST(Options, TheTableIsConsistent) {
  std::set<std::string> keys, flags;
  for (const Option& o : options()) {
    EXPECT_TRUE(keys.insert(std::string(o.key) + (o.section == OptionSection::model ? "@model" : "@train")).second)
        << o.key;
    if (o.flag) {
      EXPECT_TRUE(flags.insert(o.flag).second) << o.flag;
    } else {
      EXPECT_NE(std::string(o.label), "") << o.key << ": an option without a flag needs a label for messages";
    }
    if (o.applies.key) {
      EXPECT_NO_THROW(option(o.applies.key)) << o.key;
      EXPECT_FALSE(o.applies.values.empty()) << o.key;
      for (const auto& v : o.applies.values) {  // each value is one the other option can take
        ModelConfig m;
        TrainConfig t;
        EXPECT_NO_THROW(option(o.applies.key).set(v, m, t)) << o.key << " applies when " << o.applies.key << " = " << v;
      }
    }
    if (o.range.hi_key) {
      EXPECT_NO_THROW(option(o.range.hi_key)) << o.key;
    }
    if (o.resumable) {
      EXPECT_NE(o.flag, nullptr) << o.key;
    }
  }
  EXPECT_THROW(option("latnet"), Error);
  EXPECT_THROW(flag_of("input_dim"), Error);  // a configuration-file field
  EXPECT_EQ(flag_of("kl_warmup"), "--kl-warmup");
}

// Every option's default is in its range, and its text reads back as the same value.
TEST(Options, DefaultsAreValidAndTheirTextReadsBack) {
  const ModelConfig m0;
  const TrainConfig t0;
  for (const Option& o : options()) {
    EXPECT_NO_THROW(o.check(m0, t0)) << o.key;
    const std::string text = o.text(m0, t0);
    EXPECT_EQ(o.parse_error(text), "") << o.key << " = '" << text << "'";
    ModelConfig m;
    TrainConfig t;
    o.set(text, m, t);
    EXPECT_EQ(o.text(m, t), text) << o.key;
  }
}

TEST(Options, TextValuesAreParsedAndRefusedWithTheirRange) {
  ModelConfig m;
  TrainConfig t;
  option("hidden").set("512,256", m, t);
  EXPECT_EQ(m.encoder_hidden, (std::vector<int>{512, 256}));
  option("hidden").set("none", m, t);
  EXPECT_TRUE(m.encoder_hidden.empty());
  option("lr").set("0.25", m, t);
  EXPECT_EQ(t.optimizer.lr, 0.25);
  option("kl_warmup").set("5000000000", m, t);
  EXPECT_EQ(t.kl_warmup_steps, 5000000000);
  option("activation").set("tanh", m, t);
  EXPECT_EQ(m.activation, Activation::tanh);
  option("learn_sigma").set("true", m, t);
  EXPECT_TRUE(m.learn_sigma);
  const std::pair<const char*, std::pair<const char*, const char*>> bad[] = {
      {"latent", {"0", "--latent: must be an integer in [1, 65536], got '0'"}},
      {"latent", {"4,5", "--latent: must be an integer in [1, 65536], got '4,5'"}},
      {"batch", {"1.5", "--batch: must be an integer in [1, 1048576], got '1.5'"}},
      {"seed", {"-1", "--seed: must be an integer in [0, 18446744073709551615], got '-1'"}},
      {"threads", {"-1", "--threads: must be an integer >= 0 (0 = all cores), got '-1'"}},
      {"lr", {"0", "--lr: must be a finite number > 0, got '0'"}},
      {"lr", {"inf", "--lr: must be a finite number > 0, got 'inf'"}},
      {"beta", {"nan", "--beta: must be a finite number >= 0, got 'nan'"}},
      {"momentum", {"1", "--momentum: must be in [0, 1), got '1'"}},
      {"lr_gamma", {"0", "--lr-gamma: must be in (0, 1], got '0'"}},
      {"hidden", {"400,,3", "--hidden: '400,,3' is not a comma-separated list of positive integers"}},
      {"optimizer", {"adagrad", "--optimizer: unknown optimizer 'adagrad'; expected one of: adam, adamw, sgd, rmsprop"}},
      {"learn_sigma", {"yes", "--learn-sigma: must be true or false, got 'yes'"}},
      {"adam_beta1", {"1", "adam_beta1: must be in [0, 1), got '1'"}},  // no flag: the key names it
  };
  for (const auto& [key, value_message] : bad) {
    const auto& [value, message] = value_message;
    test::expect_error([&] { option(key).set(value, m, t); }, message);
  }
}

// validate() names the member a library caller sets and the flag a CLI user gives (or, with
// no flag, what the field is).
TEST(Options, ValidateNamesTheMemberAndTheFlag) {
  const std::pair<std::function<void(ModelConfig&, TrainConfig&)>, const char*> bad[] = {
      {[](ModelConfig& m, TrainConfig&) { m.input_dim = 0; },
       "input_dim (the data's values per item) must be >= 1, got 0"},
      {[](ModelConfig& m, TrainConfig&) { m.decoder_hidden = {0}; },
       "decoder_hidden (--decoder-hidden): widths must be in [1, 1000000], got 0"},
      {[](ModelConfig& m, TrainConfig&) { m.sigma = -1; }, "sigma (--sigma) must be a finite number > 0, got -1"},
      {[](ModelConfig&, TrainConfig& t) { t.optimizer.eps = 0; },
       "optimizer.eps (the optimizer's epsilon) must be a finite number > 0, got 0"},
      {[](ModelConfig&, TrainConfig& t) { t.optimizer.lr_step_epochs = 0; },
       "optimizer.lr_step_epochs (--lr-step) must be >= 1 epoch, got 0"},
      {[](ModelConfig&, TrainConfig& t) { t.kl_warmup_steps = -1; }, "kl_warmup_steps (--kl-warmup) must be >= 0 steps, got -1"},
      {[](ModelConfig&, TrainConfig& t) { t.m_steps = 0; }, "m_steps (--m-steps) must be >= 1, got 0"},
      {[](ModelConfig&, TrainConfig& t) { t.threads = -2; }, "threads (--threads) must be >= 0 (0 = all cores), got -2"},
      {[](ModelConfig&, TrainConfig& t) { t.epochs = -1; }, "epochs (--epochs) must be in [0, 1073741824], got -1"},
      {[](ModelConfig&, TrainConfig& t) { t.optimizer.lr_gamma = 1.5; },
       "optimizer.lr_gamma (--lr-gamma) must be in (0, 1], got 1.5"},
  };
  for (const auto& [spoil, message] : bad) {
    ModelConfig m;
    TrainConfig t;
    spoil(m, t);
    test::expect_error([&] {
      m.validate();
      t.validate();
    }, message);
  }
}

TEST(Options, GivenOptionsApplyWhereTheyHaveAnEffect) {
  auto given = [](std::vector<std::pair<const char*, const char*>> kv) {
    GivenOptions g;
    for (const auto& [k, v] : kv) g.emplace_back(&option(k), v);
    return g;
  };
  ModelConfig m;
  TrainConfig t;
  apply_options(given({{"hidden", "512,256"}, {"optimizer", "sgd"}, {"momentum", "0.5"}}), m, t);
  EXPECT_EQ(m.decoder_hidden, (std::vector<int>{256, 512}));  // --hidden alone: the decoder mirrors it
  EXPECT_EQ(t.optimizer.momentum, 0.5);
  apply_options(given({{"hidden", "64"}, {"decoder_hidden", "32,16"}}), m, t);
  EXPECT_EQ(m.decoder_hidden, (std::vector<int>{32, 16}));
  test::expect_error([&] { apply_options(given({{"lr_min", "0.0001"}}), m, t); },
                     "--lr-min is the cosine schedule's last learning rate (--lr-schedule cosine); it has no effect "
                     "with --lr-schedule constant");
  test::expect_error([&] { apply_options(given({{"stream_data", "true"}, {"device", "cpu"}}), m, t); },
                     "--stream-data is for the CUDA backend (--device auto or cuda); it has no effect with --device cpu");
  EXPECT_NO_THROW(apply_options(given({{"stream_data", "true"}, {"device", "cuda"}}), m, t));
}

// config.json keeps every recorded option, and reads back the same configuration.
TEST(Options, ConfigJsonRoundTripsEveryRecordedOption) {
  ModelConfig m;
  TrainConfig t;
  m.input_dim = 37;
  m.encoder_hidden = {9, 7};
  m.decoder_hidden = {};
  m.latent = 3;
  m.activation = Activation::softplus;
  m.likelihood = Likelihood::gaussian;
  m.sigma = 0.37;
  m.learn_sigma = true;
  m.samples = 4;
  m.beta = 0.5;
  t.train_path = "/a/train.npy";
  t.test_path = "/a/test.npy";
  t.test_labels_path = "/a/labels.idx";
  t.epochs = 7;
  t.batch = 33;
  t.eval_batch = 99;
  t.optimizer = {Optimizer::rmsprop, 0.003, 0.8, 0.95, 1e-6, 0.02, 0.7, 0.9, LrSchedule::step, 1e-5, 2, 0.3};
  t.objective = Objective::iwae;
  t.iw_k = 11;
  t.kl_warmup_steps = 123456789012;
  t.schedule = Schedule::alternating;
  t.e_steps = 2;
  t.m_steps = 3;
  t.seed = 18446744073709551615ull;
  t.binarize = Binarize::dynamic;
  t.device = Device::cpu;
  t.precision = Precision::fp64;
  t.threads = 2;
  t.stream_data = true;
  t.checkpoint_every = 4;
  t.on_nan = NanPolicy::skip;
  t.out = "/a/out";
  t.overwrite = true;  // a run control: not recorded
  const std::string json = config_to_json(m, t);
  ModelConfig m2;
  TrainConfig t2;
  config_from_json(json, m2, t2);
  for (const Option& o : options()) {
    const std::string want = o.recorded ? o.text(m, t) : o.text(ModelConfig{}, TrainConfig{});
    EXPECT_EQ(o.text(m2, t2), want) << o.key;
  }
  EXPECT_EQ(config_to_json(m2, t2), json);
  EXPECT_EQ(json.find("overwrite"), std::string::npos);
  // A field of the wrong JSON type is named.
  for (const auto& [text, phrase] : std::vector<std::pair<std::string, std::string>>{
           {R"({"model": {"sigma": "big"}})", "configuration field model.sigma must be a number, got a JSON string"},
           {R"({"model": {"learn_sigma": 1}})", "configuration field model.learn_sigma must be true or false"},
           {R"({"train": {"optimizer": 3}})", "configuration field train.optimizer must be a string, got a JSON number"},
           {R"({"train": {"optimizer": "adagrad"}})", "configuration field train.optimizer: unknown optimizer 'adagrad'"}})
    test::expect_error([&] { config_from_json(text, m2, t2); }, phrase);
}

TEST(SourceLiterals, FindsStringsOutsideCommentsAndDocumentation) {
  const auto cpp = test::cpp_literals(
      "// \"--a\" in a comment\n/* \"--b\" */ f(\"--c\", 'x', '\"');\nauto s = R\"x(--d \"q\")x\";\n"
      "cmd->footer(\"--e\" \"--f\"); flag_of(\"kl\"); g(\"--h\\\"\");\n");
  std::vector<std::pair<std::string, std::string>> got;
  for (const auto& l : cpp) got.emplace_back(l.text, l.call);
  EXPECT_EQ(got, (std::vector<std::pair<std::string, std::string>>{
                     {"--c", "f"}, {"--d \"q\"", ""}, {"--e", "footer"}, {"--f", "footer"}, {"kl", "flag_of"},
                     {"--h\\\"", "g"}}));
  const auto py = test::python_literals("\"\"\"--doc\n--more\"\"\"\nx = '--a'  # '--b'\ny = \"--c\"\n");
  ASSERT_EQ(py.size(), 2u);
  EXPECT_EQ(py[0].text, "--a");
  EXPECT_EQ(py[1].text, "--c");
  EXPECT_TRUE(test::mentions_flag("use --k 5", "--k"));
  EXPECT_FALSE(test::mentions_flag("use --kl-warmup 5", "--k"));
  EXPECT_FALSE(test::mentions_flag("--kk", "--k"));
}

// Each option's flag is spelled in the table's file and nowhere else in the sources (tests
// and documentation aside; a command's help prose is documentation), except where another
// command has an option of its own by the same name. Every option("key") and flag_of("key")
// names a key of the table.
TEST(SourceLiterals, EachFlagIsSpelledInOneSourceFile) {
  const fs::path root = VAE_SOURCE_DIR;
  const std::string table = "host/options_table.cpp";
  const std::map<std::string, std::set<std::string>> homonyms = {
      {"--out", {"host/cli/tools.cpp"}},                          // the PNG or JSON a model tool writes
      {"--seed", {"host/cli/tools.cpp"}},                         // vae sample's prior draws
      {"--condition", {"host/cli/tools.cpp"}},  // the model tools' conditions of --data; vae sample's class
      // gradvar's one batch; bench's list of batch sizes (declared, then read)
      {"--batch", {"host/cli/tools.cpp", "host/cli/bench.cpp", "bench/harness/run.cpp"}},
      {"--epochs", {"host/cli/bench.cpp", "bench/harness/run.cpp"}},  // bench's epochs after the timing
  };
  std::map<std::string, std::set<std::string>> where;
  std::set<std::string> keys_used;
  int files = 0;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    const std::string rel = fs::relative(it->path(), root).string();
    const std::string name = it->path().filename().string();
    if (it->is_directory()) {
      if (name[0] == '.' || rel == "tests" || rel == "docs" || name.rfind("build", 0) == 0 || rel == "runs")
        it.disable_recursion_pending();
      continue;
    }
    const std::string ext = it->path().extension().string();
    const bool py = ext == ".py";
    if (!py && ext != ".h" && ext != ".hpp" && ext != ".cpp" && ext != ".cc" && ext != ".cu" && ext != ".cuh") continue;
    std::ifstream f(it->path());
    std::stringstream ss;
    ss << f.rdbuf();
    ++files;
    for (const test::Literal& l : py ? test::python_literals(ss.str()) : test::cpp_literals(ss.str())) {
      if (l.call == "footer") continue;
      if (l.call == "option" || l.call == "flag_of") keys_used.insert(l.text);
      for (const Option& o : options())
        if (o.flag && test::mentions_flag(l.text, o.flag)) where[o.flag].insert(rel);
    }
  }
  ASSERT_GT(files, 50) << "the sources were not found under " << root;
  for (const Option& o : options()) {
    if (!o.flag) continue;
    std::set<std::string> expected = {table};
    if (homonyms.count(o.flag)) expected.insert(homonyms.at(o.flag).begin(), homonyms.at(o.flag).end());
    std::string extra;
    for (const auto& file : where[o.flag])
      if (!expected.count(file)) extra += " " + file;
    EXPECT_EQ(extra, "") << o.flag << " is spelled outside " << table << ":" << extra
                         << " (name it with flag_of(\"" << o.key << "\") or option(\"" << o.key << "\"))";
    EXPECT_TRUE(where[o.flag].count(table)) << o.flag;
  }
  for (const auto& key : keys_used) EXPECT_NO_THROW(option(key)) << "option(\"" << key << "\") names no option";
}

}  // namespace
}  // namespace vae
