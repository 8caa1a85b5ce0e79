// Files the library writes and reads besides datasets: safetensors and PNG grids.
// Every writer writes a temporary file, fsyncs it and renames it over the target, so a
// failed write never leaves a half-written file where a good one was.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <vector>

#include "vae/config.h"
#include "vae/layout.h"
#include "vae/standardize.h"

namespace vae {

struct NamedTensor {
  std::string name;
  std::string dtype;  // "F32", "F64" or "I64"
  std::vector<std::int64_t> shape;
  std::vector<unsigned char> bytes;  // little-endian, C order
};

// A safetensors file (Hugging Face's format: a JSON header, then the tensors' bytes), written
// atomically. Throws vae::Error when a tensor's bytes do not match its dtype and shape.
void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata);
struct SafetensorsFile {
  std::vector<NamedTensor> tensors;
  std::map<std::string, std::string> metadata;
  const NamedTensor* find(const std::string& name) const;  // nullptr when absent
  // The "config" metadata of a file vae wrote, whose "format" metadata, if any, is one of
  // `formats` ("vae-checkpoint-1", "vae-model-1"); else vae::Error naming `path` and why.
  const std::string& vae_config(const std::string& path, std::initializer_list<const char*> formats) const;
};
// Reads any safetensors file with F32, F64 and I64 tensors; vae::Error names the file.
SafetensorsFile read_safetensors(const std::string& path);

// Model parameters by name (the layout's views) with the configuration as metadata "config".
// config_json is config_to_json(model, train) of the model the parameters belong to; one
// whose layout differs from `layout`, or that does not parse, is refused (vae::Error).
// `scaling`: the model's --standardize scaling, which it must have exactly when its
// configuration says standardize (vae/standardize.h).
void save_model(const std::string& path, const ParamLayout&, const std::vector<float>& params,
                const std::string& config_json, const Standardization& scaling = {});
struct SavedModel {
  ModelConfig model;
  TrainConfig train;
  std::vector<float> params;  // flat, in ParamLayout(model)
  Standardization scaling;    // --standardize: the training set's; else empty
};
// Reads a file written by save_model or save_checkpoint; throws vae::Error naming the file.
SavedModel load_model(const std::string& path);

// An 8-bit PNG of width x height pixels with 1 (grey) or 3 (RGB) channels, row-major.
void write_png(const std::string& path, const unsigned char* pixels, int width, int height, int channels);

// A grid of grey images (n, h*w) with values in [0,1], `cols` per row, 1-pixel gaps.
void write_png_grid(const std::string& path, const std::vector<float>& images, int n, int h, int w, int cols);

// Write `text` to `path` atomically (temporary file, fsync, rename).
void write_file_atomic(const std::string& path, const std::string& text);

}  // namespace vae
