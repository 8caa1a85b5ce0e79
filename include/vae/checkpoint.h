// Checkpoints: everything a run needs to continue bit for bit, in one safetensors file
// that Python's safetensors and numpy can read:
//   <name>                 the parameters by name (F32), as model.safetensors always held
//   optimizer.m.<name>, optimizer.v.<name>   the optimizer's two state slots (F32; Adam's
//                          moments, SGD's momentum buffer in m, RMSprop's squared average in v)
//   optimizer.step         updates of the encoder and the decoder group (I64, shape [2])
//   position               [epoch, batch, step] of the next step (I64, shape [3])
//   partial_sums           the epoch's training loss sums so far: [loss, recon, kl, count] (F64)
//   rng                    [seed, step] (I64): the noise is counter-based (cuRAND Philox), so
//                          the seed and the step are its whole state
//   standardize.mean, standardize.std   the --standardize scaling (F32, [D]), when the
//                          configuration says standardize (vae/standardize.h)
//   metadata: "config" (config.json's text), "format" = "vae-checkpoint-1"
// Files are written atomically (temporary file, fsync, rename).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "vae/backend.h"
#include "vae/config.h"
#include "vae/layout.h"
#include "vae/standardize.h"

namespace vae {

struct TrainPosition {
  int epoch = 0;          // epoch of the next step (0-based)
  int batch = 0;          // index of the next step's batch within that epoch
  std::int64_t step = 0;  // global index of the next step = steps done
  LossSums partial;       // training loss sums of that epoch so far
};

struct Checkpoint {
  ModelConfig model;
  TrainConfig train;
  std::vector<float> params;  // flat, ParamLayout(model)
  OptimizerState optimizer;
  TrainPosition position;
  Standardization scaling;  // --standardize: the training set's (Backend::standardization()); else empty
};

// Writes ck to `path` (atomically). ck.params and both slots of ck.optimizer must hold
// ParamLayout(ck.model).total() values (Backend::parameters() and optimizer_state()).
// config_json is the file's "config" metadata, from which load_checkpoint rebuilds the model:
// config_to_json(ck.model, ck.train[, device name]), or empty for exactly that; one that
// describes another configuration is refused. Throws vae::Error.
void save_checkpoint(const std::string& path, const Checkpoint& ck, const std::string& config_json);
// Throws vae::Error naming the file when it is not a complete checkpoint (a file written by
// save_model holds no optimizer state: read it with load_model). Make the backend from the
// checkpoint's own ck.model and ck.train: Backend::set_parameters checks only the count.
Checkpoint load_checkpoint(const std::string& path);

}  // namespace vae
