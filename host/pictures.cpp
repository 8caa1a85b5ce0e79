// Pictures of a model and of a run: samples, reconstructions, interpolations, the ELBO curve
// and the 2-D latent scatter.
#include "vae/pictures.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "canvas.h"
#include "internal.h"
#include "rng.h"
#include "vae/backend.h"
#include "vae/error.h"
#include "vae/io.h"
#include "vae/options.h"

namespace vae {
namespace {

const Rgb kInk{40, 40, 40}, kGrid{225, 225, 225}, kAxis{120, 120, 120};
const Rgb kPalette[10] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},  {148, 103, 189},
                          {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};

// One panel of a line chart: axes, ticks, grid, the series and a legend.
struct Series {
  std::string name;
  std::vector<double> x, y;
  Rgb color;
};

void draw_panel(Canvas& c, int left, int top, int width, int height, const std::string& title, const std::string& xlabel,
                const std::vector<Series>& series) {
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const auto& s : series)
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]);
      y0 = std::min(y0, s.y[i]), y1 = std::max(y1, s.y[i]);
    }
  if (!std::isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 == x0) x0 -= 1, x1 += 1;
  const double pad = (y1 - y0) * 0.08 + 1e-9;
  y0 -= pad, y1 += pad;
  const int pl = left + 58, pr = left + width - 12, pt = top + 30, pb = top + height - 42;
  auto X = [&](double v) { return pl + (v - x0) / (x1 - x0) * (pr - pl); };
  auto Y = [&](double v) { return pb - (v - y0) / (y1 - y0) * (pb - pt); };
  const auto yt = nice_ticks(y0, y1, 5), xt = nice_ticks(x0, x1, std::min(8, static_cast<int>(x1 - x0) + 1));
  for (double v : yt) {
    c.line(pl, Y(v), pr, Y(v), kGrid, 1.0);
    c.text(pl - 6, Y(v) + 4, format_tick(v, yt.size() > 1 ? yt[1] - yt[0] : 1), 11, kInk, Canvas::Align::right);
  }
  for (double v : xt) {
    if (std::fabs(v - std::round(v)) > 1e-9) continue;  // epochs are whole numbers
    c.line(X(v), pb, X(v), pb + 4, kAxis, 1.0);
    c.text(X(v), pb + 17, format_tick(v, 1), 11, kInk, Canvas::Align::center);
  }
  c.line(pl, pt, pl, pb, kAxis, 1.0);
  c.line(pl, pb, pr, pb, kAxis, 1.0);
  c.text((pl + pr) / 2.0, top + 18, title, 14, kInk, Canvas::Align::center);
  c.text((pl + pr) / 2.0, pb + 34, xlabel, 12, kInk, Canvas::Align::center);
  int ly = pt + 14;
  for (const auto& s : series) {
    for (std::size_t i = 1; i < s.x.size(); ++i)
      if (std::isfinite(s.y[i - 1]) && std::isfinite(s.y[i])) c.line(X(s.x[i - 1]), Y(s.y[i - 1]), X(s.x[i]), Y(s.y[i]), s.color, 2.0);
    for (std::size_t i = 0; i < s.x.size(); ++i)
      if (std::isfinite(s.y[i])) c.dot(X(s.x[i]), Y(s.y[i]), 3.0, s.color);
    if (series.size() > 1) {
      c.line(pr - 110, ly - 4, pr - 90, ly - 4, s.color, 2.0);
      c.text(pr - 84, ly, s.name, 12, kInk);
      ly += 16;
    }
  }
}

// The pictures take the backend and its ModelConfig; a config that is not the backend's
// (another latent size, other widths) would draw nonsense, so it is refused.
void check_backend_model(const Backend& backend, const ModelConfig& model, const char* who) {
  const ParamLayout want(model);
  if (!want.same_tensors(backend.layout()))
    throw_error(who, ": the ModelConfig passed (input ", model.input_dim, ", latent ", model.latent, ", ",
                want.total(), " parameters) is not the backend's model (", backend.layout().total(),
                " parameters); pass the ModelConfig the backend was made with");
}

void check_picturable(const ModelConfig& model) {
  const std::string why = why_no_pictures(model);
  if (!why.empty()) throw_error(why);
}

}  // namespace

std::string why_no_pictures(const ModelConfig& model) {
  if (counts_likelihood(model.likelihood))
    return "the " + std::string(to_string(model.likelihood)) +
           " decoder's means are counts, not pixel intensities in [0, 1]: no picture drawn";
  return "";
}

std::vector<float> prior_samples(Backend& backend, const ModelConfig& model, int n, std::uint64_t seed,
                                 const Condition& condition) {
  if (n < 1) throw_error("prior_samples: n must be >= 1, got ", n);
  check_backend_model(backend, model, "prior_samples");
  const std::size_t count = static_cast<std::size_t>(n) * model.latent;
  std::vector<float> z(round_up_even(count));
  HostPhilox(derive_seed(seed, RngStream::pictures)).normal(z.data(), count, 0);
  z.resize(count);
  return backend.decode_means(z, condition);
}

Condition class_grid_condition(const ModelConfig& model, int per_class) {
  if (model.condition != ConditionKind::classes)
    throw_error("class_grid_condition: the model is not conditioned on classes");
  if (per_class < 1) throw_error("class_grid_condition: per_class must be >= 1, got ", per_class);
  std::vector<std::int64_t> labels;
  for (int k = 0; k < model.condition_dim; ++k) labels.insert(labels.end(), static_cast<std::size_t>(per_class), k);
  return condition_from_labels(labels, model.condition_dim, "every class");
}

void write_samples_png(const std::string& path, Backend& backend, const ModelConfig& model, int n, int height,
                       int width, std::uint64_t seed, const Condition& condition, int cols) {
  if (n < 1 || n > 4096) throw_error("--n must be in [1, 4096], got ", n);
  check_backend_model(backend, model, "write_samples_png");
  check_picturable(model);
  if (height * width != model.input_dim) {
    height = 1;
    width = model.input_dim;
  }
  const std::vector<float> mean = prior_samples(backend, model, n, seed, condition);
  write_png_grid(path, mean, n, height, width, cols > 0 ? cols : std::max(1, static_cast<int>(std::lround(std::sqrt(n)))));
}

void write_reconstructions_png(const std::string& path, Backend& backend, const ModelConfig& model,
                               const Dataset& data, int n) {
  check_backend_model(backend, model, "write_reconstructions_png");
  check_picturable(model);
  check_data(model, data);
  n = static_cast<int>(std::min<std::int64_t>(n, data.count));
  if (n < 1) throw_error("reconstructions: no items");
  const int D = data.dim, cols = std::min(8, n);
  const Condition cond = data.condition.empty() ? Condition{} : data.condition.rows(0, n);
  std::vector<float> rec = backend.decode_means(backend.encode_means(data, 0, n), cond);
  std::vector<float> x(static_cast<std::size_t>(n) * D);
  for (int i = 0; i < n; ++i) data.row(i, x.data() + static_cast<std::size_t>(i) * D);
  std::vector<float> grid;
  int count = 0;
  for (int r0 = 0; r0 < n; r0 += cols)
    for (const auto* src : {&x, &rec})
      for (int i = 0; i < cols; ++i, ++count) {
        if (r0 + i < n)
          grid.insert(grid.end(), src->begin() + static_cast<std::ptrdiff_t>(r0 + i) * D,
                      src->begin() + static_cast<std::ptrdiff_t>(r0 + i + 1) * D);
        else
          grid.insert(grid.end(), static_cast<std::size_t>(D), 0.0f);
      }
  write_png_grid(path, grid, count, data.height, data.width, cols);
}

void write_interpolation_png(const std::string& path, Backend& backend, const ModelConfig& model, const Dataset& data,
                             std::int64_t from, std::int64_t to, int steps) {
  check_backend_model(backend, model, "write_interpolation_png");
  check_picturable(model);
  check_data(model, data);
  if (from < 0 || from >= data.count || to < 0 || to >= data.count)
    throw_error("--from and --to must be item numbers in [0, ", data.count, "), got ", from, " and ", to);
  if (steps < 2 || steps > 64) throw_error("--steps must be in [2, 64], got ", steps);
  const int Z = model.latent, D = data.dim;
  const std::vector<float> a = backend.encode_means(data, from, 1), b = backend.encode_means(data, to, 1);
  std::vector<float> z(static_cast<std::size_t>(steps) * Z);
  for (int s = 0; s < steps; ++s) {
    const float t = static_cast<float>(s) / static_cast<float>(steps - 1);
    for (int j = 0; j < Z; ++j) z[static_cast<std::size_t>(s) * Z + j] = (1 - t) * a[j] + t * b[j];
  }
  Condition cond = data.condition;  // from the one item's condition to the other's
  if (!cond.empty()) {
    const std::size_t C = static_cast<std::size_t>(cond.dim);
    const Condition ca = cond.rows(from, 1), cb = cond.rows(to, 1);
    cond.values.resize(static_cast<std::size_t>(steps) * C);
    for (int s = 0; s < steps; ++s) {
      const float t = static_cast<float>(s) / static_cast<float>(steps - 1);
      for (std::size_t j = 0; j < C; ++j) cond.values[s * C + j] = (1 - t) * ca.values[j] + t * cb.values[j];
    }
  }
  const std::vector<float> path_means = backend.decode_means(z, cond);
  std::vector<float> grid(static_cast<std::size_t>(steps + 2) * D);
  data.row(from, grid.data());
  std::copy(path_means.begin(), path_means.end(), grid.begin() + D);
  data.row(to, grid.data() + static_cast<std::size_t>(steps + 1) * D);
  write_png_grid(path, grid, steps + 2, data.height, data.width, steps + 2);
}

void write_elbo_curve_png(const std::string& path, const std::string& metrics_csv) {
  std::ifstream in(metrics_csv);
  if (!in) throw_error("cannot open '", metrics_csv, "'");
  std::string line;
  if (!std::getline(in, line) || line.rfind("epoch,train_loss,test_loss,test_recon,test_kl", 0) != 0)
    throw_error("'", metrics_csv, "' is not a vae metrics.csv (its header is '", line, "')");
  std::vector<double> epoch, train, test, recon, kl;
  int row = 1;
  while (std::getline(in, line)) {
    ++row;
    if (line.empty()) continue;
    std::stringstream ss(line);
    std::string cell;
    double v[5];
    for (int k = 0; k < 5; ++k) {
      if (!std::getline(ss, cell, ',')) throw_error("'", metrics_csv, "' row ", row, " has fewer than 5 columns");
      try {
        v[k] = std::stod(cell);
      } catch (const std::exception&) {
        throw_error("'", metrics_csv, "' row ", row, ": '", cell, "' is not a number");
      }
    }
    epoch.push_back(v[0]), train.push_back(v[1]), test.push_back(v[2]), recon.push_back(v[3]), kl.push_back(v[4]);
  }
  if (epoch.empty()) throw_error("'", metrics_csv, "' has no epochs yet");
  Canvas c(1260, 420);
  draw_panel(c, 0, 0, 420, 420, "-ELBO (nats per data point)", "epoch",
             {{"train", epoch, train, kPalette[0]}, {"test", epoch, test, kPalette[1]}});
  draw_panel(c, 420, 0, 420, 420, "test reconstruction -E[log p(x|z)]", "epoch", {{"recon", epoch, recon, kPalette[2]}});
  draw_panel(c, 840, 0, 420, 420, "test KL(q(z|x) || p(z))", "epoch", {{"KL", epoch, kl, kPalette[3]}});
  c.write_png(path);
}

void write_latent_scatter_png(const std::string& path, Backend& backend, const ModelConfig& model, const Dataset& data, const std::vector<std::uint8_t>& labels, std::int64_t max_points,
                              const std::vector<std::string>& class_names) {
  if (model.latent != 2) throw_error("the latent scatter needs a 2-D latent space; this model has ", flag_of("latent"), " ", model.latent);
  check_backend_model(backend, model, "write_latent_scatter_png");
  check_data(model, data);
  if (max_points < 1) throw_error("the latent scatter needs max_points >= 1, got ", max_points);
  if (data.count < 1) throw_error("the latent scatter: '", data.source, "' holds no items");
  if (static_cast<std::int64_t>(labels.size()) < data.count)
    throw_error("the labels hold ", labels.size(), " entries for ", data.count, " items of '", data.source, "'");
  const std::int64_t n = std::min(max_points, data.count);
  const std::vector<float> mu = backend.encode_means(data, 0, n);
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (std::int64_t i = 0; i < n; ++i) {
    x0 = std::min(x0, double(mu[2 * i])), x1 = std::max(x1, double(mu[2 * i]));
    y0 = std::min(y0, double(mu[2 * i + 1])), y1 = std::max(y1, double(mu[2 * i + 1]));
  }
  const double px = (x1 - x0) * 0.05 + 1e-6, py = (y1 - y0) * 0.05 + 1e-6;
  x0 -= px, x1 += px, y0 -= py, y1 += py;
  Canvas c(900, 720);
  const int pl = 60, pr = 700, pt = 40, pb = 670;
  auto X = [&](double v) { return pl + (v - x0) / (x1 - x0) * (pr - pl); };
  auto Y = [&](double v) { return pb - (v - y0) / (y1 - y0) * (pb - pt); };
  const auto xt = nice_ticks(x0, x1, 6), yt = nice_ticks(y0, y1, 6);
  for (double v : xt) {
    c.line(X(v), pt, X(v), pb, kGrid, 1.0);
    c.text(X(v), pb + 16, format_tick(v, xt.size() > 1 ? xt[1] - xt[0] : 1), 11, kInk, Canvas::Align::center);
  }
  for (double v : yt) {
    c.line(pl, Y(v), pr, Y(v), kGrid, 1.0);
    c.text(pl - 6, Y(v) + 4, format_tick(v, yt.size() > 1 ? yt[1] - yt[0] : 1), 11, kInk, Canvas::Align::right);
  }
  c.line(pl, pt, pl, pb, kAxis, 1.0);
  c.line(pl, pb, pr, pb, kAxis, 1.0);
  for (std::int64_t i = 0; i < n; ++i) c.dot(X(mu[2 * i]), Y(mu[2 * i + 1]), 1.8, kPalette[labels[i] % 10], 0.6f);
  c.text((pl + pr) / 2.0, 24, "posterior means mu of " + std::to_string(n) + " items, coloured by label", 14, kInk,
         Canvas::Align::center);
  c.text((pl + pr) / 2.0, pb + 40, "z1", 12, kInk, Canvas::Align::center);
  c.text(20, (pt + pb) / 2.0, "z2", 12, kInk, Canvas::Align::center);
  const int classes = 1 + *std::max_element(labels.begin(), labels.begin() + static_cast<std::ptrdiff_t>(n));
  for (int k = 0; k < std::min(classes, 10); ++k) {
    const int y = pt + 10 + 22 * k;
    c.dot(pr + 24, y - 4, 5, kPalette[k]);
    c.text(pr + 36, y, k < static_cast<int>(class_names.size()) ? class_names[k] : std::to_string(k), 13, kInk);
  }
  c.write_png(path);
}

const std::vector<std::string>& fashion_mnist_classes() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                 "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return names;
}

}  // namespace vae
