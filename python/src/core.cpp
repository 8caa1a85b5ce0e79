// vae._core: libvae for Python (nanobind). A thin layer: a Model is a vae::Session (the
// library's model in training, the one vae train runs) and the calls it makes; the arrays go
// in and out as numpy. The Python API (python/vae/__init__.py) checks its inputs and names
// its keywords from options(), the option table.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vae/vae.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using U8Array = nb::ndarray<const std::uint8_t, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using F32Array = nb::ndarray<const float, nb::ndim<2>, nb::c_contig, nb::device::cpu>;

// A numpy array of this shape that owns the vector's values.
template <class T>
nb::ndarray<nb::numpy, T> to_numpy(std::vector<T>&& values, std::vector<std::size_t> shape) {
  auto* owned = new std::vector<T>(std::move(values));
  nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return nb::ndarray<nb::numpy, T>(owned->data(), shape.size(), shape.data(), owner);
}

// A dataset holding a copy of a (N, D) array: uint8 (pixels, read as x / 255) or float32.
std::shared_ptr<vae::Dataset> to_dataset(nb::handle array, const std::string& name) {
  auto d = std::make_shared<vae::Dataset>();
  d->source = name;
  U8Array u8;
  F32Array f32;
  if (nb::try_cast(array, u8, false)) {
    d->count = static_cast<std::int64_t>(u8.shape(0));
    d->dim = static_cast<int>(u8.shape(1));
    d->u8.assign(u8.data(), u8.data() + u8.size());
  } else if (nb::try_cast(array, f32, false)) {
    d->count = static_cast<std::int64_t>(f32.shape(0));
    d->dim = static_cast<int>(f32.shape(1));
    d->f32.assign(f32.data(), f32.data() + f32.size());
  } else {
    throw nb::type_error((name + ": expected a C-contiguous 2-D uint8 or float32 array on the CPU").c_str());
  }
  d->height = 1;
  d->width = d->dim;
  return d;
}

// f(), with the library's errors about the caller's values as ValueError.
template <class F>
auto value_errors(F&& f) {
  try {
    return f();
  } catch (const vae::Error& e) {
    throw nb::value_error(e.what());
  }
}

using LabelArray = nb::ndarray<const std::int64_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

// A condition from Python (the vae package shapes it): None; class labels (int64, 1-D),
// one-hot into `classes` columns (0: the largest label + 1); or covariates (float32, 2-D).
vae::Condition to_condition(nb::handle c, const std::string& name, int classes) {
  if (c.is_none()) return {};
  LabelArray labels;
  F32Array cov;
  if (nb::try_cast(c, labels, false))
    return value_errors([&] {
      return vae::condition_from_labels(std::vector<std::int64_t>(labels.data(), labels.data() + labels.size()),
                                        classes, name);
    });
  if (nb::try_cast(c, cov, false))
    return value_errors([&] {
      return vae::condition_from_covariates(std::vector<float>(cov.data(), cov.data() + cov.size()),
                                            static_cast<std::int64_t>(cov.shape(0)), static_cast<int>(cov.shape(1)), name);
    });
  throw nb::type_error((name + ": expected class labels (integers) or covariates (floats)").c_str());
}

// The kind and width a condition gives a new model: ("classes", C) or ("covariates", C).
std::pair<std::string, int> condition_shape(nb::handle c, int classes) {
  const vae::Condition k = to_condition(c, "condition", classes);
  return {vae::to_string(k.kind), k.dim};
}

nb::object read_array(const std::string& path) {
  vae::Dataset d = vae::read_dataset(path);
  const auto rows = static_cast<std::size_t>(d.count), cols = static_cast<std::size_t>(d.dim);
  if (d.is_u8()) return nb::cast(to_numpy(std::move(d.u8), {rows, cols}));
  return nb::cast(to_numpy(std::move(d.f32), {rows, cols}));
}

nb::dict metrics_dict(const vae::EpochMetrics& m) {
  nb::dict d;
  d["epoch"] = m.epoch;
  d["train_loss"] = m.train_loss;
  d["test_loss"] = m.test_loss;
  d["test_recon"] = m.test_recon;
  d["test_kl"] = m.test_kl;
  d["seconds"] = m.seconds;
  d["samples_per_sec"] = m.samples_per_sec;
  return d;
}

// "bool", "int", "float", "widths" (a list of layer widths), "choice" or "str".
const char* kind(const vae::Option& o) {
  if (o.is_switch()) return "bool";
  if (o.is_integer()) return "int";
  if (o.is_real()) return "float";
  if (std::holds_alternative<vae::OptionField<std::vector<int>>>(o.field)) return "widths";
  return o.choices().empty() ? "str" : "choice";
}

// The configuration `base` (config.json's text; empty: the defaults) with the options given
// as (key, text) applied as vae train applies its flags, validated; errors name the keys.
std::string configure(const std::string& base, const std::vector<std::pair<std::string, std::string>>& given) {
  vae::ModelConfig m;
  vae::TrainConfig t;
  if (!base.empty()) vae::config_from_json(base, m, t);
  vae::GivenOptions g;
  for (const auto& [key, text] : given) g.emplace_back(&vae::option(key), text);
  try {
    vae::apply_options(g, m, t, vae::OptionNaming::keys);
    m.validate();
    t.validate();
  } catch (const vae::Error& e) {
    throw nb::value_error(e.what());
  }
  return vae::config_to_json(m, t);
}

// Every option of the table, as the Python layer makes its keywords of them.
nb::list options() {
  nb::list out;
  const vae::ModelConfig m;
  const vae::TrainConfig t;
  for (const vae::Option& o : vae::options()) {
    nb::dict d;
    d["key"] = o.key;
    d["section"] = o.section == vae::OptionSection::model ? "model" : "train";
    d["flag"] = o.flag ? nb::cast(std::string(o.flag)) : nb::none();
    d["help"] = o.help;
    d["default"] = o.text(m, t);
    d["choices"] = o.choices();
    d["kind"] = kind(o);
    d["group"] = vae::to_string(o.group);
    d["recorded"] = o.recorded;
    d["resumable"] = o.resumable;
    out.append(d);
  }
  return out;
}

class Model {
  // What the model is doing while the GIL is released: fit's steps (a progress callback runs
  // between them, mid-epoch) or another call. Any call then is refused, from another thread or
  // from the progress callback: the session is not shared. (Calls are made holding the GIL, so
  // the flags need no atomics.) fit's per-epoch callback runs with the session idle: there the
  // model may be used, but not fitted again or reconfigured, while the outer fit goes on.
  const char* busy_ = nullptr;
  bool fitting_ = false;
  struct Busy {
    Busy(Model& m, const char* call) : m_(m) {
      if (m.busy_)
        vae::throw_error("VAE.", call, "(): the model is busy in ", m.busy_,
                         "() (another thread, or fit's progress callback); wait until it returns");
      m.busy_ = call;
    }
    ~Busy() { m_.busy_ = nullptr; }
    Busy(const Busy&) = delete;
    Busy& operator=(const Busy&) = delete;
    Model& m_;
  };
  void not_fitting(const char* call) const {
    if (fitting_)
      vae::throw_error("VAE.", call, "(): fit() is running (this is its callback); call it after fit returns");
  }

 public:
  explicit Model(const std::string& config_json) {
    vae::ModelConfig m;
    vae::TrainConfig t;
    vae::config_from_json(config_json, m, t);
    session_ = std::make_unique<vae::Session>(m, t);
  }
  explicit Model(const vae::Checkpoint& ck) : session_(std::make_unique<vae::Session>(ck)) {}

  static std::unique_ptr<Model> load(const std::string& path) {
    std::error_code ec;
    const std::string file = std::filesystem::is_directory(path, ec) ? path + "/model.safetensors" : path;
    return std::make_unique<Model>(vae::load_checkpoint(file));
  }

  std::string config_json() const { return vae::config_to_json(session_->model(), session_->config()); }
  std::string device() {
    Busy busy(*this, "device");
    return session_->backend().name();
  }
  std::string device_note() const { return session_->device_note(); }
  std::vector<std::int64_t> position() const {
    const vae::TrainPosition& p = session_->position();
    return {p.epoch, p.batch, p.step};
  }
  bool started() const { return session_->position().step > 0; }

  // Another configuration: fresh parameters before any step, else the model's state carried
  // over (the Python layer allows only options a resumed run may change).
  void reconfigure(const std::string& config_json) {
    Busy busy(*this, "reconfigure");
    not_fitting("reconfigure");
    vae::ModelConfig m;
    vae::TrainConfig t;
    vae::config_from_json(config_json, m, t);
    if (!started()) {
      session_ = std::make_unique<vae::Session>(m, t);
      return;
    }
    vae::Checkpoint ck = session_->checkpoint();
    ck.train = t;
    session_ = std::make_unique<vae::Session>(ck);
  }

  nb::list fit(nb::handle x, nb::handle test, int epochs, nb::object callback, nb::object progress, nb::handle cond,
               nb::handle test_cond);

  std::pair<nb::ndarray<nb::numpy, float>, nb::ndarray<nb::numpy, float>> encode(nb::handle x, nb::handle cond) {
    Busy busy(*this, "encode");
    const auto d = data(x, "X", cond);
    std::vector<float> head;
    {
      nb::gil_scoped_release released;
      head = session_->backend().encode(*d, 0, d->count);
    }
    const std::size_t n = static_cast<std::size_t>(d->count), z = static_cast<std::size_t>(session_->model().latent);
    std::vector<float> mu(n * z), logvar(n * z);
    for (std::size_t i = 0; i < n; ++i) {
      std::memcpy(mu.data() + i * z, head.data() + i * 2 * z, z * sizeof(float));
      std::memcpy(logvar.data() + i * z, head.data() + i * 2 * z + z, z * sizeof(float));
    }
    return {to_numpy(std::move(mu), {n, z}), to_numpy(std::move(logvar), {n, z})};
  }

  nb::ndarray<nb::numpy, float> decode(nb::ndarray<const float, nb::ndim<2>, nb::c_contig, nb::device::cpu> z,
                                       nb::handle cond) {
    Busy busy(*this, "decode");
    const int Z = session_->model().latent;
    if (z.shape(1) != static_cast<std::size_t>(Z))
      throw nb::value_error(("z: expected " + std::to_string(Z) + " columns (the latent size), got " +
                             std::to_string(z.shape(1))).c_str());
    const vae::Condition c = condition(cond, "condition");
    std::vector<float> codes(z.data(), z.data() + z.size()), means;
    {
      nb::gil_scoped_release released;
      means = value_errors([&] { return session_->backend().decode_means(codes, c); });
    }
    return to_numpy(std::move(means), {z.shape(0), static_cast<std::size_t>(session_->model().input_dim)});
  }

  nb::ndarray<nb::numpy, float> sample(int n, std::uint64_t seed, nb::handle cond) {
    Busy busy(*this, "sample");
    const vae::Condition c = condition(cond, "condition");
    std::vector<float> means;
    {
      nb::gil_scoped_release released;
      means = value_errors([&] { return vae::prior_samples(session_->backend(), session_->model(), n, seed, c); });
    }
    return to_numpy(std::move(means), {static_cast<std::size_t>(n), static_cast<std::size_t>(session_->model().input_dim)});
  }

  nb::dict evaluate(nb::handle x, nb::handle cond) {
    Busy busy(*this, "evaluate");
    const auto d = data(x, "X", cond);
    vae::LossSums s;
    {
      nb::gil_scoped_release released;
      s = session_->backend().evaluate(*d);
    }
    nb::dict out;
    out["loss"] = s.mean_loss();
    out["recon"] = s.mean_recon();
    out["kl"] = s.mean_kl();
    return out;
  }

  nb::dict log_likelihood(nb::handle x, int k, nb::handle cond) {
    Busy busy(*this, "log_likelihood");
    const auto d = data(x, "X", cond);
    vae::LikelihoodSums s;
    double exact = NAN;
    const bool linear = vae::has_exact_log_likelihood(session_->model());
    {
      nb::gil_scoped_release released;
      s = session_->backend().estimate_log_likelihood(*d, k);
      if (linear) exact = vae::exact_log_likelihood(session_->model(), session_->backend().parameters(), *d,
                                                   session_->backend().standardization());
    }
    const double n = double(s.count), elbo = -(s.recon + s.kl) / n;
    nb::dict out;
    out["elbo"] = elbo;
    out["iwae"] = s.iwae / n;
    out["prior"] = s.prior / n;
    out["gap"] = s.iwae / n - elbo;
    out["exact"] = linear ? nb::cast(exact / n) : nb::none();
    return out;
  }

  void save(const std::string& path) {
    Busy busy(*this, "save");
    const vae::Checkpoint ck = session_->checkpoint();
    vae::save_checkpoint(path, ck, "");
  }

  // The parameters by name, each a numpy array of the tensor's shape; for a standardized
  // model also its scaling, as the files name it (vae/standardize.h).
  nb::dict parameters() {
    Busy busy(*this, "parameters");
    const std::vector<float> flat = session_->backend().parameters();
    nb::dict out;
    for (const auto& t : session_->backend().layout().tensors()) {
      std::vector<float> values(flat.begin() + static_cast<std::ptrdiff_t>(t.offset),
                                flat.begin() + static_cast<std::ptrdiff_t>(t.offset + t.size()));
      out[t.name.c_str()] = to_numpy(std::move(values), std::vector<std::size_t>(t.shape.begin(), t.shape.end()));
    }
    const vae::Standardization& s = session_->backend().standardization();
    if (!s.empty()) {  // the names the files give them
      out["standardize.mean"] = to_numpy(std::vector<float>(s.mean), {s.mean.size()});
      out["standardize.std"] = to_numpy(std::vector<float>(s.std), {s.std.size()});
    }
    return out;
  }

 private:
  // The array as a dataset the model can take, with its items' conditions; what the library
  // refuses in it (its width, a value that is not finite, or outside [0, 1] for the Bernoulli
  // likelihood, conditions that do not fit the model) is a ValueError.
  std::shared_ptr<vae::Dataset> data(nb::handle x, const std::string& name, nb::handle cond) {
    auto d = to_dataset(x, name);
    vae::Condition c = condition(cond, name + "'s condition");
    value_errors([&] {
      vae::attach_condition(*d, std::move(c));
      vae::check_data(session_->model(), *d, "the array");
      return 0;
    });
    return d;
  }

  // A condition for this model: labels one-hot into its classes.
  vae::Condition condition(nb::handle cond, const std::string& name) const {
    const vae::ModelConfig& m = session_->model();
    return to_condition(cond, name, m.condition == vae::ConditionKind::classes ? m.condition_dim : 0);
  }


  std::unique_ptr<vae::Session> session_;
};

// Trains `epochs` epochs from the model's position, the GIL released. After every step the
// signals are checked (Ctrl-C: the model stops there, consistent, and KeyboardInterrupt is
// raised) and, at most every 0.2 s, progress(epoch, done, total, samples, seconds) is called.
nb::list Model::fit(nb::handle x, nb::handle test, int epochs, nb::object callback, nb::object progress,
                    nb::handle cond, nb::handle test_cond) {
  std::optional<Busy> busy(std::in_place, *this, "fit");
  not_fitting("fit");
  fitting_ = true;
  struct Done {
    bool& flag;
    ~Done() { flag = false; }
  } done{fitting_};
  auto train = data(x, "X", cond);
  std::shared_ptr<vae::Dataset> held_out = test.is_none() ? nullptr : data(test, "test", test_cond);
  vae::prepare_data(session_->config(), *train, held_out.get());
  session_->set_train_data(train);
  nb::list history;
  std::optional<nb::python_error> pending;  // raised in a step's callbacks: stops there, raised after
  for (int e = 0; e < epochs; ++e) {
    const int epoch = session_->position().epoch + 1;
    const auto t0 = std::chrono::steady_clock::now();
    auto last = t0 - std::chrono::seconds(1);
    std::optional<vae::EpochOutcome> outcome;
    {
      nb::gil_scoped_release released;
      outcome = session_->train_epoch(held_out.get(), [&](int done, int total, std::int64_t samples) {
        nb::gil_scoped_acquire acquired;
        try {
          if (PyErr_CheckSignals() != 0) throw nb::python_error();  // Ctrl-C: KeyboardInterrupt
          const auto now = std::chrono::steady_clock::now();
          if (!progress.is_none() && (now - last > std::chrono::milliseconds(200) || done == total)) {
            last = now;
            progress(epoch, done, total, samples, std::chrono::duration<double>(now - t0).count());
          }
        } catch (nb::python_error& err) {
          pending.emplace(std::move(err));
        }
        return pending.has_value();
      });
    }
    if (pending) {  // the model stands after the last step taken; an epoch it finished counts
      pending->restore();
      throw nb::python_error();
    }
    if (outcome->halted)
      vae::throw_error("training stopped: ", outcome->first_dropped, "; try a smaller lr, or on_nan='skip' to drop such steps");
    if (outcome->dropped_steps > 0)
      nb::module_::import_("warnings").attr("warn")("skipped " + std::to_string(outcome->dropped_steps) +
                                                    " step(s) with a non-finite loss or gradient; first: " +
                                                    outcome->first_dropped);
    nb::dict d = metrics_dict(outcome->metrics);
    history.append(d);
    if (!std::isfinite(outcome->metrics.train_loss))
      vae::throw_error("training diverged at epoch ", outcome->metrics.epoch, ": the loss is not finite; try a smaller lr");
    if (!callback.is_none()) {  // the session idle: the callback may use the model (not fit it)
      busy.reset();
      const bool stop = callback(d).is(Py_False);
      busy.emplace(*this, "fit");
      if (stop) break;
    }
  }
  return history;
}

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "libvae's C++ core; use the vae package";
  nb::exception<vae::Error>(m, "Error", PyExc_RuntimeError);
  m.def("options", &options, "Every training and model option of the option table");
  m.def("configure", &configure, "base"_a, "given"_a);
  m.def("read", &read_array, "path"_a, "An IDX or NPY file as a (N, D) uint8 or float32 array");
  m.def("condition_shape", &condition_shape, "condition"_a.none(), "classes"_a);
  m.def("read_labels", [](const std::string& path) {
    std::vector<std::uint8_t> labels = vae::read_idx_labels(path);
    const std::size_t n = labels.size();
    return to_numpy(std::move(labels), {n});
  }, "path"_a, "An IDX labels file as a 1-D uint8 array");
  m.def("cuda_usable", [] {
    std::string why;
    const bool ok = vae::cuda_usable(&why);
    return std::make_pair(ok, why);
  });
  nb::class_<Model>(m, "Model")
      .def(nb::init<const std::string&>(), "config_json"_a)
      .def_static("load", &Model::load, "path"_a)
      .def("config_json", &Model::config_json)
      .def("reconfigure", &Model::reconfigure, "config_json"_a)
      .def_prop_ro("device", &Model::device)
      .def_prop_ro("device_note", &Model::device_note)
      .def_prop_ro("position", &Model::position)
      .def_prop_ro("started", &Model::started)
      .def("fit", &Model::fit, "x"_a, "test"_a.none(), "epochs"_a, "callback"_a.none(), "progress"_a.none(),
           "condition"_a.none(), "test_condition"_a.none())
      .def("encode", &Model::encode, "x"_a, "condition"_a.none())
      .def("decode", &Model::decode, "z"_a, "condition"_a.none())
      .def("sample", &Model::sample, "n"_a, "seed"_a, "condition"_a.none())
      .def("evaluate", &Model::evaluate, "x"_a, "condition"_a.none())
      .def("log_likelihood", &Model::log_likelihood, "x"_a, "k"_a, "condition"_a.none())
      .def("save", &Model::save, "path"_a)
      .def("parameters", &Model::parameters);
}
