// The plotting canvas: anti-aliased lines and dots, FreeType text, PNG output.
#include "canvas.h"

#include <ft2build.h>
#include FT_FREETYPE_H

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "vae/error.h"
#include "vae/io.h"

namespace vae {

struct Canvas::Font {
  FT_Library lib = nullptr;
  FT_Face face = nullptr;
  ~Font() {
    if (face) FT_Done_Face(face);
    if (lib) FT_Done_FreeType(lib);
  }
};

namespace {
const char* kFontPaths[] = {"/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                            "/usr/share/fonts/dejavu/DejaVuSans.ttf",
                            "/usr/share/fonts/TTF/DejaVuSans.ttf"};
}

Canvas::Canvas(int width, int height, Rgb bg) : w_(width), h_(height), rgb_(static_cast<std::size_t>(width) * height * 3) {
  if (width <= 0 || height <= 0) throw_error("Canvas: size must be positive, got ", width, "x", height);
  for (std::size_t i = 0; i < rgb_.size(); i += 3) {
    rgb_[i] = bg.r;
    rgb_[i + 1] = bg.g;
    rgb_[i + 2] = bg.b;
  }
  auto f = std::make_unique<Font>();
  if (FT_Init_FreeType(&f->lib) == 0)
    for (const char* p : kFontPaths)
      if (FT_New_Face(f->lib, p, 0, &f->face) == 0) break;
  if (f->face) font_ = std::move(f);
}

Canvas::~Canvas() = default;

bool Canvas::has_font() const { return font_ != nullptr; }

void Canvas::blend(int x, int y, Rgb c, float a) {
  if (x < 0 || y < 0 || x >= w_ || y >= h_ || !(a > 0)) return;
  a = std::min(a, 1.0f);
  std::uint8_t* p = &rgb_[(static_cast<std::size_t>(y) * w_ + x) * 3];
  p[0] = static_cast<std::uint8_t>(std::lround(p[0] * (1 - a) + c.r * a));
  p[1] = static_cast<std::uint8_t>(std::lround(p[1] * (1 - a) + c.g * a));
  p[2] = static_cast<std::uint8_t>(std::lround(p[2] * (1 - a) + c.b * a));
}

void Canvas::fill_rect(int x0, int y0, int x1, int y1, Rgb c) {
  for (int y = std::max(0, y0); y < std::min(h_, y1); ++y)
    for (int x = std::max(0, x0); x < std::min(w_, x1); ++x) blend(x, y, c, 1.0f);
}

// A line as a thin capsule: each pixel's coverage from its distance to the segment.
void Canvas::line(double x0, double y0, double x1, double y1, Rgb c, double width) {
  const double r = width / 2;
  const int xa = static_cast<int>(std::floor(std::min(x0, x1) - r - 1)), xb = static_cast<int>(std::ceil(std::max(x0, x1) + r + 1));
  const int ya = static_cast<int>(std::floor(std::min(y0, y1) - r - 1)), yb = static_cast<int>(std::ceil(std::max(y0, y1) + r + 1));
  const double dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy;
  for (int y = std::max(0, ya); y <= std::min(h_ - 1, yb); ++y)
    for (int x = std::max(0, xa); x <= std::min(w_ - 1, xb); ++x) {
      const double px = x + 0.5 - x0, py = y + 0.5 - y0;
      const double t = len2 > 0 ? std::clamp((px * dx + py * dy) / len2, 0.0, 1.0) : 0.0;
      const double d = std::hypot(px - t * dx, py - t * dy);
      blend(x, y, c, static_cast<float>(std::clamp(r + 0.5 - d, 0.0, 1.0)));
    }
}

void Canvas::dot(double cx, double cy, double radius, Rgb c, float alpha) {
  for (int y = static_cast<int>(cy - radius - 1); y <= static_cast<int>(cy + radius + 1); ++y)
    for (int x = static_cast<int>(cx - radius - 1); x <= static_cast<int>(cx + radius + 1); ++x) {
      const double d = std::hypot(x + 0.5 - cx, y + 0.5 - cy);
      blend(x, y, c, alpha * static_cast<float>(std::clamp(radius + 0.5 - d, 0.0, 1.0)));
    }
}

int Canvas::text_width(const std::string& s, int size) {
  if (!font_) return 0;
  FT_Set_Pixel_Sizes(font_->face, 0, static_cast<FT_UInt>(size));
  long w = 0;
  for (unsigned char ch : s)
    if (FT_Load_Char(font_->face, ch, FT_LOAD_DEFAULT) == 0) w += font_->face->glyph->advance.x;
  return static_cast<int>(w >> 6);
}

int Canvas::text(double x, double y, const std::string& s, int size, Rgb c, Align align) {
  if (!font_) return 0;
  const int width = text_width(s, size);
  double pen = x - (align == Align::center ? width / 2.0 : align == Align::right ? width : 0.0);
  FT_Set_Pixel_Sizes(font_->face, 0, static_cast<FT_UInt>(size));
  for (unsigned char ch : s) {
    if (FT_Load_Char(font_->face, ch, FT_LOAD_RENDER) != 0) continue;
    const FT_GlyphSlot g = font_->face->glyph;
    const int left = static_cast<int>(std::lround(pen)) + g->bitmap_left;
    const int top = static_cast<int>(std::lround(y)) - g->bitmap_top;
    for (unsigned row = 0; row < g->bitmap.rows; ++row)
      for (unsigned col = 0; col < g->bitmap.width; ++col)
        blend(left + static_cast<int>(col), top + static_cast<int>(row), c,
              g->bitmap.buffer[row * static_cast<unsigned>(g->bitmap.pitch) + col] / 255.0f);
    pen += g->advance.x / 64.0;
  }
  return width;
}

void Canvas::image(int x0, int y0, const float* px, int h, int w, int scale) {
  for (int y = 0; y < h * scale; ++y)
    for (int x = 0; x < w * scale; ++x) {
      float v = px[static_cast<std::size_t>(y / scale) * w + x / scale];
      v = std::isfinite(v) ? std::clamp(v, 0.0f, 1.0f) : 0.0f;
      const auto g = static_cast<std::uint8_t>(std::lround(v * 255));
      blend(x0 + x, y0 + y, Rgb{g, g, g}, 1.0f);
    }
}

void Canvas::write_png(const std::string& path) const { vae::write_png(path, rgb_.data(), w_, h_, 3); }

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo)) {
    const double pad = std::max(1e-9, std::fabs(lo) * 0.05 + 1e-9);
    lo -= pad;
    hi += pad;
  }
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * mag) {
      step = m * mag;
      break;
    }
  std::vector<double> t;
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) t.push_back(std::fabs(v) < step * 1e-9 ? 0.0 : v);
  return t;
}

std::string format_tick(double v, double step) {
  char buf[32];
  const int decimals = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
  std::snprintf(buf, sizeof buf, "%.*f", std::min(decimals, 6), v);
  return buf;
}

}  // namespace vae
