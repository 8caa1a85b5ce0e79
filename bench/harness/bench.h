// `vae bench`: the same model on the same data on every available implementation (the CUDA
// backend, the CPU backend, PyTorch eager and torch.compile through bench/torch_reference.py),
// side by side in one run, as a table on stdout and JSON in a file.
//
// Per implementation and case: ms per step (median over repeats of K steps, after warm-up;
// a repeat ends with the backend's one host read, so device work is included), samples/s,
// seconds per epoch measured over real epochs, the test -ELBO after those epochs, and ratios
// against the CPU path and against PyTorch eager.
//
// The timed repeats are interleaved: every implementation of a case is set up and warmed up
// first (PyTorch in a subprocess that times blocks of steps on request, torch_reference.py
// --serve), then repeat r times K steps of each in turn, the order reversed every other round.
// A stretch of noise on a shared machine then falls on all of them alike, and the ratios are
// the medians of the per-round ratios. The epochs run afterwards, one implementation at a time.
//
// The pieces, in the order a run uses them: run.cpp (the options, the cases, the rounds, the
// table and the JSON), contender.h (one implementation of one case: the backends in this
// process, contender.cpp; PyTorch in a subprocess, torch_contender.cpp).
#pragma once
#include <cstdint>
#include <string>

#include "vae/options.h"

namespace vae::bench {

struct Options {
  std::string impls = "auto";
  std::string batches = "128,1024,4096";
  std::string models = "ref,wide";
  bool models_given = false;   // --models on the command line, not its default
  GivenOptions model_options;  // vae train's model options given instead of --models: one model
  int steps = 100;
  int repeats = 10;
  int warmup = 10;
  int epochs = 1;
  int threads = 0;
  int torch_threads = 1;
  int block_warmup_ms = 25;
  int settle_ms = 100;  // an idle pause before each block: the last contender's threads stop spinning
  std::string python;
  std::string torch_script = std::string(VAE_SOURCE_DIR) + "/bench/torch_reference.py";
  std::string train_path, test_path;
  std::string json_path = "bench.json";
  std::uint64_t seed = 1;
};

// The whole benchmark: the options checked before anything is read, the cases, their rounds,
// the table on stdout and the JSON. Throws vae::Error for a bad option, and after the table
// and the JSON when an implementation failed.
void run(const Options& options);

}  // namespace vae::bench
