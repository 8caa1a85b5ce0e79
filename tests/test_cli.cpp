// The `vae` binary as a user meets it: bad input ends with one clear line on stderr and a
// non-zero exit, never a crash or a hang, and never overwrites good output.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "vae/checkpoint.h"
#include "vae/distributed.h"
#include "vae/io.h"
#include "vae/layout.h"
#include "vae/options.h"

namespace {

using vae::test::metrics_loss_rows;
std::vector<std::string> loss_rows(const std::string& csv) { return metrics_loss_rows(csv); }

struct CliRun {
  int status = -1;     // exit code, or 128+signal
  std::string output;  // stdout
  std::string error;   // stderr
};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

CliRun run(const std::string& args) {
  // `timeout` turns a hang into exit code 124.
  static int counter = 0;
  const std::string err = std::filesystem::temp_directory_path() /
                          ("vae-cli-stderr-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  const std::string cmd = "timeout 120 " + std::string(VAE_CLI_PATH) + " " + args + " 2>" + err;
  CliRun r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  std::size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.error = slurp(err);
  std::filesystem::remove(err);
  return r;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// Fails cleanly: exit 1 (not a signal, not a timeout) and stderr is one line that names
// the problem.
void expect_clean_failure(const CliRun& r, const std::string& phrase, const std::string& args) {
  EXPECT_EQ(r.status, 1) << args << "\n" << r.output << r.error;
  EXPECT_EQ(r.error.rfind("vae: error: ", 0), 0u) << args << "\nstderr: " << r.error;
  EXPECT_EQ(std::count(r.error.begin(), r.error.end(), '\n'), 1) << "the error should be one line: " << r.error;
  EXPECT_NE(r.error.find(phrase), std::string::npos) << args << "\nexpected '" << phrase << "' in: " << r.error;
}

std::string idx(unsigned char type, std::initializer_list<unsigned> dims, std::size_t payload) {
  std::string b = {0, 0, static_cast<char>(type), static_cast<char>(dims.size())};
  for (unsigned d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<char>((d >> s) & 0xFF));
  b.append(payload, '\x40');
  return b;
}

// An IDX labels file of n labels 0, 1, 2, 0, 1, ...
std::string idx_labels(unsigned n) {
  std::string b = idx(0x08, {n}, 0);
  for (unsigned i = 0; i < n; ++i) b.push_back(static_cast<char>(i % 3));
  return b;
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    good_ = dir_.file("good.idx");
    write_bytes(good_, idx(0x08, {40, 4, 4}, 40 * 16));
  }
  std::string base(const std::string& train, const std::string& test) {
    return "train --device cpu --epochs 1 --batch 8 --hidden 8 --latent 2 --train " + train + " --test " + test +
           " --out " + dir_.file("out");
  }
  // Starts `vae ARGS --out OUT` (its output in OUT.log), sends signal SIG (INT, TERM, ...) once
  // its first epoch is in metrics.csv, and returns its exit status.
  int interrupt_after_first_epoch(const std::string& args, const std::string& out, const std::string& sig) {
    const std::string script = "timeout 120 " + std::string(VAE_CLI_PATH) + " " + args + " --out " + out + " >" +
                               out + ".log 2>&1 & pid=$!; "
                               "while [ \"$({ wc -l < " + out + "/metrics.csv; } 2>/dev/null || echo 0)\" -lt 2 ]; do "
                               "sleep 0.01; kill -0 $pid 2>/dev/null || break; done; kill -" + sig + " $pid; wait $pid; echo $?";
    FILE* p = popen(("bash -c '" + script + "'").c_str(), "r");
    if (!p) return -1;
    char buf[64] = {};
    const std::size_t n = fread(buf, 1, sizeof buf - 1, p);
    pclose(p);
    return std::atoi(std::string(buf, n).c_str());
  }
  vae::test::TempDir dir_;
  std::string good_;
};

TEST_F(Cli, HelpAnswersQuestions) {
  const CliRun r = run("train --help");  // CLI11 prints help on stdout
  EXPECT_EQ(r.status, 0);
  for (const char* s : {"--train", "--test", "--epochs", "--batch", "--lr", "--seed", "--out", "--device",
                        "--hidden", "--decoder-hidden", "--activation", "--likelihood", "--sigma", "--latent",
                        "--samples", "--beta", "--binarize", "metrics.csv", "dataset-fashion-mnist"})
    EXPECT_NE(r.output.find(s), std::string::npos) << "help does not mention " << s;
  EXPECT_EQ(run("--help").status, 0);
  EXPECT_NE(run("").status, 0);  // a command is required
  // `vae help CMD` is `vae CMD --help`; `vae help` is `vae --help`.
  const CliRun h = run("help train");
  EXPECT_EQ(h.status, 0);
  EXPECT_EQ(h.output, r.output);
  const CliRun top = run("help");
  EXPECT_EQ(top.status, 0);
  EXPECT_EQ(top.output, run("--help").output);
  EXPECT_NE(top.output.find("vae help <command>"), std::string::npos) << top.output;
  expect_clean_failure(run("help foo"), "unknown command 'foo'", "vae help foo");
  expect_clean_failure(run("help train bench"), "'vae help' takes at most one command", "vae help train bench");
  expect_clean_failure(run("help --epochs"), "'vae help' takes at most one command name", "vae help --epochs");
}

TEST_F(Cli, BadDataFilesFailCleanly) {
  struct Case {
    const char* name;
    std::string bytes;
    const char* phrase;
  };
  const Case cases[] = {
      {"empty.idx", "", "is empty"},
      {"magic.idx", std::string("\x1f\x8b\x08\x03", 4) + std::string(20, '\0'), "corrupt or truncated gzip"},
      {"badmagic.idx", std::string("\x01\x02\x08\x03", 4) + std::string(20, '\0'), "not an IDX file"},
      {"float.idx", idx(0x0D, {4, 2, 2}, 64), "not supported"},
      {"truncated.idx", idx(0x08, {40, 4, 4}, 100), "truncated"},
      {"labels.idx", idx(0x08, {40}, 40), "labels file"},
      {"zero.idx", idx(0x08, {0, 4, 4}, 0), "holds no images"},
      {"huge.idx", idx(0x08, {0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, 10), "overflow"},
      {"nan.npy", std::string("\x93NUMPY\x01\x00\x76\x00", 10) +
                      "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }" + std::string(58, ' ') + "\n" +
                      std::string("\x00\x00\xc0\x7f\x00\x00\x00\x00", 8),
       "not finite"},
  };
  for (const auto& c : cases) {
    const std::string path = dir_.file(c.name);
    write_bytes(path, c.bytes);
    const std::string args = base(path, good_);
    expect_clean_failure(run(args), c.phrase, args);
    expect_clean_failure(run(base(good_, path)), c.phrase, args);  // as the test set too
  }
  expect_clean_failure(run(base(dir_.file("missing.idx"), good_)), "no such file", "missing file");
  expect_clean_failure(run(base(dir_.path(), good_)), "directory", "a directory");
  const std::string other = dir_.file("other.idx");
  write_bytes(other, idx(0x08, {40, 3, 3}, 40 * 9));
  expect_clean_failure(run(base(good_, other)), "9 features", "train/test dims differ");
}

// An NPY file of float32 values of the given shape text, such as "(40, 2)".
std::string npy_f32(const std::string& shape, const std::vector<float>& values) {
  return vae::test::npy_file("<f4", shape, values.data(), values.size() * sizeof(float));
}

// A conditional run from the command line, the tools on it, and every bad condition: one line
// naming the file, and nothing written.
TEST_F(Cli, ConditionalRunsAndTheirBadConditions) {
  const std::string labels = dir_.file("labels.idx"), out = dir_.file("out");
  write_bytes(labels, idx_labels(40));  // classes 0, 1, 2
  const std::string args = base(good_, good_) + " --condition " + labels;
  expect_clean_failure(run(args), "--condition '" + labels + "' is given without --test-condition", "no test condition");
  expect_clean_failure(run(base(good_, good_) + " --test-condition " + labels), "is given without --condition",
                       "a test condition alone");
  write_bytes(dir_.file("seven.idx"), idx_labels(7));
  expect_clean_failure(run(args + " --test-condition " + dir_.file("seven.idx")),
                       "conditions '" + dir_.file("seven.idx") + "' hold 7 rows but the data '" + good_ + "' has 40 items",
                       "7 conditions for 40 items");
  std::string five = idx_labels(40);
  five.back() = 5;
  write_bytes(dir_.file("five.idx"), five);
  expect_clean_failure(run(args + " --test-condition " + dir_.file("five.idx")),
                       "label 5 at item 39 is not one of the 3 classes 0..2", "an unknown class");
  std::vector<float> cov(80, 0.5f);
  write_bytes(dir_.file("cov.npy"), npy_f32("(40, 2)", cov));
  cov[13] = NAN;
  write_bytes(dir_.file("nan.npy"), npy_f32("(40, 2)", cov));
  const std::string covs = base(good_, good_) + " --condition " + dir_.file("cov.npy") + " --test-condition ";
  expect_clean_failure(run(covs + dir_.file("nan.npy")), "nan.npy': value nan at item 6, feature 1 is not finite",
                       "NaN covariates");
  expect_clean_failure(run(covs + labels), "holds 3 classes per item but --condition", "labels against covariates");
  expect_clean_failure(run(covs + dir_.file("cov.npy") + " --binarize dynamic"), "--binarize dynamic draws 0 or 1",
                       "covariates binarized");
  expect_clean_failure(run(covs + dir_.file("cov.npy") + " --condition-classes 4"),
                       "--condition-classes is for class labels", "classes of covariates");
  EXPECT_FALSE(std::filesystem::exists(out)) << "a refused run writes nothing";

  // A run with labels; the checkpoint records the condition; the tools read the test conditions.
  const CliRun r = run(args + " --test-condition " + labels + " --epochs 2");
  ASSERT_EQ(r.status, 0) << r.error;
  const auto config = nlohmann::json::parse(slurp(out + "/config.json"));
  EXPECT_EQ(config["model"]["condition_kind"], "classes");
  EXPECT_EQ(config["model"]["condition_dim"], 3);
  EXPECT_TRUE(std::filesystem::exists(out + "/samples.png"));
  const vae::SavedModel saved = vae::load_model(out + "/model.safetensors");
  EXPECT_EQ(saved.model.condition, vae::ConditionKind::classes);
  EXPECT_EQ(saved.model.condition_dim, 3);
  const std::string tool = " --model " + out + " --device cpu";
  EXPECT_EQ(run("sample" + tool + " --condition 2 --n 4 --out " + dir_.file("s.png")).status, 0);
  EXPECT_EQ(run("sample" + tool + " --out " + dir_.file("all.png")).status, 0);
  EXPECT_EQ(run("reconstruct" + tool + " --out " + dir_.file("r.png")).status, 0);
  EXPECT_EQ(run("interpolate" + tool + " --from 0 --to 1 --out " + dir_.file("i.png")).status, 0);
  const CliRun e = run("eval" + tool + " --iw 3 --data " + good_ + " --condition " + labels);
  EXPECT_EQ(e.status, 0) << e.error;
  expect_clean_failure(run("sample" + tool + " --condition 3 --out " + dir_.file("x.png")),
                       "class 3 is not one of the model's 3 classes 0..2", "sample of an unknown class");
  expect_clean_failure(run("sample" + tool + " --condition three --out " + dir_.file("x.png")),
                       "--condition 'three' is neither a class of the model's 3 (0..2) nor a file", "a word");
  expect_clean_failure(run("eval" + tool + " --data " + good_), "give --condition, the conditions of --data",
                       "data without conditions");
  expect_clean_failure(run("eval" + tool + " --data " + good_ + " --condition " + dir_.file("cov.npy")),
                       "holds 2 covariates per item but the model is conditioned on 3 classes", "covariates for classes");
  EXPECT_FALSE(std::filesystem::exists(dir_.file("x.png")));
  // Resuming reads the conditions again and goes on.
  const CliRun more = run("train --resume " + out + " --epochs 3");
  EXPECT_EQ(more.status, 0) << more.error;
  EXPECT_NE(more.output.find("epoch 3/3"), std::string::npos) << more.output;

  // An unconditional model refuses a condition.
  const std::string plain = dir_.file("plain");
  ASSERT_EQ(run(base(good_, good_).replace(base(good_, good_).find(out), out.size(), plain)).status, 0);
  expect_clean_failure(run("sample --model " + plain + " --device cpu --condition 1 --out " + dir_.file("x.png")),
                       "the model is not a conditional one", "a condition for an unconditional model");
}

TEST_F(Cli, BadOptionsFailCleanly) {
  const std::string ok = base(good_, good_);
  for (const auto& [flag, phrase] : std::vector<std::pair<std::string, std::string>>{
           {"--activation swish", "unknown activation 'swish'"},
           {"--likelihood laplace", "unknown likelihood"},
           {"--device tpu", "unknown device"},
           {"--binarize maybe", "unknown binarization"},
           {"--hidden 400,,3", "comma-separated"},
           {"--hidden 0", "comma-separated"},
           {"--lr -1", "--lr"},
           {"--likelihood gaussian --sigma 0", "--sigma"},
           {"--beta nan", "--beta"}}) {
    const CliRun r = run(ok + " " + flag);
    expect_clean_failure(r, phrase, flag);
  }
  // What the command-line parser refuses is one line too, naming the flag and what it takes.
  for (const auto& [flag, phrase] : std::vector<std::pair<std::string, std::string>>{
           {"--batch 0", "--batch: must be an integer in [1, 1048576], got '0'"},
           {"--batch abc", "--batch: must be an integer in [1, 1048576], got 'abc'"},
           {"--batch 1.5", "--batch: must be an integer"},
           {"--latent 0", "--latent: must be an integer in [1, 65536]"},
           {"--samples 0", "--samples: must be an integer in [1, 4096]"},
           {"--epochs -1", "--epochs: must be an integer in [0, "},
           {"--epochs abc", "--epochs: must be an integer"},
           {"--seed -1", "--seed: must be an integer in [0, 18446744073709551615], got '-1'"},
           {"--seed 18446744073709551616", "--seed: must be an integer"},
           {"--lr abc", "--lr"},
           {"--bogus", "--bogus"}}) {
    const CliRun r = run(ok + " " + flag);
    expect_clean_failure(r, phrase, flag);
    EXPECT_NE(r.error.find("vae train --help"), std::string::npos) << r.error;
  }
  expect_clean_failure(run("foo --epochs 1"), "unknown command 'foo' (commands: train, bench, eval", "vae foo");
  expect_clean_failure(run("eval"), "--model is required", "vae eval");
  expect_clean_failure(run(""), "A subcommand is required", "vae");
}

TEST_F(Cli, FlagsTheConfigurationWouldIgnoreAreErrors) {
  const std::string ok = base(good_, good_);
  for (const auto& [flags, phrase] : std::vector<std::pair<std::string, std::string>>{
           {"--optimizer adam --weight-decay 0.1", "--weight-decay is AdamW's decoupled weight decay (--optimizer "
                                                   "adamw); it has no effect with --optimizer adam"},
           {"--optimizer adamw --momentum 0.5", "--momentum is SGD's momentum (--optimizer sgd); it has no effect with "
                                               "--optimizer adamw"},
           {"--rmsprop-alpha 0.9", "--rmsprop-alpha is RMSprop's smoothing (--optimizer rmsprop)"},
           {"--lr-min 0.0001", "--lr-min is the cosine schedule's last learning rate (--lr-schedule cosine); it has "
                               "no effect with --lr-schedule constant"},
           {"--lr-schedule cosine --lr-gamma 0.3", "--lr-gamma is the step schedule's factor (--lr-schedule step); it "
                                                   "has no effect with --lr-schedule cosine"},
           {"--lr-step 2", "--lr-step"},
           {"--k 5", "--k is the IWAE objective's sample count (--objective iwae); it has no effect with --objective "
                     "elbo"},
           {"--e-steps 2", "it has no effect with --schedule joint"},
           {"--m-steps 2", "--m-steps"},
           {"--sigma 0.3", "--sigma is the Gaussian decoder's standard deviation (--likelihood gaussian); it has no "
                           "effect with --likelihood bernoulli"},
           {"--learn-sigma", "--learn-sigma is for the Gaussian decoder"},
           {"--standardize", "--standardize is for the Gaussian decoder (--likelihood gaussian); it has no effect with "
                             "--likelihood bernoulli"},
           {"--likelihood gaussian --log1p-input", "--log1p-input is for the count likelihoods (--likelihood poisson, "
                                                   "negative-binomial or zinb); it has no effect with --likelihood gaussian"},
           {"--likelihood poisson --binarize static",
            "--binarize static turns pixels in [0, 1] into 0 or 1; counts for --likelihood poisson are not pixels"},
           {"--likelihood gaussian --standardize --binarize dynamic",
            "--binarize dynamic and --standardize do not go together"},
           {"--stream-data",
            "--stream-data is for the CUDA backend (--device auto or cuda); it has no effect with --device cpu"}}) {
    const std::string args = ok + " " + flags;
    expect_clean_failure(run(args), phrase, args);
    EXPECT_FALSE(std::filesystem::exists(dir_.file("out"))) << args << ": nothing is written for a refused run";
  }
  // The same flags where they do apply, given directly or through --config.
  int k = 0;
  for (const std::string flags :
       {"--optimizer adamw --weight-decay 0.1", "--optimizer sgd --momentum 0.5 --lr 0.01",
        "--optimizer rmsprop --rmsprop-alpha 0.9", "--lr-schedule cosine --lr-min 0.0001",
        "--lr-schedule step --lr-step 2 --lr-gamma 0.3", "--objective iwae --k 3",
        "--schedule alternating --e-steps 2 --m-steps 1", "--likelihood gaussian --sigma 0.3 --learn-sigma"}) {
    const std::string out = dir_.file("ok" + std::to_string(k++));
    const std::string args = "train --device cpu --epochs 1 --batch 8 --hidden 8 --latent 2 --train " + good_ +
                             " --test " + good_ + " --out " + out + " " + flags;
    const CliRun r = run(args);
    EXPECT_EQ(r.status, 0) << args << "\n" << r.error;
    EXPECT_TRUE(std::filesystem::exists(out + "/model.safetensors")) << args;
  }
  const std::string first = dir_.file("ok0");  // its config.json says adamw: --weight-decay applies
  const CliRun r = run("train --config " + first + "/config.json --epochs 1 --weight-decay 0.2 --out " +
                       dir_.file("from-config"));
  EXPECT_EQ(r.status, 0) << r.error;
  EXPECT_NE(slurp(dir_.file("from-config") + "/config.json").find("\"weight_decay\": 0.2"), std::string::npos);
}

// --print-config: the configuration the flags make, as config.json holds it; nothing is read
// or written, and --config takes it back.
TEST_F(Cli, PrintConfigShowsWhatARunWouldUseAndWritesNothing) {
  const std::string out = dir_.file("out");
  const std::string args = "train --train " + good_ + " --test " + good_ + " --out " + out +
                           " --hidden 12,6 --latent 7 --optimizer sgd --momentum 0.5 --print-config";
  const CliRun r = run(args);
  ASSERT_EQ(r.status, 0) << r.error;
  EXPECT_FALSE(std::filesystem::exists(out));
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j.at("model").at("latent"), 7);
  EXPECT_EQ(j.at("model").at("decoder_hidden"), nlohmann::json::array({6, 12}));
  EXPECT_EQ(j.at("train").at("optimizer"), "sgd");
  EXPECT_EQ(j.at("train").at("momentum"), 0.5);
  EXPECT_EQ(j.at("train").at("train"), std::filesystem::absolute(good_).lexically_normal().string());
  write_bytes(dir_.file("printed.json"), r.output);
  const CliRun again = run("train --config " + dir_.file("printed.json") + " --out " + out + " --print-config");
  ASSERT_EQ(again.status, 0) << again.error;
  EXPECT_EQ(again.output, r.output);
  expect_clean_failure(run("train --resume " + out + " --print-config"), "--print-config prints a new run's", "resume");
  expect_clean_failure(run(args + " --k 3"), "--k is the IWAE objective's sample count", "--k with elbo");
}

// Every option of the table is a flag of vae train that takes its default's text form (or a
// path), given with the setting that makes it apply.
TEST_F(Cli, EveryOptionOfTheTableIsAFlag) {
  const vae::ModelConfig m0;
  const vae::TrainConfig t0;
  std::string args = "train --print-config --train " + good_ + " --test " + good_;
  for (const vae::Option& o : vae::options()) {
    if (!o.flag || !o.recorded) continue;
    const std::string text = o.text(m0, t0).empty() ? good_ : o.text(m0, t0);  // a path where the default is none
    std::string one = args + " " + o.flag + (o.is_switch() ? "" : " '" + text + "'");
    if (o.applies.key) one += " " + vae::flag_of(o.applies.key) + " " + o.applies.values.back();
    const std::string key = o.key;  // a condition comes with the test items' conditions, and they with it
    if (key == "condition" || key == "test_condition")
      one += " " + vae::flag_of(key == "condition" ? "test_condition" : "condition") + " " + good_;
    const CliRun r = run(one);
    ASSERT_EQ(r.status, 0) << one << "\n" << r.error;
    const auto j = nlohmann::json::parse(r.output);
    const char* section = o.section == vae::OptionSection::model ? "model" : "train";
    ASSERT_TRUE(j.at(section).contains(o.key)) << o.key;
    if (o.is_switch()) {
      EXPECT_EQ(j.at(section).at(o.key), true) << one;
    }
  }
}

TEST_F(Cli, RunsReadEveryInputFirstAndRecordAbsolutePaths) {
  const std::string labels = dir_.file("labels.idx");
  write_bytes(labels, idx_labels(40));
  const std::string z2 = "train --device cpu --epochs 1 --batch 8 --hidden 8 --latent 2 --test " + good_ + " --train ";
  const std::string out = dir_.file("out");
  // A bad --test-labels is refused before training, naming the flag; nothing is written.
  expect_clean_failure(run(z2 + good_ + " --test-labels " + dir_.file("none.idx") + " --out " + out),
                       "--test-labels: cannot open", "missing labels");
  write_bytes(dir_.file("seven.idx"), idx_labels(7));
  expect_clean_failure(run(z2 + good_ + " --test-labels " + dir_.file("seven.idx") + " --out " + out),
                       "holds 7 labels but --test", "7 labels for 40 items");
  EXPECT_FALSE(std::filesystem::exists(out));
  // Data of one's own with no --test: an error, not a quiet evaluation on Fashion-MNIST's test set.
  const std::string no_test = "--device cpu --epochs 1 --batch 8 --hidden 8 --latent 4 --train " + good_;
  expect_clean_failure(run("train " + no_test + " --out " + out),
                       "train_path (--train) '" + good_ + "' is given without test_path (--test)", "--train alone");
  expect_clean_failure(run("bench --impl cpu --steps 2 --repeats 1 --warmup 0 --epochs 0 --batch 8 --json " +
                           dir_.file("b.json") + " " + no_test.substr(no_test.find("--hidden"))),
                       "is given without test_path (--test)", "bench --train alone");
  EXPECT_FALSE(std::filesystem::exists(out));

  // A relative --train is recorded as an absolute path, so the tools find it from elsewhere.
  const std::string relative = std::filesystem::relative(good_).string();
  ASSERT_NE(relative.front(), '/');
  const CliRun t = run(z2 + relative + " --test-labels " + labels + " --beta 0.5 --out " + out);
  ASSERT_EQ(t.status, 0) << t.error;
  const std::string absolute = std::filesystem::absolute(relative).lexically_normal().string();
  EXPECT_NE(slurp(out + "/config.json").find("\"train\": \"" + absolute + "\""), std::string::npos)
      << slurp(out + "/config.json");
  // With --beta the console says the loss is not the ELBO.
  EXPECT_NE(t.output.find("test recon+0.5*KL "), std::string::npos) << t.output;
  EXPECT_EQ(t.output.find("-ELBO"), std::string::npos) << t.output;
  ASSERT_TRUE(std::filesystem::exists(out + "/latent.png"));

  // --overwrite with a 3-D latent space: the old run's latent.png goes with it.
  const CliRun o = run("train --device cpu --epochs 1 --batch 8 --hidden 8 --latent 3 --train " + good_ + " --test " +
                       good_ + " --out " + out + " --overwrite");
  ASSERT_EQ(o.status, 0) << o.error;
  EXPECT_FALSE(std::filesystem::exists(out + "/latent.png"));
  EXPECT_TRUE(std::filesystem::exists(out + "/elbo.png"));

  // --resume takes the run's model.safetensors as well as its OUT.
  const CliRun r = run("train --resume " + out + "/model.safetensors --epochs 2");
  EXPECT_EQ(r.status, 0) << r.error;
  EXPECT_NE(r.output.find("epoch 2/2"), std::string::npos) << r.output;

  // A configuration file with a misspelt field, or no object at all, is refused, naming the file.
  std::string config = slurp(out + "/config.json");
  config.replace(config.find("\"latent\""), 8, "\"latnet\"");
  write_bytes(dir_.file("bad.json"), config);
  expect_clean_failure(run("train --config " + dir_.file("bad.json") + " --out " + dir_.file("c1")),
                       "--config '" + dir_.file("bad.json") + "': the configuration's model section has an unknown "
                       "field 'latnet'", "misspelt field");
  write_bytes(dir_.file("array.json"), "[]");
  expect_clean_failure(run("train --config " + dir_.file("array.json") + " --out " + dir_.file("c1")),
                       "the configuration must be a JSON object", "array");
}

// A vae built without MPI (the sanitize preset builds one) started by mpirun with several
// processes says so in one line instead of training N copies.
TEST_F(Cli, UnderMpirunWithoutMpiSaysSo) {
  if (vae::mpi_built()) GTEST_SKIP() << "this vae has MPI: tests/mpi runs it under mpirun";
  setenv("OMPI_COMM_WORLD_SIZE", "2", 1);  // what mpirun -np 2 gives each process
  const CliRun r = run(base(good_, good_));
  unsetenv("OMPI_COMM_WORLD_SIZE");
  expect_clean_failure(r, "process 0 of 2: started by mpirun with 2 processes, but this vae was built without MPI",
                       "mpirun, no MPI");
  EXPECT_FALSE(std::filesystem::exists(dir_.file("out")));
}

TEST_F(Cli, ZeroEpochsWritesTheInitialModel) {
  const CliRun r = run(base(good_, good_) + " --epochs 0");
  ASSERT_EQ(r.status, 0) << r.error;
  EXPECT_TRUE(std::filesystem::exists(dir_.file("out") + "/model.safetensors"));
  EXPECT_TRUE(std::filesystem::exists(dir_.file("out") + "/samples.png"));
  EXPECT_FALSE(std::filesystem::exists(dir_.file("out") + "/elbo.png"));
}

TEST_F(Cli, RefusesToOverwriteARunAndKeepsItsFiles) {
  const std::string args = base(good_, good_);
  const CliRun first = run(args);
  ASSERT_EQ(first.status, 0) << first.output << first.error;
  EXPECT_NE(first.output.find("device: cpu"), std::string::npos);
  const std::string model = dir_.file("out") + "/model.safetensors";
  std::ifstream f1(model, std::ios::binary);
  const std::string before((std::istreambuf_iterator<char>(f1)), {});
  ASSERT_FALSE(before.empty());
  expect_clean_failure(run(args + " --seed 2"), "already holds files", "second run into OUT");
  std::ifstream f2(model, std::ios::binary);
  EXPECT_EQ(std::string((std::istreambuf_iterator<char>(f2)), {}), before);
  EXPECT_EQ(run(args + " --seed 2 --overwrite").status, 0);
}

TEST_F(Cli, CudaWithoutAGpuIsOneClearLine) {
  const CliRun probe = run(base(good_, good_) + " --device auto --out " + dir_.file("auto"));
  ASSERT_EQ(probe.status, 0) << probe.output << probe.error;
  if (probe.output.find("device: cuda") != std::string::npos) GTEST_SKIP() << "a GPU is usable here";
  EXPECT_NE(probe.output.find("device: cpu (auto: no usable GPU"), std::string::npos) << probe.output;
  expect_clean_failure(run(base(good_, good_) + " --device cuda --out " + dir_.file("cuda")), "--device cuda",
                       "--device cuda");
  // The model tools take --device too.
  ASSERT_EQ(run(base(good_, good_) + " --device cpu --epochs 1 --out " + dir_.file("m")).status, 0);
  expect_clean_failure(run("sample --model " + dir_.file("m") + " --device cuda --out " + dir_.file("s.png")),
                       "--device cuda", "sample --device cuda");
  EXPECT_FALSE(std::filesystem::exists(dir_.file("s.png")));
}

// --mmap: the same run as a read, and the log says how the data came in (a .gz cannot be mapped).
TEST_F(Cli, MmapGivesTheSameRunAndSaysHowTheDataWasRead) {
  std::string bytes = idx(0x08, {40, 4, 4}, 0);
  for (int i = 0; i < 40 * 16; ++i) bytes.push_back(static_cast<char>((i * 37) % 256));
  const std::string raw = dir_.file("raw.idx");
  write_bytes(raw, bytes);
  const std::string args = "train --device cpu --epochs 2 --batch 8 --hidden 8 --latent 2 --train " + raw + " --test " + raw;
  const CliRun read = run(args + " --out " + dir_.file("read"));
  const CliRun mapped = run(args + " --mmap --out " + dir_.file("mapped"));
  ASSERT_EQ(read.status, 0) << read.error;
  ASSERT_EQ(mapped.status, 0) << mapped.error;
  EXPECT_EQ(read.output.find("memory-mapped"), std::string::npos) << read.output;
  EXPECT_NE(mapped.output.find(raw + " (memory-mapped)"), std::string::npos) << mapped.output;
  EXPECT_EQ(loss_rows(slurp(dir_.file("mapped") + "/metrics.csv")), loss_rows(slurp(dir_.file("read") + "/metrics.csv")));
  ASSERT_EQ(std::system(("gzip -k " + raw).c_str()), 0);
  const CliRun gz = run(args + " --train " + raw + ".gz --mmap --out " + dir_.file("gz"));
  ASSERT_EQ(gz.status, 0) << gz.error;
  EXPECT_NE(gz.output.find(raw + ".gz (compressed: read whole, not memory-mapped)"), std::string::npos) << gz.output;
  EXPECT_EQ(loss_rows(slurp(dir_.file("gz") + "/metrics.csv")), loss_rows(slurp(dir_.file("read") + "/metrics.csv")));
}

TEST_F(Cli, SigtermStopsLikeCtrlCWithItsOwnStatus) {
  const std::string args = base(good_, good_) + " --epochs 1000000";
  const std::string out = dir_.file("term");
  const int status = interrupt_after_first_epoch(args, out, "TERM");
  const std::string log = slurp(dir_.file("term.log"));
  ASSERT_EQ(status, 128 + 15) << log;
  EXPECT_NE(log.find("interrupted at epoch"), std::string::npos) << log;
  EXPECT_NO_THROW(vae::load_checkpoint(out + "/model.safetensors"));
}

TEST_F(Cli, CtrlCWritesACheckpointAndResumeFinishesTheSameRun) {
  std::string big = idx(0x08, {6000, 16, 16}, 0);
  for (std::size_t i = 0; i < 6000u * 256; ++i) big.push_back(static_cast<char>((i * 2654435761u) >> 24));
  const std::string data = dir_.file("big.idx");
  write_bytes(data, big);
  const std::string args = "train --device cpu --epochs 4 --batch 16 --hidden 128 --latent 8 --train " + data +
                           " --test " + data + " --eval-batch 2000";
  const CliRun whole = run(args + " --out " + dir_.file("whole"));
  ASSERT_EQ(whole.status, 0) << whole.error;

  // Interrupt a second run once its first epoch is done.
  const std::string out = dir_.file("cut");
  const int status = interrupt_after_first_epoch(args, out, "INT");
  const std::string log = slurp(dir_.file("cut.log"));
  if (status == 0) GTEST_SKIP() << "the run finished before the interrupt arrived";
  ASSERT_EQ(status, 130) << log;
  EXPECT_NE(log.find("interrupted at epoch"), std::string::npos) << log;
  EXPECT_NE(log.find("vae train --resume " + out), std::string::npos) << log;

  const CliRun rest = run("train --resume " + out);
  ASSERT_EQ(rest.status, 0) << rest.error;
  EXPECT_NE(rest.output.find("resuming on cpu"), std::string::npos) << rest.output;
  EXPECT_EQ(loss_rows(slurp(out + "/metrics.csv")), loss_rows(slurp(dir_.file("whole") + "/metrics.csv")));
  const vae::Checkpoint a = vae::load_checkpoint(out + "/model.safetensors");
  const vae::Checkpoint b = vae::load_checkpoint(dir_.file("whole") + "/model.safetensors");
  EXPECT_EQ(a.params, b.params);
  EXPECT_EQ(a.optimizer.m, b.optimizer.m);
  EXPECT_EQ(a.optimizer.v, b.optimizer.v);
  EXPECT_EQ(a.optimizer.step, b.optimizer.step);

  // Only the schedule-free options may change on resume.
  expect_clean_failure(run("train --resume " + out + " --lr 0.1"), "--lr cannot change", "resume --lr");
}

TEST_F(Cli, ConfigFileUnderTheFlags) {
  const CliRun a = run(base(good_, good_) + " --activation tanh --samples 2 --seed 5");
  ASSERT_EQ(a.status, 0) << a.error;
  const std::string cfg = dir_.file("out") + "/config.json";
  const CliRun b = run("train --config " + cfg + " --out " + dir_.file("again"));
  ASSERT_EQ(b.status, 0) << b.error;
  EXPECT_EQ(loss_rows(slurp(dir_.file("out") + "/metrics.csv")), loss_rows(slurp(dir_.file("again") + "/metrics.csv")));
  const CliRun c = run("train --config " + cfg + " --seed 6 --out " + dir_.file("other"));
  ASSERT_EQ(c.status, 0) << c.error;
  EXPECT_NE(loss_rows(slurp(dir_.file("out") + "/metrics.csv")), loss_rows(slurp(dir_.file("other") + "/metrics.csv")));
  EXPECT_NE(slurp(dir_.file("other") + "/config.json").find("\"seed\": 6"), std::string::npos);
  expect_clean_failure(run("train --config " + dir_.file("missing.json")), "cannot open", "missing config");
  write_bytes(dir_.file("bad.json"), "{\"model\": {\"latent\": \"many\"}}");
  expect_clean_failure(run("train --config " + dir_.file("bad.json")), "model.latent must be an integer", "bad config");
}

bool is_png(const std::string& path) {
  const std::string b = slurp(path);
  return b.size() > 8 && b.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0;
}

TEST_F(Cli, ModelToolsWorkOnATrainedRun) {
  const std::string labels = dir_.file("labels.idx");
  write_bytes(labels, idx_labels(40));
  const std::string out = dir_.file("run");
  const CliRun t = run("train --device cpu --epochs 2 --batch 8 --hidden 8 --latent 2 --train " + good_ + " --test " +
                       good_ + " --test-labels " + labels + " --out " + out);
  ASSERT_EQ(t.status, 0) << t.error;
  for (const char* f : {"/samples.png", "/reconstructions.png", "/elbo.png", "/latent.png"})
    EXPECT_TRUE(is_png(out + f)) << f;

  const CliRun e = run("eval --model " + out + " --iw 20 --device cpu --json " + dir_.file("eval.json"));
  ASSERT_EQ(e.status, 0) << e.error;
  for (const char* s : {"-ELBO", "log p(x) IWAE", "log p(x) prior", "gap IWAE - ELBO"})
    EXPECT_NE(e.output.find(s), std::string::npos) << s << "\n" << e.output;
  const std::string j = slurp(dir_.file("eval.json"));
  EXPECT_NE(j.find("\"log_px_iwae\""), std::string::npos) << j;

  const CliRun g = run("gradvar --model " + out + " --batch 8 --repeats 20 --device cpu");
  ASSERT_EQ(g.status, 0) << g.error;
  EXPECT_NE(g.output.find("encoder.head.weight"), std::string::npos) << g.output;

  const std::string png = dir_.file("x.png");
  for (const std::string& cmd : {"sample --model " + out + " --n 9 --out " + png,
                                 "sample --model " + out + " --n 9 --device cpu --out " + png,
                                 "reconstruct --model " + out + " --n 5 --out " + png,
                                 "reconstruct --model " + out + " --n 5 --device cpu --out " + png,
                                 "interpolate --model " + out + " --from 2 --to 7 --steps 5 --out " + png,
                                 "scatter --model " + out + " --labels " + labels + " --out " + png,
                                 "plot --run " + out + " --out " + png}) {
    std::filesystem::remove(png);
    const CliRun r = run(cmd);
    EXPECT_EQ(r.status, 0) << cmd << "\n" << r.error;
    EXPECT_TRUE(is_png(png)) << cmd;
  }
  expect_clean_failure(run("eval --model " + dir_.file("nope")), "no such file", "missing model");
  expect_clean_failure(run("interpolate --model " + out + " --from 0 --to 99 --out " + png), "--from and --to",
                       "index out of range");
  expect_clean_failure(run("plot --run " + good_ + " --out " + png), "not a vae metrics.csv", "not a metrics file");
  const std::string other = dir_.file("other.idx");
  write_bytes(other, idx(0x08, {10, 3, 3}, 90));
  expect_clean_failure(run("eval --model " + out + " --data " + other), "features per item", "dims mismatch");
  // A model with a larger latent space has no 2-D scatter.
  ASSERT_EQ(run(base(good_, good_) + " --latent 3 --out " + dir_.file("z3")).status, 0);
  expect_clean_failure(run("scatter --model " + dir_.file("z3") + " --labels " + labels + " --out " + png),
                       "2-D latent", "scatter of Z=3");
}

// `vae bench` with a stand-in for bench/torch_reference.py --serve: the protocol (warm-up,
// "@ready", "steps K" -> "@ms T", "end", the JSON after the epochs) and the per-round pairing
// of the ratios are checked against numbers the stand-in chose; a stand-in that fails at any
// point gives that implementation's row an error naming its exit and last line, while the
// other rows and the run go on.
class CliBench : public Cli {
 protected:
  void SetUp() override {
    Cli::SetUp();
    python_ = std::system("/usr/bin/python3 -c pass > /dev/null 2>&1") == 0 ? "/usr/bin/python3" : "python3";
    if (std::system((python_ + " -c pass > /dev/null 2>&1").c_str()) != 0) GTEST_SKIP() << "no python3 here";
  }
  // A stand-in whose behaviour is `mode`: ok (3, 1, 2 ms per step in its three blocks),
  // die_at_steps, never_ready, garbage (answers "@ms soon").
  std::string stand_in(const std::string& mode) {
    const std::string path = dir_.file(mode + ".py");
    std::ofstream(path) << "import json, sys\n"
                           "mode = '" << mode << "'\n"
                           "args = sys.argv[1:]\n"
                           "out = args[args.index('--json') + 1]\n"
                           "log = open(sys.argv[0] + '.log', 'w')\n"
                           "log.write(' '.join(a for a in args if a.startswith('--serve')) + '\\n')\n"
                           "print('stand-in starting', flush=True)\n"
                           "if mode == 'never_ready':\n"
                           "    print('cannot load the data', flush=True); sys.exit(2)\n"
                           "print('@ready', flush=True)\n"
                           "for line in sys.stdin:\n"
                           "    log.write(line); log.flush()\n"
                           "    if line.strip() == 'end': break\n"
                           "    if mode == 'die_at_steps':\n"
                           "        print('out of memory in the stand-in', flush=True); sys.exit(3)\n"
                           "    if mode == 'garbage':\n"
                           "        print('@ms soon', flush=True); continue\n"
                           "    print('a line of its own', flush=True)\n"
                           "    blocks = blocks + 1 if 'blocks' in dir() else 0\n"
                           "    print('@ms %.6f' % ([3.0, 1.0, 2.0][blocks % 3] * int(line.split()[1])), flush=True)\n"
                           "print('epoch 1/1 ...', flush=True)\n"
                           "json.dump({'torch_version': 'stand-in', 'device': 'cpu', 'threads': 1,\n"
                           "           'epochs': [{'seconds': 0.5, 'test_loss': 123.25}]}, open(out, 'w'))\n";
    return path;
  }
  CliRun bench(const std::string& impls, const std::string& script, const std::string& json) {
    return run("bench --impl " + impls + " --batch 8 --hidden 8 --latent 2 --steps 6 --repeats 3 --warmup 1 --epochs 1" +
               " --block-warmup-ms 7 --train " + good_ + " --test " + good_ + " --python " + python_ + " --torch-script " +
               script + " --json " + json);
  }
  static const nlohmann::json* row(const nlohmann::json& doc, const std::string& impl) {
    for (const auto& r : doc.at("results"))
      if (r.at("impl") == impl) return &r;
    return nullptr;
  }
  std::string python_;
};

TEST_F(CliBench, InterleavedRoundsPairTheRatios) {
  const std::string script = stand_in("ok"), json = dir_.file("bench.json");
  const CliRun r = bench("cpu,torch", script, json);
  ASSERT_EQ(r.status, 0) << r.output << r.error;
  EXPECT_NE(r.output.find("16-8-2"), std::string::npos) << "the model is named by its own widths\n" << r.output;
  // The stand-in was started in serve mode, and asked for 3 blocks of 6/3 timed steps after
  // 7 ms of untimed ones (--block-warmup-ms), then "end".
  EXPECT_EQ(slurp(script + ".log"), "--serve\nsteps 2 7\nsteps 2 7\nsteps 2 7\nend\n");
  const auto doc = nlohmann::json::parse(slurp(json));
  const auto* cpu = row(doc, "vae-cpu");
  const auto* torch = row(doc, "torch");
  ASSERT_TRUE(cpu && torch) << doc.dump(2);
  ASSERT_TRUE(cpu->at("ok").get<bool>()) << cpu->dump();
  ASSERT_TRUE(torch->at("ok").get<bool>()) << torch->dump();
  EXPECT_EQ(torch->at("ms_per_step_rounds"), nlohmann::json({3.0, 1.0, 2.0}));
  EXPECT_DOUBLE_EQ(torch->at("ms_per_step_median").get<double>(), 2.0);
  EXPECT_DOUBLE_EQ(torch->at("test_loss").get<double>(), 123.25);  // its JSON, read after "end"
  EXPECT_DOUBLE_EQ(torch->at("epoch_seconds").get<double>(), 0.5);
  EXPECT_NE(torch->at("device").get<std::string>().find("stand-in"), std::string::npos);
  // The CPU path's ratio against PyTorch: the median of the rounds' PyTorch ms / its ms (not
  // the ratio of the medians).
  const auto rounds = cpu->at("ms_per_step_rounds").get<std::vector<double>>();
  ASSERT_EQ(rounds.size(), 3u);
  const double torch_ms[3] = {3.0, 1.0, 2.0};
  std::vector<double> ratios;
  for (std::size_t i = 0; i < rounds.size(); ++i) {
    EXPECT_TRUE(std::isfinite(rounds[i]) && rounds[i] > 0) << rounds[i];
    ratios.push_back(torch_ms[i] / rounds[i]);
  }
  std::sort(ratios.begin(), ratios.end());
  EXPECT_NEAR(cpu->at("speedup_vs_torch").get<double>(), ratios[1], 1e-12 * ratios[1]);
  auto sorted = rounds;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_NEAR(cpu->at("ms_per_step_median").get<double>(), sorted[1], 1e-12 * sorted[1]);
  EXPECT_DOUBLE_EQ(torch->at("speedup_vs_torch").get<double>(), 1.0);
  EXPECT_TRUE(std::isfinite(cpu->at("test_loss").get<double>()));
}

// The table and the JSON hold every row, the failed one included; then the exit status and
// one line on stderr say that an implementation the user named failed.
TEST_F(CliBench, AFailingPyTorchSideIsARowNotACrash) {
  for (const auto& [mode, phrase] : std::vector<std::pair<std::string, std::string>>{
           {"die_at_steps", "exit 3: out of memory in the stand-in"},
           {"never_ready", "exit 2: cannot load the data"},
           {"garbage", "answered '@ms soon', expected a positive time"}}) {
    const std::string json = dir_.file(mode + ".json");
    const CliRun r = bench("cpu,torch", stand_in(mode), json);
    expect_clean_failure(r, phrase, mode);
    EXPECT_EQ(r.error.rfind("vae: error: torch failed in 1 of 1 case: ", 0), 0u) << r.error;
    EXPECT_EQ(r.error.find("vae-cpu"), std::string::npos) << "only the failed implementation is named: " << r.error;
    EXPECT_NE(r.output.find(phrase), std::string::npos) << mode << "\n" << r.output;
    const auto doc = nlohmann::json::parse(slurp(json));
    ASSERT_TRUE(row(doc, "torch") && row(doc, "vae-cpu"));
    EXPECT_FALSE(row(doc, "torch")->at("ok").get<bool>());
    EXPECT_NE(row(doc, "torch")->at("error").get<std::string>().find(phrase), std::string::npos);
    EXPECT_TRUE(row(doc, "vae-cpu")->at("ok").get<bool>()) << "the CPU path's row goes on";
    EXPECT_EQ(row(doc, "vae-cpu")->at("ms_per_step_rounds").size(), 3u);
  }
  // A script that is not there at all.
  const CliRun r = bench("torch", dir_.file("missing.py"), dir_.file("m.json"));
  expect_clean_failure(r, "torch failed in 1 of 1 case: exit 2", "missing script");
  EXPECT_NE(r.output.find("n/a: exit 2"), std::string::npos) << r.output;
  EXPECT_TRUE(std::filesystem::exists(dir_.file("m.json")));
  // A Python that is not there.
  const std::string args = "bench --impl torch --batch 8 --hidden 8 --latent 2 --steps 2 --repeats 1 --epochs 0" +
                           std::string(" --train ") + good_ + " --test " + good_ + " --python /nonexistent --json " +
                           dir_.file("p.json");
  const CliRun p = run(args);
  expect_clean_failure(p, "torch failed in 1 of 1 case: exit 127", args);
  EXPECT_NE(p.output.find("torch          n/a: exit 127"), std::string::npos) << p.output;
}

// Steps whose loss is not finite do no work: their row is n/a, saying why, not a time.
TEST_F(CliBench, AContenderWhoseStepsAreNotFiniteIsNotTimed) {
  const std::string big = dir_.file("big.idx"), json = dir_.file("bench.json");
  write_bytes(big, idx(0x08, {40, 4, 4}, 0) + std::string(640, '\xff'));  // counts of 255: the encoder overflows
  const CliRun r = run("bench --impl cpu --batch 8 --hidden 8 --latent 2 --steps 6 --repeats 3 --warmup 1 --epochs 0 "
                       "--likelihood poisson --train " + big + " --test " + big + " --json " + json);
  EXPECT_EQ(r.status, 1) << r.output << r.error;
  EXPECT_NE(r.output.find("n/a: 1 step(s) had a non-finite loss or gradient"), std::string::npos) << r.output;
  const auto doc = nlohmann::json::parse(slurp(json));
  const auto* cpu = row(doc, "vae-cpu");
  ASSERT_NE(cpu, nullptr);
  EXPECT_EQ(cpu->at("ok"), false);
  EXPECT_FALSE(cpu->contains("ms_per_step_median"));
}

TEST_F(CliBench, BadOptionsFailCleanly) {
  const std::string script = stand_in("ok");
  expect_clean_failure(bench("cpu,tpu", script, dir_.file("a.json")), "unknown implementation 'tpu'", "--impl");
  expect_clean_failure(run("bench --impl cpu --models huge --train " + good_ + " --test " + good_), "unknown model 'huge'",
                       "--models");
  expect_clean_failure(run("bench --impl cpu --block-warmup-ms -1 --train " + good_ + " --test " + good_),
                       "--block-warmup-ms", "--block-warmup-ms");
  expect_clean_failure(run("bench --impl cpu --repeats 0 --train " + good_ + " --test " + good_), "--repeats",
                       "--repeats");
  EXPECT_FALSE(std::filesystem::exists(dir_.file("a.json")));
  // Each bad number is named with its value, before any data is read or anything timed (the
  // missing data files would be the error otherwise, and stdout would hold the table's header).
  const std::string missing = " --train " + dir_.file("missing.idx") + " --test " + dir_.file("missing.idx");
  for (const auto& [flags, phrase] : std::vector<std::pair<std::string, std::string>>{
           {"--steps 0", "--steps must be >= 1, got 0"},
           {"--repeats -2", "--repeats must be >= 1, got -2"},
           {"--warmup -1", "--warmup must be >= 0, got -1"},
           {"--epochs -3", "--epochs must be >= 0, got -3"},
           {"--block-warmup-ms -5", "--block-warmup-ms must be >= 0, got -5"},
           {"--settle-ms -1", "--settle-ms must be >= 0, got -1"},
           {"--threads -1", "--threads must be >= 0 (0 = all cores), got -1"},  // as `vae train --threads`
           {"--torch-threads -1", "--torch-threads must be >= 0"},
           {"--models wide --hidden 32 --latent 4", "--models and --hidden cannot be combined"},
           {"--models ref --latent 4", "--models and --latent cannot be combined"},
           {"--impl cpu,cpu", "--impl: 'cpu,cpu' names vae-cpu twice"},
           {"--impl torch,cuda,vae-cuda", "names vae-cuda twice"},
           {"--impl auto,cpu", "auto is the default list and stands alone"},
           {"--json " + dir_.file("nodir") + "/b.json",
            "--json: cannot write '" + dir_.file("nodir") + "/b.json': no directory '" + dir_.file("nodir") + "'"},
           {"--json " + dir_.path(),
            "--json: cannot write '" + dir_.path() + "': it is a directory (give a file name)"}}) {
    const CliRun r = run("bench " + flags + missing);
    expect_clean_failure(r, phrase, flags);
    EXPECT_EQ(r.output, "") << flags << ": nothing is timed";
  }
  expect_clean_failure(run("bench --impl cpu --hidden 8 --latent 4,5 --train " + good_ + " --test " + good_),
                       "--latent: one latent size, got '4,5'", "--latent 4,5");
  // Data of different widths: both files named.
  const std::string other = dir_.file("other.idx");
  write_bytes(other, idx(0x08, {40, 3, 3}, 40 * 9));
  expect_clean_failure(run("bench --impl cpu --train " + good_ + " --test " + other),
                       "--test '" + other + "' has 9 features per item but --train '" + good_ + "' has 16", "dims");
}


// Without --impl the list holds what can run here: PyTorch that cannot run (no Python, no
// PyTorch, no torch.compile) is a skipped row and the exit status stays 0, while one that can
// run and then fails is a failure as when named. A named --impl cuda without a GPU fails.
TEST_F(CliBench, TheDefaultListSkipsWhatCannotRunHere) {
  const std::string common = " --batch 8 --hidden 8 --latent 2 --steps 6 --repeats 3 --warmup 1 --epochs 1 --train " +
                             good_ + " --test " + good_;
  const std::string json = dir_.file("auto.json");
  const CliRun none = run("bench" + common + " --python /nonexistent --json " + json);
  ASSERT_EQ(none.status, 0) << none.output << none.error;
  EXPECT_EQ(none.error, "");
  EXPECT_NE(none.output.find("torch          n/a: skipped: no PyTorch for /nonexistent"), std::string::npos)
      << none.output;
  EXPECT_NE(none.output.find("torch-compile  n/a: skipped: no PyTorch for /nonexistent"), std::string::npos)
      << none.output;
  const auto doc = nlohmann::json::parse(slurp(json));
  ASSERT_TRUE(row(doc, "torch") && row(doc, "vae-cpu"));
  EXPECT_TRUE(row(doc, "torch")->value("skipped", false)) << doc.dump(2);
  EXPECT_TRUE(row(doc, "vae-cpu")->at("ok").get<bool>());

  // A Python whose PyTorch has no torch.compile: its PyTorch row runs (the stand-in), the
  // torch.compile row is skipped.
  const std::string python = dir_.file("python-no-compile");
  std::ofstream(python) << "#!/bin/sh\n"
                           "if [ \"$1\" = -c ]; then echo '@torch 1.13-stand-in 0 1'; exit 0; fi\n"
                           "exec " << python_ << " \"$@\"\n";
  std::filesystem::permissions(python, std::filesystem::perms::owner_all);
  const std::string with = common + " --python " + python + " --json " + json;
  const CliRun ok = run("bench --impl auto" + with + " --torch-script " + stand_in("ok"));
  ASSERT_EQ(ok.status, 0) << ok.output << ok.error;
  EXPECT_NE(ok.output.find("torch-compile  n/a: skipped: PyTorch 1.13-stand-in has no torch.compile"),
            std::string::npos) << ok.output;
  EXPECT_TRUE(row(nlohmann::json::parse(slurp(json)), "torch")->at("ok").get<bool>());
  const CliRun died = run("bench" + with + " --torch-script " + stand_in("die_at_steps"));
  expect_clean_failure(died, "torch failed in 1 of 1 case: exit 3: out of memory in the stand-in", "auto, died");

  const CliRun cuda = run("bench --impl cuda" + common + " --json " + dir_.file("cuda.json"));
  if (cuda.output.find(", no GPU (") == std::string::npos) GTEST_SKIP() << "a GPU is usable here";
  expect_clean_failure(cuda, "vae-cuda failed in 1 of 1 case: --device cuda", "--impl cuda without a GPU");
  EXPECT_NE(cuda.output.find("vae-cuda       n/a: --device cuda"), std::string::npos) << cuda.output;
  EXPECT_TRUE(std::filesystem::exists(dir_.file("cuda.json")));
}

// The model tools: an out-of-range number names its flag and range, labels of other images and
// an output path that is a directory are refused before anything is written, and each tool's
// help ends with its own example.
TEST_F(Cli, ModelToolsRefuseWhatTheyCannotDoSensibly) {
  const std::string out = dir_.file("run");
  ASSERT_EQ(run(base(good_, good_) + " --out " + out).status, 0);
  const std::string labels = dir_.file("labels.idx");
  write_bytes(labels, idx_labels(40));
  const std::string fewer = dir_.file("fewer.idx");
  write_bytes(fewer, idx(0x08, {30, 4, 4}, 30 * 16));
  const std::string png = dir_.file("x.png");
  for (const auto& [args, phrase] : std::vector<std::pair<std::string, std::string>>{
           {"scatter --model " + out + " --data " + fewer + " --labels " + labels + " --out " + png,
            "--labels '" + labels + "' has 40 labels but --data '" + fewer + "' has 30 images"},
           {"scatter --model " + out + " --labels " + labels + " --points 0 --out " + png,
            "--points must be >= 1, got 0"},
           {"eval --model " + out + " --limit -1", "--limit must be >= 0 (0: all items), got -1"},
           {"reconstruct --model " + out + " --n 0 --out " + png, "--n must be in [1, 4096], got 0"},
           {"sample --model " + out + " --n 0 --out " + png, "--n must be in [1, 4096], got 0"},
           {"sample --model " + out + " --out " + out,
            "cannot write '" + out + "': it is a directory (give a file name)"},
           {"plot --run " + out + " --out " + out, "cannot write '" + out + "': it is a directory"}}) {
    expect_clean_failure(run(args), phrase, args);
    EXPECT_FALSE(std::filesystem::exists(png)) << args;
  }
  for (const auto& e : std::filesystem::directory_iterator(dir_.path()))
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << "a temporary file is left: " << e.path();
  EXPECT_NE(run("eval --help").output.find("(0: all items)"), std::string::npos);
  for (const std::string tool : {"sample", "reconstruct", "interpolate", "scatter", "plot"}) {
    const CliRun h = run(tool + " --help");
    EXPECT_EQ(h.status, 0) << tool;
    EXPECT_EQ(h.output.find("vae train --epochs 10"), std::string::npos) << tool << ": the top-level example\n"
                                                                          << h.output;
    EXPECT_NE(h.output.find("Example: vae " + tool + " "), std::string::npos) << tool << "\n" << h.output;
  }
}

// A model that records no data set (saved from Python, where the data are arrays): a tool
// without --data says which set it fell back to and that --data names another; the test set
// is the test set (the fallback once took the training set's file).
TEST_F(Cli, ModelToolsSayWhenTheModelRecordsNoData) {
  vae::Checkpoint ck;
  ck.model.input_dim = 16;
  ck.model.encoder_hidden = ck.model.decoder_hidden = {8};
  ck.model.latent = 2;
  ck.params = vae::init_parameters(vae::ParamLayout(ck.model), ck.model, 1);
  ck.optimizer.m.assign(ck.params.size(), 0.0f);
  ck.optimizer.v.assign(ck.params.size(), 0.0f);
  const std::string model = dir_.file("arrays.safetensors");
  vae::save_checkpoint(model, ck, "");
  const CliRun r = run("eval --model " + model + " --iw 2 --device cpu");
  const bool have_fashion = std::filesystem::exists("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz");
  expect_clean_failure(r, have_fashion ? "--data '/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz' has 784 "
                                         "features per item but the model expects 16 (Fashion-MNIST's test set: the "
                                         "model records none; --data names another)"
                                       : "(Fashion-MNIST's test set: the model records none; --data names another)",
                       "a model without data");
  EXPECT_EQ(run("eval --model " + model + " --iw 2 --device cpu --data " + good_).status, 0);
}

}  // namespace
