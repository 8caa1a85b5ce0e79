// Subcommands that read a trained model: eval, gradvar, sample, reconstruct, interpolate,
// scatter, and plot (the ELBO curve of a run).
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands.h"
#include "cli/config_flags.h"
#include "vae/vae.h"

namespace vae::cli {
namespace {

namespace fs = std::filesystem;

// --model: a run's OUT directory or a .safetensors file.
SavedModel load_model_arg(const std::string& arg) {
  std::error_code ec;
  const std::string path = fs::is_directory(arg, ec) ? arg + "/model.safetensors" : arg;
  if (!fs::exists(path, ec))
    throw_error("--model '", arg, "': no such file", fs::is_directory(arg, ec) ? " (no model.safetensors in it)" : "");
  return load_model(path);
}

// A conditional model's conditions from `path`, checked against its kind and size.
Condition read_model_condition(const std::string& path, const ModelConfig& model) {
  Condition c = read_condition(path, model.condition == ConditionKind::classes ? model.condition_dim : 0);
  if (c.kind != model.condition || c.dim != model.condition_dim)
    throw_error("--condition '", path, "' holds ", c.describe(), " per item but the model is conditioned on ",
                describe_condition(model.condition, model.condition_dim));
  return c;
}

// --condition of a conditional model's --data: a file, or (default, with the model's own data)
// the conditions it was trained with. Attached to `d`; nothing for an unconditional model.
void attach_condition_arg(Dataset& d, const std::string& arg, const std::string& data_arg, const SavedModel& m,
                          bool train_set) {
  if (m.model.condition == ConditionKind::none) {
    if (!arg.empty()) throw_error("--condition '", arg, "': the model is not a conditional one");
    return;
  }
  std::string path = arg;
  if (path.empty()) {
    if (!data_arg.empty())
      throw_error("the model is conditioned on ", describe_condition(m.model.condition, m.model.condition_dim),
                  ": give --condition, the conditions of --data '", data_arg, "'");
    path = train_set ? m.train.condition_path : m.train.test_condition_path;
    if (path.empty())
      throw_error("the model records no condition file for its ", train_set ? "training" : "test",
                  " set (trained from Python?): give --data and --condition");
  }
  attach_condition(d, read_model_condition(path, m.model));
}

// --data: a file, or the model's test set as it was trained (default); --condition: its
// conditions, for a conditional model.
Dataset load_data_arg(const std::string& arg, const SavedModel& m, bool train_set, const std::string& condition = "") {
  const std::string which = train_set ? "training" : "test";
  std::string path = arg, origin = "the " + which + " set the model was trained with";
  if (path.empty()) path = train_set ? m.train.train_path : m.train.test_path;
  if (path.empty()) {  // a model that records no data: trained from Python, or by a vae before paths were recorded
    path = default_fashion_mnist(train_set);
    origin = "Fashion-MNIST's " + which + " set: the model records none";
  }
  Dataset d;
  try {
    d = read_dataset(path);
  } catch (const Error& e) {
    if (!arg.empty()) throw;
    throw_error(e.what(), " (", origin, "; --data names another)");
  }
  if (d.dim != m.model.input_dim)
    throw_error("--data '", path, "' has ", d.dim, " features per item but the model expects ", m.model.input_dim,
                arg.empty() ? " (" + origin + "; --data names another)" : std::string());
  if (m.train.binarize == Binarize::static_threshold) binarize_static(d);
  else if (m.train.binarize == Binarize::dynamic) binarize_fixed_draw(d, m.train.seed);
  attach_condition_arg(d, condition, arg, m, train_set);
  return d;
}

// The --condition option of the tools that read data.
void add_condition_option(CLI::App* cmd, std::string& condition) {
  cmd->add_option("--condition", condition,
                  "A conditional model: the conditions of --data's items (labels or covariates, as vae train's "
                  "--condition); default: those of the model's own data");
}

Dataset first_items(const Dataset& d, std::int64_t n) { return n <= 0 || n >= d.count ? d : d.slice(0, n); }

std::unique_ptr<Backend> backend_for(const SavedModel& m, const std::string& device, int batch, std::ostream& log) {
  TrainConfig t = m.train;
  t.device = parse_device(device);
  t.objective = Objective::elbo;  // estimates and gradients of the ELBO, whatever the model was trained with
  if (batch > 0) t.batch = batch;
  std::string note;
  const Device d = resolve_device(t.device, &note);
  auto b = make_backend(d, m.model, t);
  log << note << "\n";
  b->set_parameters(m.params);
  b->set_standardization(m.scaling);
  return b;
}

void add_device_option(CLI::App* cmd, std::string& device) {
  add_table_option(cmd, "device", device)->capture_default_str();
}

void add_eval(CLI::App& app) {
  struct Opt {
    std::string model, data, condition, device = "auto", json;
    int k = 100;
    std::int64_t limit = 0;
  };
  auto o = std::make_shared<Opt>();
  CLI::App* cmd = app.add_subcommand("eval", "Estimate log p(x) of a trained model: ELBO, importance sampling, gaps");
  cmd->add_option("--model", o->model, "A run's OUT directory or its model.safetensors")->required();
  cmd->add_option("--data", o->data, "Data to evaluate (IDX or NPY); default: the model's test set");
  add_condition_option(cmd, o->condition);
  cmd->add_option("--iw", o->k, "K importance samples per data point")->capture_default_str()->check(CLI::Range(1, 100000));
  cmd->add_option("--limit", o->limit, "Use only the first N items (0: all items)")->capture_default_str();
  add_device_option(cmd, o->device);
  cmd->add_option("--json", o->json, "Also write the numbers as JSON here");
  cmd->footer(
      "\nPer data point, in nats:\n"
      "  -ELBO          recon + KL, recon estimated with the K samples from q(z|x), KL in closed form\n"
      "  log p(x) IWAE  log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x): the IWAE bound, -> log p(x) as K grows\n"
      "  log p(x) prior log (1/K) sum_k p(x|z_k), z_k ~ p(z): the naive estimate, for comparison\n"
      "  gap            log p(x) IWAE - ELBO: at least KL(q(z|x) || p(z|x)), the ELBO's looseness\n"
      "  exact log p(x) in closed form, for a linear decoder with a Gaussian likelihood (PPCA)\n"
      "Example: vae eval --model runs/fashion-mnist --iw 1000 --limit 1000");
  cmd->callback([o]() {
    if (o->limit < 0) throw_error("--limit must be >= 0 (0: all items), got ", o->limit);
    const SavedModel m = load_model_arg(o->model);
    const Dataset data = first_items(load_data_arg(o->data, m, false, o->condition), o->limit);
    auto backend = backend_for(m, o->device, 0, std::cout);
    const LikelihoodSums s = backend->estimate_log_likelihood(data, o->k);
    const double n = double(s.count);
    const double elbo = -(s.recon + s.kl) / n, iwae = s.iwae / n, prior = s.prior / n;
    std::printf("model %s: %d-%s-%d, %s likelihood; %lld items of %s; K = %d\n", o->model.c_str(), m.model.input_dim,
                m.model.encoder_hidden.empty() ? "linear" : std::to_string(m.model.encoder_hidden[0]).c_str(),
                m.model.latent, to_string(m.model.likelihood), static_cast<long long>(s.count), data.source.c_str(), o->k);
    std::printf("  -ELBO            %10.4f   (recon %.4f, KL %.4f)\n", -elbo, s.recon / n, s.kl / n);
    std::printf("  log p(x) IWAE    %10.4f\n", iwae);
    std::printf("  log p(x) prior   %10.4f   (naive: z from the prior)\n", prior);
    std::printf("  gap IWAE - ELBO  %10.4f\n", iwae - elbo);
    nlohmann::ordered_json j = {{"model", o->model},     {"data", data.source},  {"items", s.count},
                                {"k", o->k},             {"neg_elbo", -elbo},    {"recon", s.recon / n},
                                {"kl", s.kl / n},        {"log_px_iwae", iwae},  {"log_px_prior", prior},
                                {"gap", iwae - elbo},    {"device", backend->name()}};
    if (has_exact_log_likelihood(m.model)) {
      const double exact = exact_log_likelihood(m.model, m.params, data, m.scaling) / n;
      std::printf("  exact log p(x)   %10.4f   (linear-Gaussian decoder: closed form)\n", exact);
      j["log_px_exact"] = exact;
    }
    if (!o->json.empty()) write_file_atomic(o->json, j.dump(2) + "\n");
  });
}

void add_gradvar(CLI::App& app) {
  struct Opt {
    std::string model, data, condition, device = "auto", json;
    int batch = 128, repeats = 100;
  };
  auto o = std::make_shared<Opt>();
  CLI::App* cmd = app.add_subcommand(
      "gradvar", "Variance of the encoder's gradient under the reparameterization and score-function estimators");
  cmd->add_option("--model", o->model, "A run's OUT directory or its model.safetensors")->required();
  cmd->add_option("--data", o->data, "Data (IDX or NPY); default: the model's training set");
  add_condition_option(cmd, o->condition);
  cmd->add_option("--batch", o->batch, "The one batch: the first N items")->capture_default_str()->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--repeats", o->repeats, "Gradient estimates per estimator (fresh noise each)")
      ->capture_default_str()->check(CLI::Range(2, 1000000));
  add_device_option(cmd, o->device);
  cmd->add_option("--json", o->json, "Also write the numbers as JSON here");
  cmd->footer(
      "\nFor each parameter tensor: the norm of the mean gradient over the repeats, and the total variance\n"
      "(sum over its elements of the variance across repeats) under each estimator, and their ratio.\n"
      "The decoder's gradient is the same estimator under both; the encoder's (phi) is where they differ.");
  cmd->callback([o]() {
    const SavedModel m = load_model_arg(o->model);
    auto data = std::make_shared<Dataset>(first_items(load_data_arg(o->data, m, true, o->condition), o->batch));
    auto backend = backend_for(m, o->device, static_cast<int>(data->count), std::cout);
    backend->set_train_data(data);
    std::vector<std::uint32_t> idx(static_cast<std::size_t>(data->count));
    for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<std::uint32_t>(i);
    Batch batch;
    batch.indices = idx.data();
    batch.size = static_cast<int>(idx.size());
    const ParamLayout& layout = backend->layout();
    const std::size_t P = layout.total();
    struct Moments {
      std::vector<double> mean, m2;
    } mom[2];
    for (int e = 0; e < 2; ++e) {
      mom[e].mean.assign(P, 0);
      mom[e].m2.assign(P, 0);
      for (int r = 0; r < o->repeats; ++r) {
        backend->compute_gradient(batch, r, e == 0 ? Estimator::reparam : Estimator::score);
        const std::vector<float> g = backend->gradients();
        for (std::size_t i = 0; i < P; ++i) {
          const double d = g[i] - mom[e].mean[i];
          mom[e].mean[i] += d / (r + 1);
          mom[e].m2[i] += d * (g[i] - mom[e].mean[i]);
        }
      }
    }
    std::printf("%d gradient estimates per estimator on one batch of %d items\n", o->repeats, batch.size);
    std::printf("%-22s %12s %14s %14s %12s\n", "tensor", "|mean grad|", "var reparam", "var score", "score/reparam");
    nlohmann::ordered_json rows = nlohmann::ordered_json::array();
    for (const auto& t : layout.tensors()) {
      double norm = 0, var[2] = {0, 0};
      for (std::size_t i = t.offset; i < t.offset + t.size(); ++i) {
        norm += mom[0].mean[i] * mom[0].mean[i];
        for (int e = 0; e < 2; ++e) var[e] += mom[e].m2[i] / (o->repeats - 1);
      }
      const double ratio = var[0] > 0 ? var[1] / var[0] : 0;
      std::printf("%-22s %12.4g %14.4g %14.4g %12.4g\n", t.name.c_str(), std::sqrt(norm), var[0], var[1], ratio);
      rows.push_back({{"tensor", t.name}, {"mean_grad_norm", std::sqrt(norm)}, {"var_reparam", var[0]},
                      {"var_score", var[1]}, {"ratio", ratio}});
    }
    if (!o->json.empty())
      write_file_atomic(o->json, nlohmann::ordered_json({{"repeats", o->repeats}, {"batch", batch.size}, {"tensors", rows}})
                                         .dump(2) + "\n");
  });
}

// The picture tools' options; each command reads its own.
struct PictureOptions {
  std::string model, data, condition, out, labels, metrics, device = "auto";
  int n = 64, steps = 10;
  std::int64_t from = 0, to = 1, points = 5000;
  std::uint64_t seed = 1;
};
using PictureOpt = std::shared_ptr<PictureOptions>;

// vae sample's --condition: a class number or a covariates file, as the samples' conditions
// (n rows); none for an unconditional model. Without one, a class-conditional model draws
// n / C samples of each class, a row each (n and cols change to that).
Condition sample_condition(const std::string& arg, const ModelConfig& model, int& n, int& cols) {
  if (model.condition == ConditionKind::none) {
    if (!arg.empty()) throw_error("--condition '", arg, "': the model is not a conditional one");
    return {};
  }
  const int C = model.condition_dim;
  if (arg.empty()) {
    if (model.condition == ConditionKind::covariates)
      throw_error("the model is conditioned on ", describe_condition(model.condition, C),
                  ": give the samples' --condition FILE (NPY)");
    const int per_class = std::max(1, n / C);
    const Condition grid = class_grid_condition(model, per_class);
    n = static_cast<int>(std::min<std::int64_t>(grid.count(), 4096));
    cols = per_class;
    return grid.rows(0, n);
  }
  if (model.condition == ConditionKind::classes && arg.find_first_not_of("0123456789") == std::string::npos &&
      arg.size() < 10)
    return class_condition(std::stoi(arg), C, n);
  std::error_code ec;
  if (model.condition == ConditionKind::classes && !fs::exists(arg, ec))
    throw_error("--condition '", arg, "' is neither a class of the model's ", C, " (0..", C - 1, ") nor a file");
  const Condition c = read_model_condition(arg, model);
  if (c.count() == 1) {  // one condition for every sample
    Condition all = c;
    all.values.clear();
    for (int i = 0; i < n; ++i) all.values.insert(all.values.end(), c.values.begin(), c.values.end());
    return all;
  }
  if (c.count() < n)
    throw_error("--condition '", arg, "' holds ", c.count(), " rows for ", n, " samples (--n): give one row, or one per sample");
  return c.rows(0, n);
}

void add_sample(CLI::App& app, const PictureOpt& o) {
  CLI::App* s = app.add_subcommand("sample", "A grid of decoder means for z drawn from the prior (PNG)");
  s->add_option("--model", o->model, "A run's OUT directory or its model.safetensors")->required();
  s->add_option("--out", o->out, "The PNG to write")->required();
  s->add_option("--n", o->n, "Samples")->capture_default_str();
  s->add_option("--seed", o->seed, "Seed of the prior draws")->capture_default_str();
  s->add_option("--condition", o->condition,
                "A conditional model: the class k of every sample, or a covariates file (NPY, one row for all "
                "samples or one per sample); default for classes: a row of samples per class");
  add_device_option(s, o->device);
  s->footer("\nExample: vae sample --model runs/fashion-mnist --n 64 --out samples.png\n"
            "Example: vae sample --model runs/conditional --condition 3 --n 16 --out dresses.png");
  s->callback([o]() {
    if (o->n < 1 || o->n > 4096) throw_error("--n must be in [1, 4096], got ", o->n);
    const SavedModel m = load_model_arg(o->model);
    int h = 0, w = 0;
    for (int r = 1; r * r <= m.model.input_dim; ++r)
      if (r * r == m.model.input_dim) h = w = r;
    int n = o->n, cols = 0;
    const Condition cond = sample_condition(o->condition, m.model, n, cols);
    write_samples_png(o->out, *backend_for(m, o->device, 0, std::cout), m.model, n, h, w, o->seed, cond, cols);
    std::cout << "wrote " << o->out << "\n";
  });
}

void add_reconstruct(CLI::App& app, const PictureOpt& o) {
  CLI::App* r = app.add_subcommand("reconstruct", "Inputs and their reconstructions at z = mu (PNG)");
  r->add_option("--model", o->model, "A run's OUT directory or its model.safetensors")->required();
  r->add_option("--data", o->data, "Images (IDX or NPY); default: the model's test set");
  add_condition_option(r, o->condition);
  r->add_option("--out", o->out, "The PNG to write")->required();
  r->add_option("--n", o->n, "Items (the first N; all when the data holds fewer)")->capture_default_str();
  add_device_option(r, o->device);
  r->footer("\nExample: vae reconstruct --model runs/fashion-mnist --n 16 --out recon.png");
  r->callback([o]() {
    // The same range as sample's --n: both draw one cell per item.
    if (o->n < 1 || o->n > 4096) throw_error("--n must be in [1, 4096], got ", o->n);
    const SavedModel m = load_model_arg(o->model);
    const Dataset data = load_data_arg(o->data, m, false, o->condition);
    write_reconstructions_png(o->out, *backend_for(m, o->device, 0, std::cout), m.model, data, o->n);
    std::cout << "wrote " << o->out << "\n";
  });
}

void add_interpolate(CLI::App& app, const PictureOpt& o) {
  CLI::App* i = app.add_subcommand("interpolate", "The decoded latent path between two images (PNG)");
  i->add_option("--model", o->model, "A run's OUT directory or its model.safetensors")->required();
  i->add_option("--data", o->data, "Images (IDX or NPY); default: the model's test set");
  add_condition_option(i, o->condition);
  i->add_option("--from", o->from, "Index of the first image")->capture_default_str();
  i->add_option("--to", o->to, "Index of the second image")->capture_default_str();
  i->add_option("--steps", o->steps, "Points on the path, ends included")->capture_default_str();
  i->add_option("--out", o->out, "The PNG to write")->required();
  add_device_option(i, o->device);
  i->footer("\nExample: vae interpolate --model runs/fashion-mnist --from 0 --to 1 --steps 10 --out path.png");
  i->callback([o]() {
    const SavedModel m = load_model_arg(o->model);
    const Dataset data = load_data_arg(o->data, m, false, o->condition);
    write_interpolation_png(o->out, *backend_for(m, o->device, 0, std::cout), m.model, data, o->from, o->to, o->steps);
    std::cout << "wrote " << o->out << "\n";
  });
}

void add_scatter(CLI::App& app, const PictureOpt& o) {
  CLI::App* sc = app.add_subcommand("scatter", "For a 2-D latent space: the posterior means coloured by label (PNG)");
  sc->add_option("--model", o->model, "A run's OUT directory or its model.safetensors")->required();
  sc->add_option("--data", o->data, "Images (IDX or NPY); default: the model's test set");
  add_condition_option(sc, o->condition);
  sc->add_option("--labels", o->labels, "Their labels (IDX); default: Fashion-MNIST's test labels");
  sc->add_option("--points", o->points, "At most this many items")->capture_default_str();
  sc->add_option("--out", o->out, "The PNG to write")->required();
  add_device_option(sc, o->device);
  sc->footer("\nExample: vae scatter --model runs/z2 --out latent.png");
  sc->callback([o]() {
    if (o->points < 1) throw_error("--points must be >= 1, got ", o->points);
    const SavedModel m = load_model_arg(o->model);
    const bool default_labels = o->labels.empty();
    const std::string labels_path = default_labels ? default_fashion_mnist_labels(false) : o->labels;
    const Dataset data = load_data_arg(o->data, m, false, o->condition);
    const std::vector<std::uint8_t> labels = read_idx_labels(labels_path);
    // Labels of other images would colour every point wrongly; the counts are all there is to check.
    if (static_cast<std::int64_t>(labels.size()) != data.count)
      throw_error(default_labels ? "the default labels (Fashion-MNIST's test set) '" : "--labels '", labels_path,
                  "' has ", labels.size(), " labels but ", o->data.empty() ? "the model's test set '" : "--data '",
                  data.source, "' has ", data.count, " images; give the labels of those images");
    write_latent_scatter_png(o->out, *backend_for(m, o->device, 0, std::cout), m.model, data, labels, o->points,
                             default_labels ? fashion_mnist_classes() : std::vector<std::string>{});
    std::cout << "wrote " << o->out << "\n";
  });
}

void add_plot(CLI::App& app, const PictureOpt& o) {
  CLI::App* p = app.add_subcommand("plot", "The ELBO curve of a run from its metrics.csv (PNG)");
  p->add_option("--run", o->metrics, "A run's OUT directory or its metrics.csv")->required();
  p->add_option("--out", o->out, "The PNG to write")->required();
  p->footer("\nExample: vae plot --run runs/fashion-mnist --out elbo.png");
  p->callback([o]() {
    std::error_code ec;
    write_elbo_curve_png(o->out, fs::is_directory(o->metrics, ec) ? o->metrics + "/metrics.csv" : o->metrics);
    std::cout << "wrote " << o->out << "\n";
  });
}

}  // namespace

void add_model_tools(CLI::App& app) {
  add_eval(app);
  add_gradvar(app);
  const auto pictures = std::make_shared<PictureOptions>();
  for (auto add : {add_sample, add_reconstruct, add_interpolate, add_scatter, add_plot}) add(app, pictures);
}

}  // namespace vae::cli
