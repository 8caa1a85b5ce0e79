// The CUDA backend: CudaModel plus the batch gather, device noise blocks, the optimizers,
// loss sums, one CUDA graph per training step, the resident or streamed training data, and
// the log-likelihood estimates.
//
// Per step the host does only this (no allocation, no sync):
//   1. if the step leaves the current noise block: refill it (cuRAND on the compute stream,
//      never inside a graph);
//   2. streamed data only: gather the batch's rows into a pinned slot and copy them on the
//      copy stream into a device slot (events order copy vs compute, so the copy overlaps
//      the steps still running);
//   3. write the step record (StepHeader with the step's scalars from step_scalars():
//      learning rate, beta, the groups to update; + indices) into a pinned ring slot, one
//      cudaMemcpyAsync to the device record, an event guarding the slot's reuse;
//   4. cudaGraphLaunch of the step graph for this batch size (captured on first use):
//      gather -> forward -> likelihood -> loss sums -> backward -> step guard -> optimizer.
// The step guard (step_guard.cuh) drops a step whose loss or gradient is not finite, on
// the device; the groups' update counts, the dropped steps and the halt live in device
// memory too.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend_shared.h"
#include "cuda_backend.cuh"
#include "cuda_check.cuh"
#include "cuda_graph.cuh"
#include "cuda_handles.cuh"
#include "cuda_model.cuh"
#include "device_memory.cuh"
#include "gather.cuh"
#include "importance.cuh"
#include "layers.cuh"
#include "internal.h"
#include "loss_sums.cuh"
#include "noise.cuh"
#include "optimizer.cuh"
#include "step_guard.cuh"
#include "step_record.cuh"
#include "vae/error.h"
#include "vae/rng.h"

namespace vae {
namespace gpu {
namespace {

constexpr std::size_t kBlasWorkspaceBytes = std::size_t(32) << 20;  // cuBLAS's advice for Hopper
// estimate_log_likelihood: sample rows per pass, and noise values per data-point block
// (each of iw_q and iw_prior); samples per pass and data point: kIwChunk, the CPU path's.
constexpr int kIwRows = 8192;
constexpr std::size_t kIwNoiseValues = std::size_t(1) << 22;

__global__ void probe_kernel() {}

// What estimate_log_likelihood needs besides the backend's own buffers: a model sized for
// n_max data points x chunk samples (sharing the parameters by copy), the iw_q / iw_prior
// noise for n_max data points at a time (a NoiseBlock whose "step" is the data point), and
// the per-data-point running sums. Kept between calls with the same k.
struct IwWorkspace {
  IwWorkspace(const ModelConfig& m, std::uint64_t seed, int n_max_, int chunk_, std::size_t stride_,
              cudaStream_t stream, cublasHandle_t blas, LtBiasRelu* lt)
      : n_max(n_max_),
        chunk(chunk_),
        stride(stride_),
        model(m, n_max_, n_max_ * chunk_, stream, blas, lt),
        q_noise(derive_seed(seed, RngStream::iw_q), NoiseBlock::Kind::normal, stride_,
                static_cast<std::size_t>(n_max_) * stride_, stream, "log p(x) estimate noise (q)"),
        prior_noise(derive_seed(seed, RngStream::iw_prior), NoiseBlock::Kind::normal, stride_,
                    static_cast<std::size_t>(n_max_) * stride_, stream, "log p(x) estimate noise (prior)"),
        eps(static_cast<std::size_t>(n_max_) * static_cast<std::size_t>(chunk_) * static_cast<std::size_t>(m.latent),
            "log p(x) estimate samples"),
        stage(static_cast<std::size_t>(n_max_) * static_cast<std::size_t>(m.input_dim) * 4, "log p(x) estimate rows"),
        running(static_cast<std::size_t>(n_max_), "log p(x) estimate running sums"),
        totals(1, "log p(x) estimate sums"),
        host_totals(1, "log p(x) estimate read-back") {}

  int n_max, chunk;
  std::size_t stride;
  CudaModel model;
  NoiseBlock q_noise, prior_noise;
  DeviceBuffer<float> eps;              // (n_max * chunk, Z)
  DeviceBuffer<unsigned char> stage;    // (n_max, D) rows, uint8 or float
  DeviceBuffer<IwRunning> running;      // (n_max)
  DeviceBuffer<DeviceLikelihoodSums> totals;
  PinnedBuffer<DeviceLikelihoodSums> host_totals;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(const ModelConfig& model, const TrainConfig& train, const CudaBackendOptions& opt)
      : model_cfg_(model),
        train_(train),
        opt_(opt),
        device_(current_device()),
        workspace_(kBlasWorkspaceBytes, "the cuBLAS workspace"),
        blas_(configure_blas(blas_handle_.get(), compute_.get(), workspace_.get(), workspace_.bytes())),
        lt_(opt.lt_bias_relu ? std::make_unique<LtBiasRelu>(workspace_.get(), workspace_.bytes()) : nullptr),
        max_batch_(std::max(train.batch, train.eval_batch)),
        train_samples_(train_samples(model, train)),
        train_pass_(training_pass(train, train.estimator)),
        model_(model, max_batch_, max_rows(model, train), compute_.get(), blas_, lt_.get()),
        plan_(RngPlan::make(train.seed, model, train.batch, train_samples_)),
        eps_noise_(plan_.eps_seed, NoiseBlock::Kind::normal, plan_.eps_stride, opt.noise_block_values, compute_.get(),
                   "training noise (eps)"),
        eval_noise_(plan_.eval_seed, NoiseBlock::Kind::normal, RngPlan::eval_stride(model, train.eval_batch),
                    opt.noise_block_values, compute_.get(), "evaluation noise (eps)"),
        record_bytes_(step_record_bytes(max_batch_)),
        ring_(record_bytes_ * static_cast<std::size_t>(opt.record_slots), "the step-record ring"),
        ring_events_(static_cast<std::size_t>(opt.record_slots)),
        ring_used_(static_cast<std::size_t>(opt.record_slots), false),
        d_record_(record_bytes_, "the device step record"),
        sums_(3, "loss accumulators"),
        host_sums_(1, "loss read-back"),
        state_(1, "the step state (update counts, dropped steps)"),
        host_state_(1, "step-state read-back"),
        eval_stage_(static_cast<std::size_t>(train.eval_batch) * static_cast<std::size_t>(model.input_dim) * 4,
                    "evaluation rows") {
    if (train.binarize == Binarize::dynamic)
      bin_noise_ = std::make_unique<NoiseBlock>(plan_.bin_seed, NoiseBlock::Kind::uniform, plan_.bin_stride,
                                                opt.noise_block_values, compute_.get(), "binarization noise (uniforms)");
    cudaDeviceProp prop{};
    VAE_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
    name_ = std::string("cuda (") + prop.name + ", sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ")";
    VAE_CUDA_CHECK(cudaMemsetAsync(sums_.get(), 0, sums_.bytes(), compute_.get()));
    VAE_CUDA_CHECK(cudaMemsetAsync(d_record_.get(), 0, d_record_.bytes(), compute_.get()));
    *host_state_.get() = DeviceStepState{};
    VAE_CUDA_CHECK(cudaMemcpyAsync(state_.get(), host_state_.get(), sizeof(DeviceStepState), cudaMemcpyHostToDevice,
                                   compute_.get()));
    VAE_CUDA_CHECK(cudaStreamSynchronize(compute_.get()));
  }

  ~CudaBackend() override {
    VAE_CUDA_WARN(cudaStreamSynchronize(copy_.get()));
    VAE_CUDA_WARN(cudaStreamSynchronize(compute_.get()));
  }

  std::string name() const override { return name_; }
  const ParamLayout& layout() const override { return model_.layout(); }

  void set_parameters(const std::vector<float>& flat) override {
    check_size(flat.size(), "set_parameters");
    upload(model_.params(), flat.data(), flat.size());
  }
  std::vector<float> parameters() const override { return download(model_.params()); }
  std::vector<float> gradients() const override { return download(model_.grads()); }
  OptimizerState optimizer_state() const override {
    OptimizerState s;
    s.m = download(model_.state1());
    s.v = download(model_.state2());
    const DeviceStepState st = read_state();
    s.step = st.updates[0];
    s.step_decoder = st.updates[1];
    return s;
  }
  void set_optimizer_state(const OptimizerState& s) override {
    check_size(s.m.size(), "set_optimizer_state (m)");
    check_size(s.v.size(), "set_optimizer_state (v)");
    if (s.step < 0 || s.step_decoder < 0)
      throw_error("set_optimizer_state: negative step count (", s.step, ", ", s.step_decoder, ")");
    upload(model_.state1(), s.m.data(), s.m.size());
    upload(model_.state2(), s.v.data(), s.v.size());
    std::int64_t* h = host_state_.get()->updates;
    h[0] = s.step;
    h[1] = s.step_decoder;
    VAE_CUDA_CHECK(cudaMemcpyAsync(state_.get()->updates, h, sizeof(std::int64_t) * 2, cudaMemcpyHostToDevice,
                                   compute_.get()));
    VAE_CUDA_CHECK(cudaStreamSynchronize(compute_.get()));
  }

  void set_train_data(std::shared_ptr<const Dataset> data) override {
    if (!data) throw_error("set_train_data: no dataset");
    check_nonempty_data(model_cfg_, *data, "set_train_data", "training data");
    if (data->count > (std::int64_t(1) << 32))
      throw_error("training data '", data->source, "' has ", data->count, " items; batch indices are 32-bit");
    // Steps in flight may still read the old rows.
    VAE_CUDA_CHECK(cudaStreamSynchronize(copy_.get()));
    VAE_CUDA_CHECK(cudaStreamSynchronize(compute_.get()));
    data_.reset();
    d_data_ = DeviceBuffer<unsigned char>();
    const std::size_t bytes = static_cast<std::size_t>(data->count) * row_bytes(*data);
    std::size_t free_bytes = 0, total_bytes = 0;
    VAE_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    const std::size_t headroom =
        std::max<std::size_t>(std::size_t(1) << 30, static_cast<std::size_t>(opt_.resident_headroom * double(total_bytes)));
    streamed_ = train_.stream_data || bytes + headroom > free_bytes;
    if (!streamed_) {
      d_data_ = DeviceBuffer<unsigned char>(bytes, "the training set '" + data->source + "'");
      const void* src = data->is_u8() ? static_cast<const void*>(data->u8.data()) : static_cast<const void*>(data->f32.data());
      if (bytes) VAE_CUDA_CHECK(cudaMemcpyAsync(d_data_.get(), src, bytes, cudaMemcpyHostToDevice, compute_.get()));
      VAE_CUDA_CHECK(cudaStreamSynchronize(compute_.get()));
    } else {
      allocate_stream_slots();
    }
    steps_per_epoch_ = (data->count + train_.batch - 1) / train_.batch;
    data_ = std::move(data);
  }

  void train_step(const Batch& batch) override {
    check_batch(batch, batch.step, train_.batch, data_.get(), "train_step");
    const int n = batch.size;
    const int slot = prepare_step(batch, batch.step);
    auto it = opt_.use_graphs ? graphs_.find(n) : graphs_.end();
    if (it != graphs_.end()) {
      it->second.launch(compute_.get());
      finish_step(slot);
    } else {
      // Direct launches: without graphs, and for the first step of each batch size, which
      // also loads and initializes every kernel and cuBLAS path before the capture.
      enqueue_step(n);
      finish_step(slot);  // before the capture, so that a capture that throws leaves the slot's event recorded
      if (opt_.use_graphs) capture_step(n);  // recorded, not run: later steps of size n replay it
    }
  }

  // The same pass as a training step (direct launches, no graph), without the step guard,
  // the optimizer or the running sums: only the gradients and sums_[2] change.
  LossSums compute_gradient(const Batch& batch, std::int64_t noise_step, Estimator estimator) override {
    check_batch(batch, noise_step, train_.batch, data_.get(), "compute_gradient");
    const int n = batch.size;
    const int slot = prepare_step(batch, noise_step);
    enqueue_pass(n, training_pass(train_, estimator), sums_.get() + 2);
    finish_step(slot);
    return read_sums(2);
  }

  LossSums take_train_sums() override { return read_sums(0); }

  void restore_train_sums(const LossSums& sums) override {
    DeviceLossSums* h = host_sums_.get();
    h->loss = sums.loss;
    h->recon = sums.recon;
    h->kl = sums.kl;
    h->count = sums.count;
    VAE_CUDA_CHECK(cudaMemcpyAsync(sums_.get(), h, sizeof(DeviceLossSums), cudaMemcpyHostToDevice, compute_.get()));
    VAE_CUDA_CHECK(cudaStreamSynchronize(compute_.get()));  // the pinned staging is free again
  }

  LossSums evaluate(const Dataset& data) override {
    check_nonempty_data(model_cfg_, data, "evaluate");
    VAE_CUDA_CHECK(cudaMemsetAsync(sums_.get() + 1, 0, sizeof(DeviceLossSums), compute_.get()));
    const int batch = train_.eval_batch;
    std::int64_t k = 0;
    for (std::int64_t begin = 0; begin < data.count; begin += batch, ++k) {
      const int n = static_cast<int>(std::min<std::int64_t>(batch, data.count - begin));
      StepHeader h;
      h.step = k;
      h.eps_offset = eval_noise_.prepare(k);
      h.beta = model_cfg_.beta;
      upload_items(data, begin, n, h, eval_stage_.get(), model_.x());
      model_.run(eval_noise_.data(), &d_header()->eps_offset, n, model_cfg_.samples, Pass::forward, nullptr);
      loss_accumulate(model_.row_logp(), model_.kl(), nullptr, n, model_cfg_.samples, &d_header()->beta,
                      model_.recon(), sums_.get() + 1, true, compute_.get());
    }
    return read_sums(1);
  }

  // The CPU path's estimate (CpuBackend::estimate_log_likelihood) on the device: data point
  // i's k samples from q(z|x) and from p(z) at offset i * iw_stride of the iw_q and
  // iw_prior streams, chunk by chunk; per data point a running log-sum-exp in double over
  // its samples in order; the data points added in order. Training state is not touched.
  LikelihoodSums estimate_log_likelihood(const Dataset& data, int k) override {
    check_nonempty_data(model_cfg_, data, "estimate_log_likelihood");
    if (k < 1) throw_error("estimate_log_likelihood: k must be >= 1, got ", k);
    const int Z = model_cfg_.latent;
    const int chunk = std::min(k, kIwChunk);
    const std::size_t stride = RngPlan::iw_stride(model_cfg_, k);
    const int n_max = static_cast<int>(std::max<std::size_t>(
        1, std::min({static_cast<std::size_t>(max_batch_), static_cast<std::size_t>(kIwRows / chunk),
                     kIwNoiseValues / stride})));
    IwWorkspace& w = iw_workspace(n_max, chunk, stride);
    CudaModel& m = w.model;
    cudaStream_t st = compute_.get();
    VAE_CUDA_CHECK(cudaMemcpyAsync(m.params(), model_.params(), model_.total() * sizeof(float),
                                   cudaMemcpyDeviceToDevice, st));
    VAE_CUDA_CHECK(cudaMemsetAsync(w.totals.get(), 0, sizeof(DeviceLikelihoodSums), st));
    for (std::int64_t begin = 0; begin < data.count; begin += n_max) {
      const int n = static_cast<int>(std::min<std::int64_t>(n_max, data.count - begin));
      StepHeader h;
      h.step = begin;
      upload_items(data, begin, n, h, w.stage.get(), m.x());
      iw_reset(w.running.get(), n, st);
      for (int use_prior = 0; use_prior < 2; ++use_prior) {
        NoiseBlock& noise = use_prior ? w.prior_noise : w.q_noise;
        const float* block = noise.data() + noise.prepare(begin);  // data points begin .. begin + n_max
        for (int c0 = 0; c0 < k; c0 += chunk) {
          const int c = std::min(chunk, k - c0);
          iw_gather_chunk(block, n, stride, c0, c, Z, w.eps.get(), st);
          if (use_prior) {
            m.decode_log_likelihood(w.eps.get(), n, c);  // z = eps ~ N(0, I)
            iw_accumulate(m.row_logp(), nullptr, n, c, w.running.get(), st);
          } else {
            m.run(w.eps.get(), nullptr, n, c, Pass::forward, nullptr);
            iw_accumulate(m.row_logp(), m.lpq(), n, c, w.running.get(), st);
          }
        }
      }
      iw_finish(w.running.get(), m.kl(), n, k, w.totals.get(), st);
    }
    VAE_CUDA_CHECK(cudaMemcpyAsync(w.host_totals.get(), w.totals.get(), sizeof(DeviceLikelihoodSums),
                                   cudaMemcpyDeviceToHost, st));
    VAE_CUDA_CHECK(cudaStreamSynchronize(st));
    const DeviceLikelihoodSums& t = *w.host_totals.get();
    LikelihoodSums out;
    out.recon = t.recon;
    out.kl = t.kl;
    out.iwae = t.iwae;
    out.prior = t.prior;
    out.count = t.count;
    out.k = k;
    return out;
  }

  std::vector<float> encode_means(const Dataset& data, std::int64_t begin, std::int64_t n) override {
    check_encode_args(model_cfg_, data, begin, n);
    const int Z = model_cfg_.latent, chunk = train_.eval_batch;
    std::vector<float> head(static_cast<std::size_t>(std::min<std::int64_t>(chunk, n)) * 2 * Z);
    std::vector<float> mu(static_cast<std::size_t>(n) * Z);
    StepHeader h;
    h.eps_offset = eval_noise_.prepare(0);  // any resident noise: mu does not depend on it
    for (std::int64_t b = 0; b < n; b += chunk) {
      const int k = static_cast<int>(std::min<std::int64_t>(chunk, n - b));
      upload_items(data, begin + b, k, h, eval_stage_.get(), model_.x());
      model_.run(eval_noise_.data(), &d_header()->eps_offset, k, 1, Pass::forward, nullptr);
      VAE_CUDA_CHECK(cudaMemcpyAsync(head.data(), model_.head(), static_cast<std::size_t>(k) * 2 * Z * sizeof(float),
                                     cudaMemcpyDeviceToHost, compute_.get()));
      VAE_CUDA_CHECK(cudaStreamSynchronize(compute_.get()));
      for (int i = 0; i < k; ++i)
        std::copy_n(head.begin() + static_cast<std::ptrdiff_t>(i) * 2 * Z, Z,
                    mu.begin() + static_cast<std::ptrdiff_t>((b + i) * Z));
    }
    return mu;
  }

  std::vector<float> decode_means(const std::vector<float>& z) override {
    const std::int64_t rows = decode_rows(model_cfg_, z);
    const int Z = model_cfg_.latent, D = model_cfg_.input_dim, chunk = model_.max_rows();
    std::vector<float> out(static_cast<std::size_t>(rows) * D);
    if (rows == 0) return out;
    DeviceBuffer<float> codes(static_cast<std::size_t>(std::min<std::int64_t>(chunk, rows)) * Z, "decode_means codes");
    for (std::int64_t b = 0; b < rows; b += chunk) {
      const int k = static_cast<int>(std::min<std::int64_t>(chunk, rows - b));
      // Pageable copies: staged before the call returns; the download waits for the decoder.
      VAE_CUDA_CHECK(cudaMemcpyAsync(codes.get(), z.data() + b * Z, static_cast<std::size_t>(k) * Z * sizeof(float),
                                     cudaMemcpyHostToDevice, compute_.get()));
      model_.decode_mean(codes.get(), k);
      VAE_CUDA_CHECK(cudaMemcpyAsync(out.data() + b * D, model_.logits(), static_cast<std::size_t>(k) * D * sizeof(float),
                                     cudaMemcpyDeviceToHost, compute_.get()));
      VAE_CUDA_CHECK(cudaStreamSynchronize(compute_.get()));
    }
    return out;
  }

  StepHealth health() override {
    const DeviceStepState s = read_state();
    StepHealth h;
    h.bad_steps = s.bad_steps;
    h.first_bad_step = s.first_bad_step;
    h.halted = s.halted != 0;
    if (s.bad_steps > 0) h.first_bad_tensor = s.first_bad_index == -1 ? "loss" : tensor_at(s.first_bad_index);
    return h;
  }

  CudaBackendStats stats() const {
    CudaBackendStats s;
    s.streamed = streamed_;
    s.graphs = static_cast<int>(graphs_.size());
    s.eps_refills = eps_noise_.refills();
    s.bin_refills = bin_noise_ ? bin_noise_->refills() : 0;
    s.eval_refills = eval_noise_.refills();
    s.eps_steps_per_block = eps_noise_.steps_per_block();
    s.lt_plans = lt_ ? lt_->plans_with_algorithm() : 0;
    return s;
  }

 private:
  static int current_device() {
    int d = 0;
    VAE_CUDA_CHECK(cudaGetDevice(&d));
    return d;
  }
  static std::size_t row_bytes(const Dataset& d) {
    return static_cast<std::size_t>(d.dim) * (d.is_u8() ? sizeof(std::uint8_t) : sizeof(float));
  }
  // Sample rows the main model needs: training batches of train_samples, evaluation
  // batches of model.samples.
  static int max_rows(const ModelConfig& m, const TrainConfig& t) {
    const long long rows = std::max({static_cast<long long>(t.batch) * train_samples(m, t),
                                     static_cast<long long>(t.eval_batch) * m.samples,
                                     static_cast<long long>(std::max(t.batch, t.eval_batch))});
    if (rows > (1 << 30)) throw_error("the CUDA backend: ", rows, " sample rows per pass is too many");
    return static_cast<int>(rows);
  }
  StepHeader* d_header() const { return reinterpret_cast<StepHeader*>(d_record_.get()); }
  const std::uint32_t* d_indices() const { return record_indices(d_record_.get()); }

  // Everything before a step's kernels: its noise (blocks refilled if needed), its rows
  // (streamed data: staged on the copy stream), its record with the step's scalars. Returns
  // the stream slot (-1: resident data) for finish_step.
  int prepare_step(const Batch& batch, std::int64_t step) {
    const StepScalars ss = step_scalars(model_cfg_, train_, step, steps_per_epoch_);
    StepHeader h;
    h.step = step;
    h.eps_offset = eps_noise_.prepare(step);
    h.bin_offset = bin_noise_ ? bin_noise_->prepare(step) : 0;
    h.rows_u8 = data_->is_u8() ? 1 : 0;
    h.n = batch.size;
    h.lr = ss.lr;
    h.beta = ss.beta;
    h.update_encoder = ss.update_encoder ? 1 : 0;
    h.update_decoder = ss.update_decoder ? 1 : 0;
    int slot = -1;
    if (streamed_) {
      slot = stage_streamed_rows(batch);
      h.rows = reinterpret_cast<std::uint64_t>(d_slots_[static_cast<std::size_t>(slot)].get());
    } else {
      h.rows = reinterpret_cast<std::uint64_t>(d_data_.get());
    }
    send_record(h, streamed_ ? nullptr : batch.indices);
    return slot;
  }
  void finish_step(int slot) {
    if (slot < 0) return;
    VAE_CUDA_CHECK(cudaEventRecord(compute_done_[static_cast<std::size_t>(slot)].get(), compute_.get()));
    slot_computed_[static_cast<std::size_t>(slot)] = true;
  }

  IwWorkspace& iw_workspace(int n_max, int chunk, std::size_t stride) {
    if (!iw_ || iw_->n_max != n_max || iw_->chunk != chunk || iw_->stride != stride) {
      iw_.reset();  // free the old one first
      iw_ = std::make_unique<IwWorkspace>(model_cfg_, train_.seed, n_max, chunk, stride, compute_.get(), blas_,
                                          lt_.get());
    }
    return *iw_;
  }

  // Items [begin, begin + n) of data into x (n, D) on the compute stream: copied into the
  // device staging buffer `stage`, then converted by gather_rows through the device record
  // (header h with the rows filled in here, identity indices).
  void upload_items(const Dataset& data, std::int64_t begin, int n, StepHeader h, unsigned char* stage, float* x) {
    const std::size_t rb = row_bytes(data);
    const auto* src = data.is_u8() ? static_cast<const unsigned char*>(data.u8.data())
                                   : reinterpret_cast<const unsigned char*>(data.f32.data());
    h.rows = reinterpret_cast<std::uint64_t>(stage);
    h.rows_u8 = data.is_u8() ? 1 : 0;
    h.n = n;
    // Pageable source: the copy is staged before the call returns and runs in stream order.
    VAE_CUDA_CHECK(cudaMemcpyAsync(stage, src + static_cast<std::size_t>(begin) * rb, static_cast<std::size_t>(n) * rb,
                                   cudaMemcpyHostToDevice, compute_.get()));
    send_record(h, nullptr);
    gather_rows(d_header(), d_indices(), n, model_cfg_.input_dim, nullptr, x, compute_.get());
  }

  void check_size(std::size_t n, const char* what) const {
    if (n != model_.total())
      throw_error(what, ": got ", n, " values, the model's flat parameter buffer holds ", model_.total());
  }
  void upload(float* dst, const float* src, std::size_t n) {
    VAE_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyHostToDevice, compute_.get()));
    VAE_CUDA_CHECK(cudaStreamSynchronize(compute_.get()));
  }
  std::vector<float> download(const float* src) const {
    std::vector<float> out(model_.total());
    VAE_CUDA_CHECK(cudaMemcpyAsync(out.data(), src, out.size() * sizeof(float), cudaMemcpyDeviceToHost, compute_.get()));
    VAE_CUDA_CHECK(cudaStreamSynchronize(compute_.get()));
    return out;
  }

  DeviceStepState read_state() const {
    VAE_CUDA_CHECK(cudaMemcpyAsync(host_state_.get(), state_.get(), sizeof(DeviceStepState), cudaMemcpyDeviceToHost,
                                   compute_.get()));
    VAE_CUDA_CHECK(cudaStreamSynchronize(compute_.get()));
    return *host_state_.get();
  }
  // The parameter tensor holding flat element i ("gradient" for padding).
  std::string tensor_at(std::int64_t i) const {
    for (const auto& t : model_.layout().tensors())
      if (i >= static_cast<std::int64_t>(t.offset) && i < static_cast<std::int64_t>(t.offset + t.size())) return t.name;
    return "gradient";
  }

  LossSums read_sums(int which) {
    DeviceLossSums* d = sums_.get() + which;
    VAE_CUDA_CHECK(cudaMemcpyAsync(host_sums_.get(), d, sizeof(DeviceLossSums), cudaMemcpyDeviceToHost, compute_.get()));
    VAE_CUDA_CHECK(cudaMemsetAsync(d, 0, sizeof(DeviceLossSums), compute_.get()));
    VAE_CUDA_CHECK(cudaStreamSynchronize(compute_.get()));  // the one sync per report
    const DeviceLossSums& h = *host_sums_.get();
    LossSums s;
    s.loss = h.loss;
    s.recon = h.recon;
    s.kl = h.kl;
    s.count = h.count;
    return s;
  }

  // Writes the record into the next pinned ring slot (waiting only if the GPU has not yet
  // copied that slot's previous record, i.e. is record_slots steps behind), copies it to
  // the device record on the compute stream. indices null: identity 0..n-1.
  void send_record(const StepHeader& h, const std::uint32_t* indices) {
    const std::size_t s = ring_next_;
    ring_next_ = (ring_next_ + 1) % ring_events_.size();
    if (ring_used_[s]) VAE_CUDA_CHECK(cudaEventSynchronize(ring_events_[s].get()));
    char* slot = ring_.get() + s * record_bytes_;
    std::memcpy(slot, &h, sizeof(StepHeader));
    std::uint32_t* idx = record_indices(slot);
    if (indices) std::memcpy(idx, indices, static_cast<std::size_t>(h.n) * sizeof(std::uint32_t));
    else
      for (int i = 0; i < h.n; ++i) idx[i] = static_cast<std::uint32_t>(i);
    const std::size_t bytes = sizeof(StepHeader) + static_cast<std::size_t>(h.n) * sizeof(std::uint32_t);
    VAE_CUDA_CHECK(cudaMemcpyAsync(d_record_.get(), slot, bytes, cudaMemcpyHostToDevice, compute_.get()));
    VAE_CUDA_CHECK(cudaEventRecord(ring_events_[s].get(), compute_.get()));
    ring_used_[s] = true;
  }

  // Gather, the model's pass and the step's loss sums (written over *sums), on the compute
  // stream. beta and the noise offsets are read from the device record.
  void enqueue_pass(int n, Pass pass, DeviceLossSums* sums) {
    StepHeader* hdr = d_header();
    gather_rows(hdr, d_indices(), n, model_cfg_.input_dim, bin_noise_ ? bin_noise_->data() : nullptr, model_.x(),
                compute_.get());
    model_.run(eps_noise_.data(), &hdr->eps_offset, n, train_samples_, pass, &hdr->beta);
    loss_accumulate(model_.row_logp(), model_.kl(), pass == Pass::iwae ? model_.bound() : nullptr, n, train_samples_,
                    &hdr->beta, model_.recon(), sums, false, compute_.get());
  }

  // Everything one training step of n items runs on the compute stream: what a graph holds.
  void enqueue_step(int n) {
    DeviceStepState* st = state_.get();
    enqueue_pass(n, train_pass_, &st->step);
    step_guard(model_.grads(), model_.total(), d_header(), st, sums_.get(), train_.on_nan == NanPolicy::stop,
               compute_.get());
    OptimizerArgs oa;
    oa.p = model_.params();
    oa.g = model_.grads();
    oa.s1 = model_.state1();
    oa.s2 = model_.state2();
    oa.n = model_.total();
    oa.encoder_end = model_.layout().encoder_end();
    oa.hdr = d_header();
    oa.updates = st->updates;
    oa.skip = &st->bad;
    optimizer_step(oa, train_.optimizer, compute_.get());
  }

  // Captures enqueue_step(n) into the step graph for batch size n. Nothing per step is
  // baked in: the kernels read the record (noise offsets, rows, lr, beta, groups), the
  // noise blocks and the update counts through fixed device addresses.
  void capture_step(int n) {
    CudaGraph graph;
    graph.capture(compute_.get(), [&] { enqueue_step(n); });
    graphs_.emplace(n, std::move(graph));
  }

  void allocate_stream_slots() {
    if (!d_slots_.empty()) return;
    const std::size_t bytes = static_cast<std::size_t>(train_.batch) * static_cast<std::size_t>(model_cfg_.input_dim) * 4;
    const std::size_t k = static_cast<std::size_t>(opt_.stream_slots);
    for (std::size_t i = 0; i < k; ++i) {
      d_slots_.emplace_back(bytes, "a streamed batch (device)");
      h_slots_.emplace_back(bytes, "a streamed batch (pinned host)");
    }
    copy_done_ = std::vector<Event>(k);
    compute_done_ = std::vector<Event>(k);
    slot_copied_.assign(k, false);
    slot_computed_.assign(k, false);
  }

  // Streamed data: gathers the batch's rows on the host into the next pinned slot and
  // copies them on the copy stream into the matching device slot; the compute stream waits
  // for that copy. Returns the slot; the caller records compute_done after the step.
  int stage_streamed_rows(const Batch& batch) {
    const std::size_t s = stream_next_;
    stream_next_ = (stream_next_ + 1) % d_slots_.size();
    if (slot_copied_[s]) VAE_CUDA_CHECK(cudaEventSynchronize(copy_done_[s].get()));  // pinned slot free
    const std::size_t rb = row_bytes(*data_);
    const auto* src = data_->is_u8() ? static_cast<const unsigned char*>(data_->u8.data())
                                     : reinterpret_cast<const unsigned char*>(data_->f32.data());
    unsigned char* dst = h_slots_[s].get();
    for (int i = 0; i < batch.size; ++i)
      std::memcpy(dst + static_cast<std::size_t>(i) * rb, src + static_cast<std::size_t>(batch.indices[i]) * rb, rb);
    if (slot_computed_[s]) VAE_CUDA_CHECK(cudaStreamWaitEvent(copy_.get(), compute_done_[s].get(), 0));  // device slot free
    VAE_CUDA_CHECK(cudaMemcpyAsync(d_slots_[s].get(), dst, static_cast<std::size_t>(batch.size) * rb,
                                   cudaMemcpyHostToDevice, copy_.get()));
    VAE_CUDA_CHECK(cudaEventRecord(copy_done_[s].get(), copy_.get()));
    slot_copied_[s] = true;
    VAE_CUDA_CHECK(cudaStreamWaitEvent(compute_.get(), copy_done_[s].get(), 0));
    return static_cast<int>(s);
  }

  ModelConfig model_cfg_;
  TrainConfig train_;
  CudaBackendOptions opt_;
  int device_;
  std::string name_;  // "cuda (<device name>, sm_XY)"
  Stream compute_, copy_;
  DeviceBuffer<char> workspace_;
  BlasHandle blas_handle_;
  cublasHandle_t blas_;
  std::unique_ptr<LtBiasRelu> lt_;  // CudaBackendOptions::lt_bias_relu; shares the cuBLAS workspace
  int max_batch_;
  int train_samples_;  // samples per data point of a training step (train_samples())
  Pass train_pass_;    // the training pass (objective and estimator)
  CudaModel model_;
  RngPlan plan_;
  NoiseBlock eps_noise_, eval_noise_;
  std::unique_ptr<NoiseBlock> bin_noise_;
  std::size_t record_bytes_;
  PinnedBuffer<char> ring_;  // record_slots x record_bytes_
  std::vector<Event> ring_events_;
  std::vector<bool> ring_used_;
  std::size_t ring_next_ = 0;
  DeviceBuffer<char> d_record_;           // StepHeader + indices
  DeviceBuffer<DeviceLossSums> sums_;     // [0] training, [1] evaluation, [2] compute_gradient
  PinnedBuffer<DeviceLossSums> host_sums_;
  DeviceBuffer<DeviceStepState> state_;  // update counts, dropped steps, halt
  PinnedBuffer<DeviceStepState> host_state_;
  DeviceBuffer<unsigned char> eval_stage_;  // (eval_batch, D) rows, uint8 or float
  std::shared_ptr<const Dataset> data_;
  DeviceBuffer<unsigned char> d_data_;  // resident training set
  bool streamed_ = false;
  std::vector<DeviceBuffer<unsigned char>> d_slots_;  // streamed batches, (batch, D) each
  std::vector<PinnedBuffer<unsigned char>> h_slots_;
  std::vector<Event> copy_done_, compute_done_;
  std::vector<bool> slot_copied_, slot_computed_;
  std::size_t stream_next_ = 0;
  std::map<int, CudaGraph> graphs_;  // one per batch size
  std::int64_t steps_per_epoch_ = 1;  // for the lr schedules (step_scalars)
  std::unique_ptr<IwWorkspace> iw_;   // estimate_log_likelihood, allocated on first use
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(const ModelConfig& model, const TrainConfig& train,
                                           const CudaBackendOptions& opt) {
  model.validate();
  train.validate();
  if (opt.record_slots < 2) throw_error("CudaBackendOptions: record_slots must be >= 2, got ", opt.record_slots);
  if (opt.stream_slots < 2) throw_error("CudaBackendOptions: stream_slots must be >= 2, got ", opt.stream_slots);
  if (!(opt.resident_headroom >= 0 && opt.resident_headroom < 1))
    throw_error("CudaBackendOptions: resident_headroom must be in [0, 1), got ", opt.resident_headroom);
  if (train.precision != Precision::fp32)
    throw_error("the CUDA backend computes in fp32 only; --precision ", to_string(train.precision),
                " runs on --device cpu");
  return std::make_unique<CudaBackend>(model, train, opt);
}

CudaBackendStats cuda_backend_stats(const Backend& backend) {
  const auto* b = dynamic_cast<const CudaBackend*>(&backend);
  if (!b) throw_error("cuda_backend_stats: '", backend.name(), "' is not the CUDA backend");
  return b->stats();
}

}  // namespace gpu

std::unique_ptr<Backend> make_cuda_backend(const ModelConfig& model, const TrainConfig& train) {
  return gpu::make_cuda_backend(model, train, gpu::CudaBackendOptions{});
}

bool cuda_device_usable(std::string* why) {
  auto fail = [&](const std::string& reason) {
    (void)cudaGetLastError();
    if (why) *why = reason;
    return false;
  };
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) return fail(std::string("cudaGetDeviceCount: ") + cudaGetErrorString(e));
  if (count == 0) return fail("no CUDA device found");
  int device = 0;
  e = cudaGetDevice(&device);
  if (e != cudaSuccess) return fail(std::string("cudaGetDevice: ") + cudaGetErrorString(e));
  cudaDeviceProp prop{};
  e = cudaGetDeviceProperties(&prop, device);
  if (e != cudaSuccess) return fail(std::string("cudaGetDeviceProperties: ") + cudaGetErrorString(e));
  e = cudaFree(nullptr);  // creates the context: fails on a busy or prohibited device
  if (e != cudaSuccess) return fail(std::string("cannot use ") + prop.name + ": " + cudaGetErrorString(e));
  cudaFuncAttributes attr{};
  e = cudaFuncGetAttributes(&attr, gpu::probe_kernel);
  if (e != cudaSuccess)
    return fail(std::string("this libvae has no kernels for ") + prop.name + " (sm_" + std::to_string(prop.major) +
                std::to_string(prop.minor) + "): " + cudaGetErrorString(e) + "; rebuild with -DVAE_CUDA_ARCHITECTURES=" +
                std::to_string(prop.major) + std::to_string(prop.minor));
  if (why) why->clear();
  return true;
}

}  // namespace vae
