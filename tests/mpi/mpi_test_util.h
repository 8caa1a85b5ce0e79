// What the data-parallel suites share (tests/mpi on the CPU backend, tests/cuda's on the GPU
// or the emulator), all run under mpirun: a backend with or without the ranks, and steps from
// the seeded stream, each rank taking its shard of every batch.
#pragma once
#include <memory>
#include <vector>

#include "vae/vae.h"

namespace vae::test {

inline Communicator* comm() { return world(); }

// Backend `b` with the ranks (or alone), the seed's parameters and the training data.
inline std::unique_ptr<Backend> ranked(std::unique_ptr<Backend> b, const ModelConfig& m, const TrainConfig& t,
                                       const std::shared_ptr<Dataset>& data, bool distributed) {
  if (distributed) b->set_communicator(comm());
  b->set_parameters(init_parameters(b->layout(), m, t.seed));
  b->set_train_data(data);
  return b;
}
inline std::unique_ptr<Backend> ranked_backend(Device d, const ModelConfig& m, const TrainConfig& t,
                                               const std::shared_ptr<Dataset>& data, bool distributed) {
  return ranked(make_backend(d, m, t), m, t, data, distributed);
}

// `n` steps from the seeded stream (this rank's shard of each batch when distributed), every
// step's loss sums; the parameters after the first step into *after_first if given, and each
// step's gradient (the global batch's, summed across the ranks) into *grads if given.
inline std::vector<LossSums> ranked_steps(Backend& b, std::int64_t count, const TrainConfig& t, int n,
                                          bool distributed, std::vector<float>* after_first = nullptr,
                                          std::vector<std::vector<float>>* grads = nullptr) {
  BatchStream stream(count, t.batch, t.seed);
  std::vector<LossSums> out;
  Batch batch;
  for (int k = 0; k < n; ++k) {
    stream.next_rolling(batch);
    b.train_step(distributed ? shard_of(batch, comm()->rank(), comm()->size()) : batch);
    out.push_back(b.take_train_sums());
    if (k == 0 && after_first) *after_first = b.parameters();
    if (grads) grads->push_back(b.gradients());
  }
  return out;
}

}  // namespace vae::test
