// Timing and reporting of bench/gpu_kernels.cu: CUDA events around each repeat of a
// variant, the median (and min, p90) of the repeats after a warm-up, and the table and JSON
// of the rows (the JSON that bench/gpu_proof.sh brings back from a GPU machine).
#pragma once
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "cuda_check.cuh"
#include "vae/error.h"

namespace vae::bench {

struct Stats {
  double median_us = 0, min_us = 0, p90_us = 0;
};

class Timer {
 public:
  // gap(): enqueued before each timed repeat (a spin kernel that keeps the GPU busy while
  // the host enqueues the repeat, so a time is GPU execution, not host launch latency).
  Timer(cudaStream_t stream, int warmup, int repeats, std::function<void()> gap)
      : stream_(stream), warmup_(warmup), repeats_(repeats), gap_(std::move(gap)) {
    VAE_CUDA_CHECK(cudaEventCreate(&start_));
    VAE_CUDA_CHECK(cudaEventCreate(&stop_));
  }
  ~Timer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // fn(set) for set = repeat % sets (sets = 1: always the same buffers).
  Stats time(const std::function<void(int)>& fn, int sets) {
    for (int i = 0; i < warmup_; ++i) fn(i % sets);
    VAE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    std::vector<double> us;
    for (int r = 0; r < repeats_; ++r) {
      gap_();
      VAE_CUDA_CHECK(cudaEventRecord(start_, stream_));
      fn(r % sets);
      VAE_CUDA_CHECK(cudaEventRecord(stop_, stream_));
      VAE_CUDA_CHECK(cudaEventSynchronize(stop_));
      float ms = 0;
      VAE_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
      us.push_back(1e3 * double(ms));
    }
    std::sort(us.begin(), us.end());
    Stats s;
    s.median_us = us.size() % 2 ? us[us.size() / 2] : 0.5 * (us[us.size() / 2 - 1] + us[us.size() / 2]);
    s.min_us = us.front();
    s.p90_us = us[std::min(us.size() - 1, static_cast<std::size_t>(0.9 * double(us.size())))];
    return s;
  }

 private:
  cudaStream_t stream_;
  int warmup_, repeats_;
  std::function<void()> gap_;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

struct Row {
  std::string op, shape, variant, check;
  int batch = 0, launches = 0;  // batch 0: independent of the batch
  double bytes = 0, flops = 0;
  Stats cold, hot;
};

// What the rows were measured on and how.
struct RunInfo {
  cudaDeviceProp prop{};
  std::size_t l2 = 0;
  int repeats = 0, warmup = 0, failed_checks = 0;
};

// Buffer sets whose total exceeds twice the L2 (at most 64 sets and 2 GiB).
inline int sets_for(std::size_t bytes_per_set, std::size_t l2) {
  const std::size_t want = (2 * l2) / std::max<std::size_t>(1, bytes_per_set) + 2;
  const std::size_t cap = (std::size_t(2) << 30) / std::max<std::size_t>(1, bytes_per_set);
  return static_cast<int>(std::max<std::size_t>(1, std::min<std::size_t>({want, 64, cap})));
}

inline std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}
inline double gbps(const Row& r, const Stats& s) { return s.median_us > 0 ? r.bytes / (s.median_us * 1e3) : 0; }

// cuBLAS GEMM + bias_act against the cuBLASLt epilogue, hot medians summed over both
// hidden layers' shapes, at the reference training batch 128 (else the smallest measured).
struct Verdict {
  int batch = 0;
  double ours_us = 0, lt_us = 0;
  bool lt_faster = false;
};
inline Verdict verdict(const std::vector<Row>& rows) {
  Verdict v;
  for (const auto& r : rows) {
    if (r.op != "gemm_bias_relu") continue;
    if (v.batch == 0 || (v.batch != 128 && (r.batch == 128 || r.batch < v.batch))) v.batch = r.batch;
  }
  for (const auto& r : rows) {
    if (r.op != "gemm_bias_relu" || r.batch != v.batch) continue;
    (r.variant == "cublaslt_epilogue" ? v.lt_us : v.ours_us) += r.hot.median_us;
  }
  v.lt_faster = v.lt_us > 0 && v.lt_us < v.ours_us;
  return v;
}

inline void print_table(const std::vector<Row>& rows, const RunInfo& info) {
  const cudaDeviceProp& p = info.prop;
  std::printf("\n%s (sm_%d%d, %d SMs, L2 %.0f MB); median of %d repeats after %d warm-up, microseconds\n", p.name,
              p.major, p.minor, p.multiProcessorCount, double(info.l2) / 1e6, info.repeats, info.warmup);
  std::printf("%-22s %-26s %-18s %3s %10s %10s %9s %10s %9s  %s\n", "op", "shape", "variant", "ln", "cold_us",
              "cold_p90", "cold_GB/s", "hot_us", "hot_GB/s", "check");
  for (const auto& r : rows) {
    std::string extra;
    if (r.flops > 0) extra = fmt("  %.0f GFLOP/s hot", r.flops / (r.hot.median_us * 1e3));
    std::printf("%-22s %-26s %-18s %3d %10.2f %10.2f %9.1f %10.2f %9.1f  %s%s\n", r.op.c_str(), r.shape.c_str(),
                r.variant.c_str(), r.launches, r.cold.median_us, r.cold.p90_us, gbps(r, r.cold), r.hot.median_us,
                gbps(r, r.hot), r.check.c_str(), extra.c_str());
  }
  std::printf("\ntime ratios (second variant / first: > 1 means the first is faster):\n");
  for (std::size_t i = 0; i + 1 < rows.size(); ++i) {
    const Row& a = rows[i];
    const Row& b = rows[i + 1];
    if (a.op != b.op || a.shape != b.shape) continue;
    std::printf("  %-22s %-26s %s / %s: %.2fx cold, %.2fx hot\n", a.op.c_str(), a.shape.c_str(), b.variant.c_str(),
                a.variant.c_str(), b.cold.median_us / a.cold.median_us, b.hot.median_us / a.hot.median_us);
  }
  const Verdict v = verdict(rows);
  std::printf(
      "\nGEMM + bias + ReLU at batch %d: cuBLAS + bias_act %.2f us, cuBLASLt epilogue %.2f us (hot, both "
      "hidden layers): %s\n",
      v.batch, v.ours_us, v.lt_us,
      v.lt_faster ? "the epilogue is faster (CudaBackendOptions::lt_bias_relu = true)"
                  : "keep cuBLAS + bias_act (CudaBackendOptions::lt_bias_relu = false)");
}

inline std::string json_escape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    if (ch == '"' || ch == '\\') o += '\\';
    o += ch;
  }
  return o;
}

inline void write_row(std::ostringstream& j, const Row& r) {
  j << "    {\"op\": \"" << r.op << "\", \"shape\": \"" << r.shape << "\", \"batch\": " << r.batch
    << ", \"variant\": \"" << r.variant << "\", \"launches\": " << r.launches << ", \"bytes\": " << r.bytes
    << ", \"flops\": " << r.flops << ", \"cold\": {\"median_us\": " << r.cold.median_us
    << ", \"min_us\": " << r.cold.min_us << ", \"p90_us\": " << r.cold.p90_us << ", \"gbps\": " << gbps(r, r.cold)
    << "}, \"hot\": {\"median_us\": " << r.hot.median_us << ", \"min_us\": " << r.hot.min_us
    << ", \"p90_us\": " << r.hot.p90_us << ", \"gbps\": " << gbps(r, r.hot) << "}, \"check\": \""
    << json_escape(r.check) << "\"}";
}

inline void write_json(const std::string& path, const std::vector<Row>& rows, const RunInfo& info) {
  std::ostringstream j;
  char date[64];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  j << "{\n  \"program\": \"gpu_kernels\",\n  \"date\": \"" << date << "\",\n  \"device\": \""
    << json_escape(info.prop.name) << "\",\n  \"sm\": \"" << info.prop.major << info.prop.minor
    << "\",\n  \"sms\": " << info.prop.multiProcessorCount << ",\n  \"l2_bytes\": " << info.l2
    << ",\n  \"cuda_driver\": " << driver << ",\n  \"cuda_runtime\": " << runtime
    << ",\n  \"repeats\": " << info.repeats << ",\n  \"warmup\": " << info.warmup
    << ",\n  \"timing\": \"CUDA events per repeat behind a 100 us spin kernel (GPU time, launch gaps included); "
       "median, min, p90 in microseconds; cold: buffer sets rotated over more than twice the L2; hot: one set; "
       "gbps: the operation's minimal traffic over the median time\",\n  \"results\": [\n";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    write_row(j, rows[i]);
    j << (i + 1 < rows.size() ? "," : "") << "\n";
  }
  const Verdict v = verdict(rows);
  j << "  ],\n  \"gemm_bias_relu_verdict\": {\"batch\": " << v.batch << ", \"cublas_bias_act_us\": " << v.ours_us
    << ", \"cublaslt_epilogue_us\": " << v.lt_us << ", \"lt_bias_relu_faster\": " << (v.lt_faster ? "true" : "false")
    << ", \"note\": \"hot medians at that batch, summed over the 784->400 and 20->400 layers; "
       "CudaBackendOptions::lt_bias_relu selects the epilogue\"},\n  \"failed_checks\": "
    << info.failed_checks << "\n}\n";
  std::ofstream f(path);
  if (!f) throw Error("cannot write " + path);
  f << j.str();
  if (!f) throw Error("writing " + path + " failed");
  std::printf("wrote %s\n", path.c_str());
}

}  // namespace vae::bench
