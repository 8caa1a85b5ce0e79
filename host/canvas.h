// A small RGB canvas for the plots: lines, dots, rectangles and text (FreeType with the
// DejaVu Sans font from Debian's fonts-dejavu-core), written as PNG. Internal to libvae.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace vae {

struct Rgb {
  std::uint8_t r = 0, g = 0, b = 0;
};

class Canvas {
 public:
  Canvas(int width, int height, Rgb background = {255, 255, 255});
  ~Canvas();
  Canvas(const Canvas&) = delete;
  Canvas& operator=(const Canvas&) = delete;

  int width() const { return w_; }
  int height() const { return h_; }
  void blend(int x, int y, Rgb c, float alpha);  // alpha in [0,1]
  void fill_rect(int x0, int y0, int x1, int y1, Rgb c);
  void line(double x0, double y0, double x1, double y1, Rgb c, double width = 1.0);
  void dot(double x, double y, double radius, Rgb c, float alpha = 1.0f);
  // Text with its left end (or centre, or right end) at x and its baseline at y; returns
  // its width in pixels. Draws nothing, and returns 0, when no font could be loaded.
  enum class Align { left, center, right };
  int text(double x, double y, const std::string& s, int pixel_size, Rgb c, Align align = Align::left);
  int text_width(const std::string& s, int pixel_size);
  bool has_font() const;
  // Grey image (h, w) in [0,1] with its top-left corner at (x, y).
  void image(int x, int y, const float* pixels, int h, int w, int scale = 1);
  void write_png(const std::string& path) const;

 private:
  struct Font;
  int w_, h_;
  std::vector<std::uint8_t> rgb_;
  std::unique_ptr<Font> font_;
};

// "Nice" axis ticks covering [lo, hi]: about `target` steps of 1, 2 or 5 times a power of 10.
std::vector<double> nice_ticks(double lo, double hi, int target);
std::string format_tick(double v, double step);

}  // namespace vae
