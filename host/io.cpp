// safetensors reading and writing, model save/load, PNG grids and atomic file writes.
#include "vae/io.h"

#include <fcntl.h>
#include <png.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "json_read.h"
#include "vae/error.h"

namespace vae {
namespace {

std::string temp_path_for(const std::string& path) {
  return path + ".tmp." + std::to_string(::getpid());
}

// Write bytes to a temporary file beside `path`, fsync, rename over `path`.
void write_bytes_atomic(const std::string& path, const std::string& head, const unsigned char* data, std::size_t n,
                        const std::vector<const std::vector<unsigned char>*>& more = {}) {
  // A directory at `path` would only fail at the rename, in terms of the temporary file.
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw_error("cannot write '", path, "': it is a directory (give a file name)");
  const std::string tmp = temp_path_for(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw_error("cannot write '", path, "': ", std::strerror(errno));
  auto put = [&](const void* p, std::size_t len) {
    const char* c = static_cast<const char*>(p);
    while (len > 0) {
      const ssize_t w = ::write(fd, c, len);
      if (w < 0) {
        if (errno == EINTR) continue;
        const std::string err = std::strerror(errno);
        ::close(fd);
        ::unlink(tmp.c_str());
        throw_error("cannot write '", path, "': ", err);
      }
      c += w;
      len -= static_cast<std::size_t>(w);
    }
  };
  put(head.data(), head.size());
  if (n) put(data, n);
  for (const auto* v : more) put(v->data(), v->size());
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const std::string err = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw_error("cannot write '", path, "': ", err);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string err = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw_error("cannot move '", tmp, "' to '", path, "': ", err);
  }
}

std::size_t dtype_size(const std::string& dtype) {
  if (dtype == "F32") return 4;
  if (dtype == "I64" || dtype == "F64") return 8;
  return 0;
}

}  // namespace

void write_file_atomic(const std::string& path, const std::string& text) {
  write_bytes_atomic(path, text, nullptr, 0);
}

void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::size_t offset = 0;
  std::vector<const std::vector<unsigned char>*> blobs;
  for (const auto& t : tensors) {
    std::size_t expect = dtype_size(t.dtype);
    for (auto d : t.shape) expect *= static_cast<std::size_t>(d);
    if (expect == 0 && !t.bytes.empty()) throw_error("write_safetensors: tensor '", t.name, "' has dtype ", t.dtype);
    if (expect != t.bytes.size())
      throw_error("write_safetensors: tensor '", t.name, "' holds ", t.bytes.size(), " bytes, its shape needs ", expect);
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
    blobs.push_back(&t.bytes);
  }
  std::string h = header.dump();
  while ((h.size() + 8) % 8 != 0) h.push_back(' ');
  std::string head(8, '\0');
  const std::uint64_t hn = h.size();
  for (int i = 0; i < 8; ++i) head[i] = static_cast<char>((hn >> (8 * i)) & 0xFF);
  head += h;
  write_bytes_atomic(path, head, nullptr, 0, blobs);
}

const NamedTensor* SafetensorsFile::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

SafetensorsFile read_safetensors(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw_error("cannot open '", path, "': no such file");
  const std::uint64_t file_size = std::filesystem::file_size(path, ec);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_error("cannot open '", path, "': ", std::strerror(errno));
  unsigned char nb[8];
  if (file_size < 8 || !in.read(reinterpret_cast<char*>(nb), 8))
    throw_error("'", path, "' is not a safetensors file: shorter than its 8-byte header length");
  std::uint64_t hn = 0;
  for (int i = 0; i < 8; ++i) hn |= std::uint64_t(nb[i]) << (8 * i);
  if (hn == 0 || hn > 100u * 1024 * 1024 || hn > file_size - 8)
    throw_error("'", path, "' is not a safetensors file or is truncated: header length ", hn, " does not fit in ",
                file_size, " bytes");
  std::string h(static_cast<std::size_t>(hn), '\0');
  if (!in.read(h.data(), static_cast<std::streamsize>(hn))) throw_error("'", path, "' is truncated inside its header");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(h);
  } catch (const std::exception& e) {
    throw_error("'", path, "': safetensors header is not valid JSON: ", e.what());
  }
  if (!j.is_object()) throw_error("'", path, "': safetensors header is not a JSON object");
  const std::uint64_t data_size = file_size - 8 - hn;
  std::vector<unsigned char> data(static_cast<std::size_t>(data_size));
  if (data_size && !in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(data_size)))
    throw_error("'", path, "' could not be read to its end");
  SafetensorsFile f;
  try {
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (it.key() == "__metadata__") {
        for (auto m = it->begin(); m != it->end(); ++m) f.metadata[m.key()] = m->get<std::string>();
        continue;
      }
      NamedTensor t;
      t.name = it.key();
      t.dtype = (*it).at("dtype").get<std::string>();
      const std::string field = "'" + path + "': tensor '" + t.name + "' ";
      t.shape = json_integers<std::int64_t>((*it).at("shape"), field + "shape");
      const auto off = json_integers<std::uint64_t>((*it).at("data_offsets"), field + "data_offsets");
      if (off.size() != 2 || off[0] > off[1] || off[1] > data_size)
        throw_error("'", path, "': tensor '", t.name, "' has data offsets outside the file (truncated?)");
      std::uint64_t expect = dtype_size(t.dtype);
      if (expect == 0) throw_error("'", path, "': tensor '", t.name, "' has unsupported dtype ", t.dtype);
      for (auto d : t.shape) {
        if (d < 0 || __builtin_mul_overflow(expect, static_cast<std::uint64_t>(d), &expect))
          throw_error("'", path, "': tensor '", t.name, "' has an invalid shape");
      }
      if (expect != off[1] - off[0])
        throw_error("'", path, "': tensor '", t.name, "' has ", off[1] - off[0], " bytes but its dtype and shape need ",
                    expect);
      t.bytes.assign(data.begin() + static_cast<std::ptrdiff_t>(off[0]), data.begin() + static_cast<std::ptrdiff_t>(off[1]));
      f.tensors.push_back(std::move(t));
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw_error("'", path, "': malformed safetensors header: ", e.what());
  }
  return f;
}

void save_model(const std::string& path, const ParamLayout& layout, const std::vector<float>& params,
                const std::string& config_json, const Standardization& scaling) {
  if (params.size() != layout.total())
    throw_error("save_model: ", params.size(), " parameters, the layout holds ", layout.total());
  // load_model rebuilds the layout from config_json: it must describe this layout's model.
  ModelConfig model;
  TrainConfig train;
  try {
    config_from_json(config_json, model, train);
  } catch (const Error& e) {
    throw_error("save_model: config_json is not a configuration (pass config_to_json(model, train)): ", e.what());
  }
  const ParamLayout described(model);
  if (!described.same_tensors(layout))
    throw_error("save_model: config_json describes a model of ", described.total(),
                " parameters (input ", model.input_dim, ", latent ", model.latent, ") that is not the layout's (",
                layout.total(), "); pass config_to_json of the model the parameters belong to");
  std::vector<NamedTensor> tensors;
  for (const auto& v : layout.tensors()) {
    NamedTensor t;
    t.name = v.name;
    t.dtype = "F32";
    t.shape.assign(v.shape.begin(), v.shape.end());
    t.bytes.resize(v.size() * sizeof(float));
    std::memcpy(t.bytes.data(), params.data() + v.offset, t.bytes.size());
    tensors.push_back(std::move(t));
  }
  check_scaling(model, scaling, "save_model");
  scaling.append_tensors(tensors);
  write_safetensors(path, tensors, {{"config", config_json}, {"format", "vae-model-1"}});
}

const std::string& SafetensorsFile::vae_config(const std::string& path, std::initializer_list<const char*> formats) const {
  const auto it = metadata.find("config");
  if (it == metadata.end()) throw_error("'", path, "' has no 'config' metadata; it was not written by vae");
  const auto format = metadata.find("format");
  if (format == metadata.end()) return it->second;
  std::string known;
  for (const char* f : formats) {
    if (format->second == f) return it->second;
    known += (known.empty() ? "" : " or ") + std::string(f);
  }
  throw_error("'", path, "' is of format '", format->second, "', but this reads ", known,
              format->second == "vae-model-1" ? " (a vae-model-1 file holds no optimizer state to train on from)"
                                              : " (a newer vae's file?)");
}

SavedModel load_model(const std::string& path) {
  const SafetensorsFile f = read_safetensors(path);
  const std::string& config = f.vae_config(path, {"vae-model-1", "vae-checkpoint-1"});
  SavedModel m;
  try {
    config_from_json(config, m.model, m.train);
    m.model.validate();
  } catch (const Error& e) {
    throw_error("'", path, "': its configuration is invalid: ", e.what());
  }
  const ParamLayout layout(m.model);
  m.params.assign(layout.total(), 0.0f);
  for (const auto& v : layout.tensors()) {
    const NamedTensor* t = f.find(v.name);
    if (!t) throw_error("'", path, "' has no tensor '", v.name, "' that its configuration needs");
    if (t->dtype != "F32") throw_error("'", path, "': tensor '", v.name, "' is ", t->dtype, ", expected F32");
    if (std::vector<std::int64_t>(v.shape.begin(), v.shape.end()) != t->shape)
      throw_error("'", path, "': tensor '", v.name, "' has the wrong shape for its configuration");
    std::memcpy(m.params.data() + v.offset, t->bytes.data(), t->bytes.size());
    for (std::size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(m.params[v.offset + i]))
        throw_error("'", path, "': tensor '", v.name, "' holds a non-finite value at index ", i);
  }
  m.scaling = Standardization::from_file(f, path, m.model.standardize, m.model.input_dim);
  return m;
}

void write_png_grid(const std::string& path, const std::vector<float>& images, int n, int h, int w, int cols) {
  if (n <= 0 || h <= 0 || w <= 0 || cols <= 0) throw_error("write_png_grid: empty grid for '", path, "'");
  if (images.size() < static_cast<std::size_t>(n) * h * w)
    throw_error("write_png_grid: ", images.size(), " values for ", n, " images of ", h, "x", w);
  const int rows = (n + cols - 1) / cols;
  const int W = cols * (w + 1) + 1, H = rows * (h + 1) + 1;
  std::vector<unsigned char> pix(static_cast<std::size_t>(W) * H, 96);  // grey gaps
  for (int k = 0; k < n; ++k) {
    const int y0 = 1 + (k / cols) * (h + 1), x0 = 1 + (k % cols) * (w + 1);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        float v = images[static_cast<std::size_t>(k) * h * w + static_cast<std::size_t>(y) * w + x];
        v = std::isfinite(v) ? std::min(1.0f, std::max(0.0f, v)) : 0.0f;
        pix[static_cast<std::size_t>(y0 + y) * W + x0 + x] = static_cast<unsigned char>(std::lround(v * 255.0f));
      }
  }
  write_png(path, pix.data(), W, H, 1);
}

void write_png(const std::string& path, const unsigned char* pixels, int width, int height, int channels) {
  if (width <= 0 || height <= 0 || (channels != 1 && channels != 3))
    throw_error("write_png: cannot write ", width, "x", height, "x", channels, " pixels to '", path, "'");
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = static_cast<png_uint_32>(width);
  img.height = static_cast<png_uint_32>(height);
  img.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  const int stride = width * channels;
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&img, nullptr, &size, 0, pixels, stride, nullptr))
    throw_error("cannot encode PNG for '", path, "': ", img.message);
  std::vector<unsigned char> buf(size);
  if (!png_image_write_to_memory(&img, buf.data(), &size, 0, pixels, stride, nullptr))
    throw_error("cannot encode PNG for '", path, "': ", img.message);
  write_bytes_atomic(path, std::string(), buf.data(), size);
}

}  // namespace vae
