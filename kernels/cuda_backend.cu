// The CUDA backend: CudaModel plus the batch gather, device noise blocks, the optimizers,
// loss sums, the step guard and one CUDA graph per batch size for the training step. Its
// rooms: the handles (cuda_handles.cuh), the step graphs (cuda_graph.cuh), the step-record
// ring (record_ring.cuh), the resident or streamed training data (device_data.cuh) and the
// log-likelihood estimate (likelihood_estimate.cuh).
//
// The training step (prepare_step on the host, then the graph of enqueue_step) is the
// pipeline docs/ARCHITECTURE.md describes under "One training step", with what the host
// does per step; kernels/README.md has the step record and the device state.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "allreduce.cuh"
#include "backend_shared.h"
#include "cuda_backend.cuh"
#include "cuda_check.cuh"
#include "cuda_graph.cuh"
#include "cuda_handles.cuh"
#include "cuda_model.cuh"
#include "device_data.cuh"
#include "device_memory.cuh"
#include "gather.cuh"
#include "internal.h"
#include "layers.cuh"
#include "likelihood_estimate.cuh"
#include "loss_sums.cuh"
#include "noise.cuh"
#include "optimizer.cuh"
#include "record_ring.cuh"
#include "rng.h"
#include "step_guard.cuh"
#include "step_record.cuh"
#include "vae/error.h"
#include "vae/options.h"

namespace vae {
namespace gpu {
namespace {

constexpr std::size_t kBlasWorkspaceBytes = std::size_t(32) << 20;  // cuBLAS's advice for Hopper

// A training step's items and its global batch's (the same number without ranks).
using StepShape = std::pair<int, int>;

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
        ring_(max_batch_, opt.record_slots, compute_.get()),
        sums_(3, compute_.get()),
        state_(1, "the step state (update counts, dropped steps)"),
        host_state_(1, "step-state read-back"),
        eval_stage_(static_cast<std::size_t>(train.eval_batch) * static_cast<std::size_t>(data_width(model)) * 4,
                    "evaluation rows"),
        train_data_(train.batch, opt.stream_slots, opt.resident_headroom, compute_.get()),
        estimate_(model, train.seed, max_batch_, compute_.get(), blas_, lt_.get()) {
    if (train.binarize == Binarize::dynamic)
      bin_noise_ = std::make_unique<NoiseBlock>(plan_.bin_seed, NoiseBlock::Kind::uniform, plan_.bin_stride,
                                                opt.noise_block_values, compute_.get(), "binarization noise (uniforms)");
    cudaDeviceProp prop{};
    VAE_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
    name_ = std::string("cuda (") + prop.name + ", sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ")";
    *host_state_.get() = DeviceStepState{};
    VAE_CUDA_CHECK(cudaMemcpyAsync(state_.get(), host_state_.get(), sizeof(DeviceStepState), cudaMemcpyHostToDevice,
                                   compute_.get()));
    VAE_CUDA_CHECK(cudaStreamSynchronize(compute_.get()));
  }

  ~CudaBackend() override {
    VAE_CUDA_WARN(cudaStreamSynchronize(compute_.get()));
    graphs_.clear();  // the graphs that captured NCCL's collectives before its communicator
    nccl_.reset();
  }

  std::string name() const override { return name_; }
  const ParamLayout& layout() const override { return model_.layout(); }
  const ModelConfig& model_config() const override { return model_cfg_; }

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

  void do_set_train_data(std::shared_ptr<const Dataset> data) override {
    check_nonempty_data(model_cfg_, *data, "set_train_data", "training data");
    if (data->count > (std::int64_t(1) << 32))
      throw_error("training data '", data->source, "' has ", data->count, " items; batch indices are 32-bit");
    const std::int64_t steps_per_epoch = (data->count + train_.batch - 1) / train_.batch;
    train_data_.set(std::move(data), train_.stream_data);
    steps_per_epoch_ = steps_per_epoch;
  }

  // Data parallel: the gradients summed by NCCL inside the step graph, or through MPI on host
  // buffers where NCCL does not serve every rank (CudaBackendOptions::gradient_sum). A
  // collective: every rank calls it at the same point.
  void set_communicator(Communicator* comm) override {
    VAE_CUDA_CHECK(cudaStreamSynchronize(compute_.get()));  // no step of the old setting in flight
    graphs_.clear();  // before the communicator their collectives were captured on
    nccl_.reset();
    comm_ = nullptr;  // until the new setting is complete: a throw below leaves the backend alone
    if (!comm) return;
    VAE_CUDA_CHECK(cudaSetDevice(device_));  // NCCL's communicator and the vote use the current device
    nccl_ = open_nccl_sum(*comm, opt_.gradient_sum);
    if (!nccl_ && !host_grads_.get()) host_grads_ = PinnedBuffer<float>(model_.total(), "the gradients' host copy (MPI)");
    comm_ = comm;
  }

  void train_step(const Batch& batch) override {
    check_batch(batch, batch.step, train_.batch, train_data_.data(), "train_step");
    if (comm_ && !nccl_) return train_shard(batch);
    // A step's graph depends on its size and, for a shard, on the global batch's (its share).
    const StepShape shape{batch.size, comm_ ? global_size(batch) : batch.size};
    const int slot = prepare_step(batch, batch.step);
    auto it = opt_.use_graphs ? graphs_.find(shape) : graphs_.end();
    if (it != graphs_.end()) {
      it->second.launch(compute_.get());
      train_data_.step_enqueued(slot);
    } else {
      // Direct launches: without graphs, and for the first step of each shape, which also
      // loads and initializes every kernel, cuBLAS path and NCCL connection before the capture.
      enqueue_step(shape);
      train_data_.step_enqueued(slot);  // before the capture, so that a capture that throws leaves the slot's event recorded
      if (opt_.use_graphs) capture_step(shape);  // recorded, not run: later steps of this shape replay it
    }
  }

  // A data-parallel step through MPI on host buffers (direct launches, no graph: the sum runs
  // on the host between the pass and the update): the shard's pass, its gradient times its
  // share summed across the ranks with its loss sums, then the step guard and the optimizer
  // on the global batch's gradient, the same on every rank.
  void train_shard(const Batch& batch) {
    DeviceStepState* st = state_.get();
    const int slot = prepare_step(batch, batch.step);
    enqueue_shard_pass(batch.size);
    train_data_.step_enqueued(slot);
    float* g = host_grads_.get();
    const std::size_t bytes = model_.total() * sizeof(float);
    VAE_CUDA_CHECK(cudaMemcpyAsync(g, model_.grads(), bytes, cudaMemcpyDeviceToHost, compute_.get()));
    DeviceLossSums* hs = &host_state_.get()->step;
    VAE_CUDA_CHECK(cudaMemcpyAsync(hs, &st->step, sizeof(DeviceLossSums), cudaMemcpyDeviceToHost, compute_.get()));
    VAE_CUDA_CHECK(cudaStreamSynchronize(compute_.get()));
    sum_shard_gradients(*comm_, batch, g, model_.total());
    LossSums s{hs->loss, hs->recon, hs->kl, hs->count};
    sum_across_ranks(*comm_, s);
    *hs = DeviceLossSums{s.loss, s.recon, s.kl, s.count};
    VAE_CUDA_CHECK(cudaMemcpyAsync(model_.grads(), g, bytes, cudaMemcpyHostToDevice, compute_.get()));
    VAE_CUDA_CHECK(cudaMemcpyAsync(&st->step, hs, sizeof(DeviceLossSums), cudaMemcpyHostToDevice, compute_.get()));
    enqueue_update();
    VAE_CUDA_CHECK(cudaStreamSynchronize(compute_.get()));  // the host buffers are free for the next step
  }

  // The same pass as a training step (direct launches, no graph), without the step guard,
  // the optimizer or the running sums: only the gradients and sums_[2] change.
  LossSums compute_gradient(const Batch& batch, std::int64_t noise_step, Estimator estimator) override {
    check_batch(batch, noise_step, train_.batch, train_data_.data(), "compute_gradient");
    const int n = batch.size;
    const int slot = prepare_step(batch, noise_step);
    enqueue_pass(n, training_pass(train_, estimator), sums_.slot(2));
    train_data_.step_enqueued(slot);
    return sums_.take(2);
  }

  std::string gradient_sum() const override {
    return !comm_ ? "" : nccl_ ? nccl_->description() : "MPI_Allreduce through host memory";
  }

  LossSums take_train_sums() override { return sums_.take(0); }
  void restore_train_sums(const LossSums& sums) override { sums_.restore(0, sums); }

  LossSums do_evaluate(const Dataset& data) override {
    check_nonempty_data(model_cfg_, data, "evaluate");
    sums_.clear(1);
    const int batch = train_.eval_batch;
    std::int64_t k = 0;
    for (std::int64_t begin = 0; begin < data.count; begin += batch, ++k) {
      if (!evaluates_batch(comm_, k)) continue;
      const int n = static_cast<int>(std::min<std::int64_t>(batch, data.count - begin));
      StepHeader h;
      h.step = k;
      h.eps_offset = eval_noise_.prepare(k);
      h.beta = model_cfg_.beta;
      upload_rows(data, begin, n, h, eval_stage_.get(), model_.x(), ring_, compute_.get());
      model_.run(eval_noise_.data(), &ring_.header()->eps_offset, n, model_cfg_.samples, Pass::forward, nullptr);
      loss_accumulate(model_.row_logp(), model_.kl(), nullptr, n, model_cfg_.samples, &ring_.header()->beta,
                      model_.recon(), sums_.slot(1), true, compute_.get());
    }
    LossSums total = sums_.take(1);
    if (comm_) sum_across_ranks(*comm_, total);
    return total;
  }

  LikelihoodSums do_estimate_log_likelihood(const Dataset& data, int k) override {
    check_nonempty_data(model_cfg_, data, "estimate_log_likelihood");
    if (k < 1) throw_error("estimate_log_likelihood: k must be >= 1, got ", k);
    return estimate_.run(model_, data, k, ring_);
  }

  std::vector<float> do_encode(const Dataset& data, std::int64_t begin, std::int64_t n) override {
    check_encode_args(model_cfg_, data, begin, n);
    const int Z = model_cfg_.latent, chunk = train_.eval_batch;
    std::vector<float> head(static_cast<std::size_t>(n) * 2 * Z);
    StepHeader h;
    h.eps_offset = eval_noise_.prepare(0);  // any resident noise: mu does not depend on it
    for (std::int64_t b = 0; b < n; b += chunk) {
      const int k = static_cast<int>(std::min<std::int64_t>(chunk, n - b));
      upload_rows(data, begin + b, k, h, eval_stage_.get(), model_.x(), ring_, compute_.get());
      model_.run(eval_noise_.data(), &ring_.header()->eps_offset, k, 1, Pass::forward, nullptr);
      VAE_CUDA_CHECK(cudaMemcpyAsync(head.data() + static_cast<std::size_t>(b) * 2 * Z, model_.head(),
                                     static_cast<std::size_t>(k) * 2 * Z * sizeof(float), cudaMemcpyDeviceToHost,
                                     compute_.get()));
      VAE_CUDA_CHECK(cudaStreamSynchronize(compute_.get()));
    }
    return head;
  }

  std::vector<float> do_decode_means(const std::vector<float>& z) override {
    const std::int64_t rows = decoder_input_rows(model_cfg_, z);
    const int Z = decoder_input_dim(model_cfg_), D = model_cfg_.input_dim, chunk = model_.max_rows();
    std::vector<float> out(static_cast<std::size_t>(rows) * D);
    if (rows == 0) return out;
    DeviceBuffer<float> codes(static_cast<std::size_t>(std::min<std::int64_t>(chunk, rows)) * Z, "decode_means codes");
    for (std::int64_t b = 0; b < rows; b += chunk) {
      const int k = static_cast<int>(std::min<std::int64_t>(chunk, rows - b));
      // Pageable copies: staged before the call returns; the download waits for the decoder.
      VAE_CUDA_CHECK(cudaMemcpyAsync(codes.get(), z.data() + b * Z, static_cast<std::size_t>(k) * Z * sizeof(float),
                                     cudaMemcpyHostToDevice, compute_.get()));
      const float* means = model_.decode_mean(codes.get(), k);
      VAE_CUDA_CHECK(cudaMemcpyAsync(out.data() + b * D, means, static_cast<std::size_t>(k) * D * sizeof(float),
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
    s.streamed = train_data_.streamed();
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
  // Sample rows the main model needs: training batches of train_samples, evaluation
  // batches of model.samples.
  static int max_rows(const ModelConfig& m, const TrainConfig& t) {
    const long long rows = std::max({static_cast<long long>(t.batch) * train_samples(m, t),
                                     static_cast<long long>(t.eval_batch) * m.samples,
                                     static_cast<long long>(std::max(t.batch, t.eval_batch))});
    if (rows > (1 << 30)) throw_error("the CUDA backend: ", rows, " sample rows per pass is too many");
    return static_cast<int>(rows);
  }

  // Everything before a step's kernels: its noise (blocks refilled if needed), its rows
  // (streamed data: staged on the copy stream), its record with the step's scalars. Returns
  // the stream slot (-1: resident data) for TrainData::step_enqueued.
  int prepare_step(const Batch& batch, std::int64_t step) {
    const StepScalars ss = step_scalars(model_cfg_, train_, step, steps_per_epoch_);
    StepHeader h;
    h.step = step;
    // A data-parallel shard's items take the noise of their places in the global batch.
    const std::int64_t at = batch.offset;
    h.eps_offset = eps_noise_.prepare(step) + at * train_samples_ * model_cfg_.latent;
    h.bin_offset = bin_noise_ ? bin_noise_->prepare(step) + at * data_width(model_cfg_) : 0;
    h.rows_u8 = train_data_.data()->is_u8() ? 1 : 0;
    h.n = batch.size;
    h.lr = ss.lr;
    h.beta = ss.beta;
    h.update_encoder = ss.update_encoder ? 1 : 0;
    h.update_decoder = ss.update_decoder ? 1 : 0;
    const TrainData::StepRows rows = batch.size > 0 ? train_data_.stage(batch) : TrainData::StepRows{nullptr, nullptr, -1};
    h.rows = reinterpret_cast<std::uint64_t>(rows.rows);
    ring_.send(h, rows.indices);
    return rows.slot;
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

  // Gather, the model's pass and the step's loss sums (written over *sums), on the compute
  // stream. beta and the noise offsets are read from the device record.
  void enqueue_pass(int n, Pass pass, DeviceLossSums* sums) {
    StepHeader* hdr = ring_.header();
    gather_rows(hdr, ring_.indices(), n, data_width(model_cfg_), bin_noise_ ? bin_noise_->data() : nullptr, model_.x(),
                compute_.get());
    model_.run(eps_noise_.data(), &hdr->eps_offset, n, train_samples_, pass, &hdr->beta);
    loss_accumulate(model_.row_logp(), model_.kl(), pass == Pass::iwae ? model_.bound() : nullptr, n, train_samples_,
                    &hdr->beta, model_.recon(), sums, false, compute_.get());
  }

  // A shard's pass, or for an empty shard a zero gradient and zero loss sums.
  void enqueue_shard_pass(int n) {
    DeviceStepState* st = state_.get();
    if (n > 0) return enqueue_pass(n, train_pass_, &st->step);
    VAE_CUDA_CHECK(cudaMemsetAsync(model_.grads(), 0, model_.total() * sizeof(float), compute_.get()));
    VAE_CUDA_CHECK(cudaMemsetAsync(&st->step, 0, sizeof(DeviceLossSums), compute_.get()));
  }

  // Everything one training step runs on the compute stream: what a graph holds. A shard
  // (NCCL) adds its gradient times its share and its loss sums to the other ranks' before the
  // update, as train_shard does on the host.
  void enqueue_step(StepShape shape) {
    DeviceStepState* st = state_.get();
    if (!comm_) {
      enqueue_pass(shape.first, train_pass_, &st->step);
    } else {
      enqueue_shard_pass(shape.first);
      const float share = shard_share<float>(shape.first, shape.second);
      if (shape.first > 0 && share != 1.0f) scale_values(model_.grads(), model_.total(), share, compute_.get());
      nccl_->sum_step(model_.grads(), model_.total(), &st->step, compute_.get());
    }
    enqueue_update();
  }

  // The step guard (a non-finite loss or gradient drops the step) and the optimizer.
  void enqueue_update() {
    DeviceStepState* st = state_.get();
    step_guard(model_.grads(), model_.total(), ring_.header(), st, sums_.slot(0), train_.on_nan == NanPolicy::stop,
               compute_.get());
    OptimizerArgs oa;
    oa.p = model_.params();
    oa.g = model_.grads();
    oa.s1 = model_.state1();
    oa.s2 = model_.state2();
    oa.n = model_.total();
    oa.encoder_end = model_.layout().encoder_end();
    oa.hdr = ring_.header();
    oa.updates = st->updates;
    oa.skip = &st->bad;
    optimizer_step(oa, train_.optimizer, compute_.get());
  }

  // Captures enqueue_step(shape) into the step graph for that shape. Nothing per step is
  // baked in: the kernels read the record (noise offsets, rows, lr, beta, groups), the
  // noise blocks and the update counts through fixed device addresses.
  void capture_step(StepShape shape) {
    CudaGraph graph;
    graph.capture(compute_.get(), [&] { enqueue_step(shape); });
    graphs_.emplace(shape, std::move(graph));
  }

  ModelConfig model_cfg_;
  TrainConfig train_;
  CudaBackendOptions opt_;
  int device_;
  std::string name_;  // "cuda (<device name>, sm_XY)"
  Stream compute_;
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
  RecordRing ring_;                       // the step records and the one device record
  LossAccumulators sums_;                 // [0] training, [1] evaluation, [2] compute_gradient
  DeviceBuffer<DeviceStepState> state_;  // update counts, dropped steps, halt
  PinnedBuffer<DeviceStepState> host_state_;
  DeviceBuffer<unsigned char> eval_stage_;  // (eval_batch, D) rows, uint8 or float
  TrainData train_data_;                    // resident or streamed
  std::map<StepShape, CudaGraph> graphs_;   // one per step shape
  std::int64_t steps_per_epoch_ = 1;        // for the lr schedules (step_scalars)
  Communicator* comm_ = nullptr;            // data parallel: the ranks, or null
  std::unique_ptr<NcclSum> nccl_;           // data parallel: NCCL's sum, or null (through MPI, host_grads_)
  PinnedBuffer<float> host_grads_;          // data parallel without NCCL: the gradients on their way through MPI
  LikelihoodEstimate estimate_;             // estimate_log_likelihood, allocated on first use
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
    throw_error("the CUDA backend computes in fp32 only; ", flag_of("precision"), " ", to_string(train.precision),
                " runs on ", flag_of("device"), " cpu");
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

}  // namespace vae
