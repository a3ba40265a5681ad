// The CUDA backend: layers [0, device_layers) run on the GPU over device weights (stored format) and f16 KV
// blocks in device memory (cuda/device_kv.h); the rest, if any (--gpu-layers), run on the CPU through the shared
// Transformer, which also stays the reference. One stream; forwards are serialised (the scratch buffers are shared
// by all sessions). Per layer it is the Transformer's sequence of steps, each a kernel of cuda/kernels/. A decode
// step of a fully resident model is captured once per session as a CUDA graph and replayed (one launch per token
// instead of ~15 per layer): positions live on the device and the host part of the KV append (blocks, block
// tables) runs before the replay. LMLAB_CUDA_GRAPH=0 turns graphs off (to measure what they save);
// LMLAB_GROUPED_EXPERTS=0 sends MoE prefill chunks back to the gathered GEMV (likewise).
// --stream-experts: the routed experts live in a VRAM cache filled from the SSD (cuda/device_expert_cache.h); each
// MoE layer brings its routed ids to the host (one synchronisation per MoE layer), so decode runs without a graph.
// LMLAB_STREAM_GRAPH=1 (not yet run on a GPU, hence opt-in): decode keeps its graph, and each MoE layer inside it
// hands its ids to this thread through mapped host memory and waits for the slots (cuda/routing_mailbox.h), the
// misses copied on a second stream meanwhile.
// A prompt longer than one chunk goes through layer by layer (every chunk of layer l, then layer l + 1: the layer's
// experts are read from the SSD once per prompt instead of once per chunk, which made 40K-token prompts read the
// whole model ~80 times); its activations for the whole prompt stay on the device meanwhile (2 x n x hidden floats).
#include "cuda/cuda_backend.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <map>
#include <utility>

#include "backend/gpu_layer_plan.h"
#include "cuda/cuda_check.h"
#include "cuda/device_expert_cache.h"
#include "cuda/device_weights.h"
#include "cuda/graph_step_timer.h"
#include "cuda/device_kv.h"
#include "cuda/pinned_host_buffer.h"
#include "cuda/routing_mailbox.h"
#include "lmlab/error.h"
#include "lmlab/options.h"
#include "config/context_size.h"
#include "forward/transformer.h"

namespace lmlab {

namespace kc = kernels::cuda;
using cuda::check;
using cuda::DeviceBuffer;

std::string cuda_unavailable_reason() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return fmt::format("no CUDA device ({})", cudaGetErrorString(e));
  }
  if (n == 0) return "no CUDA device";
  return {};
}

namespace {

// Device scratch for chunks of up to `n` tokens: activations, MoE slots, logits, kernel scratch.
struct Scratch {
  int64_t n = 0;
  DeviceBuffer tokens, positions, x, h, y, q, k, v, attn, g, u, logits, router, experts, weights, slot_out, mm, at;
  DeviceBuffer slot_ids, predicted, predicted_weights;  // --stream-experts: VRAM slots, next layer's guess
  DeviceBuffer groups;  // MoE chunks of kGroupedMinTokens or more: the slots grouped by expert (grouped_matmul.cu)
  DeviceBuffer route_done;  // the fused router's block counter (kc::RouteTail::done), at 0 between launches
};

// The smallest attention bound a decode graph is captured for (decode_kv_bound): 4096, or LMLAB_DECODE_MIN_BOUND
// (a power of two from 256, read once) to measure short histories, whose attention splits are sized for the bound.
int64_t decode_min_bound() {
  static const int64_t n = [] {
    const char* env = std::getenv("LMLAB_DECODE_MIN_BOUND");
    const int64_t v = env ? std::atoll(env) : 0;
    return v >= 256 && (v & (v - 1)) == 0 ? v : int64_t{4096};
  }();
  return n;
}

// Whether any Linear the prefill matmul serves is MLX affine (its scratch then holds a dequantized pass of rows).
bool has_affine_linears(const Transformer& t) {
  auto affine = [](const Linear* l) { return l && l->stored().affine; };
  if (affine(&t.embed_weight()) || affine(&t.lm_head_weight())) return true;
  for (const LayerWeights& w : t.layer_weights())
    for (const Linear* l : {w.q.get(), w.k.get(), w.v.get(), w.o.get(), w.mlp.gate.get(), w.mlp.up.get(),
                            w.mlp.down.get(), w.moe.router.get()})
      if (affine(l)) return true;
  return false;
}

struct GraphExec {
  cudaGraphExec_t exec = nullptr;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(const ModelOptions& o, const Transformer& t)
      : t_(t), s_(t.spec()), alloc_(std::make_shared<cuda::DeviceAllocator>()),
        kv_alloc_(std::make_shared<cuda::DeviceKvBlockAllocator>(alloc_)) {
    const int64_t ctx = resolve_ctx_size(o.ctx_size, s_);
    max_blocks_ = (ctx + o.kv_block_tokens - 1) / o.kv_block_tokens;
    const char* g = std::getenv("LMLAB_CUDA_GRAPH");
    graphs_ = !(g && std::string(g) == "0");
    const char* ge = std::getenv("LMLAB_GROUPED_EXPERTS");
    grouped_experts_ = !(ge && std::string(ge) == "0");
    affine_ = has_affine_linears(t);
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "stream");
    try {  // the destructor does not run if this throws: the streams would leak
      // The expert cache and the scratch before planning, so the driver's free memory already excludes them; with
      // the cache, the routed experts are never uploaded.
      if (ExpertStreamer* es = t.shared_streamer())
        experts_ = std::make_unique<cuda::DeviceExpertCache>(*alloc_, *es, s_);
      route_ids_ = experts_ ? experts_->counters().slots : s_.n_experts;
      ensure_scratch(decode_, 1);
      ensure_scratch(chunk_, o.prefill_size);
      n_dev_ = o.gpu_layers > 0 ? std::min<int64_t>(o.gpu_layers, s_.n_layers) : plan_layers(o, ctx);
      prefill_size_ = o.prefill_size;
      layer_major_ = experts_ && n_dev_ == s_.n_layers &&
                     std::none_of(s_.layers.begin(), s_.layers.end(), [](const LayerSpec& l) { return l.window > 0; });
      // The hand-off only where decode replays a graph (every layer on the GPU): mailbox_ set means it is used.
      const char* sg = std::getenv("LMLAB_STREAM_GRAPH");
      if (experts_ && graphs_ && n_dev_ == s_.n_layers && sg && std::string(sg) == "1") {
        mailbox_ = std::make_unique<cuda::RoutingMailbox>(*alloc_, s_.top_k);
        for (int64_t l = 0; l < n_dev_; ++l)
          if (s_.layers[l].moe) moe_layers_.push_back(l);
        check(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking), "expert copy stream");
      }
      w_ = cuda::DeviceWeights::upload(*alloc_, t, n_dev_, experts_.get());
      plan_fused_norms();
    } catch (...) {
      if (copy_stream_) cudaStreamDestroy(copy_stream_);
      cudaStreamDestroy(stream_);
      throw;
    }
  }
  ~CudaBackend() override {
    experts_.reset();  // waits for copies still reading the host cache
    for (auto& [id, g] : graphs_by_kv_) cudaGraphExecDestroy(g.exec);
    cudaStreamDestroy(stream_);
    if (copy_stream_) cudaStreamDestroy(copy_stream_);
  }

  Device device() const override { return Device::cuda; }
  int64_t device_layers() const override { return n_dev_; }
  std::string device_plan() const override {
    std::string p = plan_.free_bytes ? fmt::format("{} of {} fit: {}", plan_.layers, s_.n_layers, plan_.to_text()) : "";
    if (experts_) p += (p.empty() ? "" : "; ") + experts_->describe();
    if (mailbox_) p += "; decode graph with the routing hand-off (LMLAB_STREAM_GRAPH=1)";
    const auto fused = std::count(fused_norms_.begin(), fused_norms_.end() - 1, true);
    if (fused > 0 || fused_norms_.back())
      p += fmt::format("{}decode norms fused into the GEMVs in {} of {} layers{}", p.empty() ? "" : "; ", fused,
                       s_.n_layers, fused_norms_.back() ? " and the head" : "");
    return p;
  }

  void add_stream_counters(StreamCounters& c) const override {
    if (!experts_) return;
    const cuda::DeviceExpertCounters d = experts_->counters();
    c.device_expert_cache_hits_total = d.hits;
    c.device_expert_cache_misses_total = d.misses;
    c.device_expert_cache_bytes = d.bytes;
  }

  std::shared_ptr<KvBlockAllocator> kv_allocator() const override { return kv_alloc_; }

  DeviceDecodeTime decode_time() const override {
    std::lock_guard lock(mu_);
    return {step_timer_.steps(), step_timer_.nanoseconds()};
  }

  DeviceMemory memory() const override {
    DeviceMemory m;
    m.current_bytes = alloc_->current_bytes();
    m.peak_bytes = alloc_->peak_bytes();
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
      m.driver_used_bytes = total_b - free_b;
      m.driver_total_bytes = total_b;
    }
    return m;
  }

  void forward(std::span<const int32_t> tokens, int64_t pos0, KvSequence& cache, bool all_logits,
               std::vector<float>& logits) const override;

  int64_t prompt_span(int64_t prefill_size, bool all_logits) const override {
    if (!layer_major_ || all_logits) return prefill_size;
    return std::max(prefill_size, kLayerMajorActivationBytes / (2 * s_.hidden * 4));
  }

 private:
  int64_t plan_layers(const ModelOptions& o, int64_t ctx);
  void ensure_scratch(Scratch& sc, int64_t n) const;
  // The device work of a chunk after its tokens and positions are on the device: embedding, the device
  // layers, and (when every layer is on the GPU) the head into sc.logits. No host synchronisation inside.
  void run_device(Scratch& sc, int64_t n, int64_t n_out, int64_t n_kv_bound, KvSequence& cache) const;
  void layer(Scratch& sc, int64_t l, int64_t n, int64_t n_kv_bound, KvSequence& cache) const;
  void plan_fused_norms();
  // Whether decode's layer l (l == n_layers: the head) reads the residual x and norms it inside its GEMVs.
  // (Not in a layer-major prompt: its head reads the last chunk's h.)
  bool fuses_norms(int64_t l, int64_t n) const { return n == 1 && !in_layer_major_ && fused_norms_[l]; }
  void mlp(Scratch& sc, const cuda::DeviceLayer& w, int64_t n) const;
  void moe(Scratch& sc, int64_t l, const cuda::DeviceLayer& w, int64_t n) const;
  int32_t next_predicted_layer(int64_t l) const;
  int32_t predict_next_layer(Scratch& sc, int64_t l, int64_t n) const;
  const int32_t* stream_in(Scratch& sc, int64_t l, int64_t n) const;
  const int32_t* stream_in_graph(Scratch& sc, int64_t l, int64_t n) const;
  void replay_decode(Scratch& sc, KvSequence& cache, int64_t pos) const;
  void logits_to_host(const Scratch& sc, std::vector<float>& logits) const;
  void serve_streamed_step() const;
  void forward_layer_major(std::span<const int32_t> tokens, int64_t pos0, KvSequence& cache,
                           std::vector<float>& logits) const;
  static constexpr int64_t kLayerMajorActivationBytes = int64_t{2} << 30;  // bounds a layer-major span
  void norm(const DeviceBuffer& w, float* x, float* y, int64_t rows, int64_t dim) const {
    kc::rmsnorm(x, w.get<float>(), y, rows, dim, s_.norm_eps, stream_);
  }
  kc::GateActivation gate_activation() const {
    return s_.activation == Activation::silu ? kc::GateActivation::silu : kc::GateActivation::gelu_tanh;
  }
  void linear(Scratch& sc, const cuda::DeviceLinear& l, const float* x, float* y, int64_t n) const {
    kc::matmul(l.w, x, y, n, sc.mm.get(), stream_);
  }
  // The attention bound a captured decode graph is made for, by the position it decodes at: the next power of two
  // above it (at least decode_min_bound()), at most the whole context. A session gets a graph per bound it reaches
  // (~6 up to 100K), and attention splits sized for the history it has: sized for a 100K context, a decode at
  // position 512 launched 4 x 132 blocks, most with nothing to do, and the split kernel for long histories
  // (kernels_cuda.h) at any position.
  int64_t decode_kv_bound(const KvSequence& cache, int64_t pos) const {
    const int64_t context = max_blocks_ * cache.layers[0]->block_tokens();
    int64_t bound = decode_min_bound();
    while (bound <= pos && bound < context) bound *= 2;
    return std::min(bound, context);
  }
  cuda::DeviceKvLayer device_kv(KvSequence& cache, int64_t l) const {
    return cuda::DeviceKvLayer(*cache.layers[l], *alloc_, max_blocks_);
  }

  const Transformer& t_;
  const ModelSpec& s_;
  int64_t n_dev_ = 0, max_blocks_ = 0;
  int64_t route_ids_ = 0;
  int64_t prefill_size_ = 0;
  // Streamed experts, all layers on the GPU, no sliding windows (a window would release blocks an earlier chunk of
  // the next layer still needs): prompts run layer-major (forward_layer_major).
  bool layer_major_ = false;
  mutable bool in_layer_major_ = false;  // no next-layer read-ahead then: every chunk of this layer comes first  // the values a MoE step's expert index takes: experts, or VRAM cache slots when streaming
  GpuLayerPlan plan_;  // what --gpu-layers 0 decided (empty when given)
  bool graphs_ = true;
  // Per device layer and the head (last): decode's GEMVs take the layer's RMSNorms and residual adds
  // (kc::GemvFusion; plan_fused_norms), two launches fewer per dense layer. LMLAB_FUSED_NORMS=1 until a GPU has
  // measured it (written in the twelfth session after its device time was spent).
  std::vector<bool> fused_norms_;
  bool grouped_experts_ = true;  // LMLAB_GROUPED_EXPERTS=0: MoE chunks on the gathered GEMV (to measure the GEMM)
  bool affine_ = false;  // has_affine_linears(t_), for the prefill matmul scratch
  std::shared_ptr<cuda::DeviceAllocator> alloc_;  // shared with the KV allocator, whose blocks may outlive us
  std::shared_ptr<cuda::DeviceKvBlockAllocator> kv_alloc_;
  cudaStream_t stream_ = nullptr;
  cuda::DeviceWeights w_;
  std::unique_ptr<cuda::DeviceExpertCache> experts_;  // --stream-experts only
  // LMLAB_STREAM_GRAPH=1: the decode graph's hand-off, the stream the misses are copied on, and whether run_device
  // is being captured into such a graph (its MoE layers then publish and await instead of syncing).
  std::unique_ptr<cuda::RoutingMailbox> mailbox_;
  cudaStream_t copy_stream_ = nullptr;
  mutable bool capturing_streamed_ = false;
  mutable uint32_t served_ = 0;  // MoE layers the host has answered (the mailbox's count)
  std::vector<int64_t> moe_layers_;  // with the mailbox: the MoE layers a decode step publishes, in order
  mutable std::vector<int32_t> host_ids_, host_predicted_, slot_ids_;  // a streamed MoE step's host side
  // Decode (one token) has its own scratch, never reallocated, so captured graphs stay valid.
  mutable Scratch decode_, chunk_;
  mutable cuda::PinnedHostBuffer logits_pinned_;  // logits_to_host's staging
  // By layer 0's DeviceBlockTable::id() and the attention bound (decode_kv_bound).
  mutable std::map<std::pair<uint64_t, int64_t>, GraphExec> graphs_by_kv_;
  mutable cuda::GraphStepTimer step_timer_;
  mutable std::mutex mu_;
};

// --gpu-layers 0: as many layers as fit (backend/gpu_layer_plan.h). Each layer costs its weights as stored and its
// f16 KV for one sequence at the context size (a sliding window's at most window + one chunk + two blocks).
int64_t CudaBackend::plan_layers(const ModelOptions& o, int64_t ctx) {
  size_t free_b = 0, total_b = 0;
  check(cudaMemGetInfo(&free_b, &total_b), "device memory");
  auto linear_bytes = [](const Linear* l) { return l ? l->weight_bytes() : 0; };
  std::vector<uint64_t> layer_bytes;
  for (int64_t l = 0; l < s_.n_layers; ++l) {
    const LayerWeights& w = t_.layer_weights()[l];
    uint64_t b = linear_bytes(w.q.get()) + linear_bytes(w.k.get()) + linear_bytes(w.v.get()) + linear_bytes(w.o.get()) +
                 linear_bytes(w.mlp.gate.get()) + linear_bytes(w.mlp.up.get()) + linear_bytes(w.mlp.down.get()) +
                 linear_bytes(w.moe.router.get());
    for (const MlpWeights& e : w.moe.experts)
      b += linear_bytes(e.gate.get()) + linear_bytes(e.up.get()) + linear_bytes(e.down.get());
    const int64_t window = s_.layers[l].window;
    const int64_t positions = window > 0 ? std::min(ctx, window + o.prefill_size + 2 * o.kv_block_tokens) : ctx;
    layer_bytes.push_back(b + static_cast<uint64_t>(positions * 2 * s_.n_kv_heads * s_.head_dim) * 2);
  }
  constexpr uint64_t kRuntimeReserve = uint64_t{512} << 20;  // cuBLAS workspace, graphs, allocator slack
  const uint64_t fixed = t_.embed_weight().weight_bytes() +
                         (&t_.lm_head_weight() != &t_.embed_weight() ? t_.lm_head_weight().weight_bytes() : 0) +
                         kRuntimeReserve;
  plan_ = plan_gpu_layers(layer_bytes, fixed, free_b);
  if (plan_.layers == 0)
    throw Error(ErrorKind::out_of_memory, std::string(option_flag("gpu_layers")),
                "not one layer fits in the device's free memory: " + plan_.to_text());
  return plan_.layers;
}

void CudaBackend::ensure_scratch(Scratch& sc, int64_t n) const {
  if (sc.n >= n) return;
  sc = Scratch{};
  auto& a = *alloc_;
  const int64_t H = s_.hidden, QD = s_.n_heads * s_.head_dim, KD = s_.n_kv_heads * s_.head_dim;
  const int64_t slots = n * std::max<int64_t>(1, s_.top_k);
  const int64_t inter = std::max(s_.intermediate, s_.moe_intermediate * std::max<int64_t>(1, s_.top_k));
  auto f = [&](int64_t count, const char* what) { return DeviceBuffer(a, std::max<int64_t>(1, count) * 4, what); };
  sc.tokens = f(n, "tokens");
  sc.positions = f(n, "positions");
  sc.x = f(n * H, "activations");
  sc.h = f(n * H, "activations");
  sc.y = f(n * H, "activations");
  sc.q = f(n * QD, "q");
  sc.k = f(n * KD, "k");
  sc.v = f(n * KD, "v");
  sc.attn = f(n * QD, "attention output");
  sc.g = f(n * inter, "mlp gate");
  sc.u = f(n * inter, "mlp up");
  sc.logits = f(n * s_.vocab, "logits");
  sc.router = f(n * s_.n_experts, "router logits");
  if (s_.n_experts) {
    sc.route_done = f(1, "router counter");
    check(cudaMemsetAsync(sc.route_done.get(), 0, sc.route_done.bytes(), stream_), "router counter");
  }
  sc.experts = f(slots, "routed experts");
  sc.weights = f(slots, "routing weights");
  sc.slot_out = f(s_.n_experts ? slots * H : 0, "expert outputs");
  if (s_.n_experts) {
    sc.slot_ids = f(slots, "expert slots");
    sc.predicted = f(slots, "predicted experts");
    sc.predicted_weights = f(slots, "predicted expert weights");
    if (n >= kc::kGroupedMinTokens) {  // x: the gate and up projections' n x H, the down projection's slots x inter
      const int64_t inter = std::max(s_.moe_intermediate, s_.intermediate);
      const int64_t x_values = std::max(kc::grouped_x_values(n, H), kc::grouped_x_values(slots, inter));
      sc.groups = DeviceBuffer(a, kc::expert_groups_bytes(slots, route_ids_, x_values), "expert groups");
    }
  }
  // The largest Linear of the model bounds the matmul scratch.
  uint64_t mm = 0;
  for (const auto& [rows, cols] : {std::pair{s_.vocab, H}, {QD, H}, {H, QD}, {s_.intermediate, H}, {H, s_.intermediate},
                                   {s_.n_experts, H}})
    mm = std::max(mm, kc::matmul_scratch_bytes(rows, cols, n, affine_));
  sc.mm = DeviceBuffer(a, mm, "matmul scratch");
  sc.at = DeviceBuffer(a, kc::attention_scratch_bytes(n, s_.n_heads, s_.head_dim, kc::kMaxAttentionSplits),
                       "attention scratch");
  sc.n = n;
}

void CudaBackend::mlp(Scratch& sc, const cuda::DeviceLayer& w, int64_t n) const {
  float *h = sc.h.get<float>(), *g = sc.g.get<float>(), *u = sc.u.get<float>();
  kc::matmul_gate_up(w.gate.w, w.up.w, gate_activation(), h, g, u, g, n, sc.mm.get(), stream_);
  linear(sc, w.down, g, sc.y.get<float>(), n);
}

// Route on the device and run each token's k experts over the stacked expert weights (decode: gathered GEMVs; chunks:
// the slots grouped by expert, then the grouped tensor-core GEMM) into sc.slot_out; layer() sums them in ascending
// expert order (moe_combine, or fused with the next norm): no host round trip. Streamed experts: the GEMVs take the
// experts' VRAM slots instead (stream_in), the sum still goes by expert id, so the result is the resident model's
// bit for bit.
void CudaBackend::moe(Scratch& sc, int64_t l, const cuda::DeviceLayer& w, int64_t n) const {
  const int64_t K = s_.top_k, slots = n * K, inter = w.gate.w.rows;
  float *h = sc.h.get<float>(), *g = sc.g.get<float>(), *u = sc.u.get<float>();
  int32_t* experts = sc.experts.get<int32_t>();
  float* weights = sc.weights.get<float>();
  const kc::RouteTail tail{experts, weights, K, s_.norm_topk, sc.route_done.get<unsigned>()};
  kc::matmul_route(w.router.w, h, sc.router.get<float>(), n, tail, sc.mm.get(), stream_);
  // Into the stacks: expert ids, or VRAM slots (named by the host now, or, in a graph, when the graph runs).
  const int32_t* index = !experts_ ? experts : capturing_streamed_ ? stream_in_graph(sc, l, n) : stream_in(sc, l, n);
  const bool host_step = experts_ && !capturing_streamed_;  // this call holds host experts until finish()
  try {
    const kc::GemvPart gate_up[] = {{w.gate.w, g}, {w.up.w, u}};
    const kc::GemvPart down{w.down.w, sc.slot_out.get<float>()};
    const bool grouped = grouped_experts_ && n >= kc::kGroupedMinTokens && kc::matmul_grouped_supports(w.gate.w) &&
                         kc::matmul_grouped_supports(w.up.w) && kc::matmul_grouped_supports(w.down.w);
    if (grouped) {
      kc::group_slots(index, slots, route_ids_, sc.groups.get(), stream_);
      kc::matmul_grouped(gate_up, 2, sc.groups.get(), sc.groups.bytes(), slots, route_ids_, h, K, stream_);
      kc::gated_mul(gate_activation(), g, u, g, slots * inter, stream_);
      kc::matmul_grouped(&down, 1, sc.groups.get(), sc.groups.bytes(), slots, route_ids_, g, 1, stream_);
    } else {
      kc::matmul_gathered_gate_up(w.gate.w, w.up.w, gate_activation(), index, h, K, slots, g, u, g, stream_);
      kc::matmul_gathered(&down, 1, index, g, 1, slots, stream_);
    }
  } catch (...) {
    if (host_step) experts_->abandon(stream_);
    throw;
  }
  if (host_step) experts_->finish();  // the GEMVs are queued behind the copies; now the host experts may go
}

// --stream-experts, between routing and the expert GEMVs of model layer l: the routed ids (and the next MoE layer's
// guess, its router on this layer's input as the CPU streamer predicts) come to the host, the VRAM cache loads the
// misses (SSD reads into the host cache, then copies into slots on this stream), and the slot of every routed
// entry goes back to the device. Returns sc.slot_ids [n * top_k].
const int32_t* CudaBackend::stream_in(Scratch& sc, int64_t l, int64_t n) const {
  const int64_t slots = n * s_.top_k;
  const int32_t next = predict_next_layer(sc, l, n);
  host_ids_.resize(static_cast<size_t>(slots));
  host_predicted_.resize(next >= 0 ? static_cast<size_t>(slots) : 0);
  check(cudaMemcpyAsync(host_ids_.data(), sc.experts.get(), slots * 4, cudaMemcpyDeviceToHost, stream_), "routed experts");
  if (next >= 0)
    check(cudaMemcpyAsync(host_predicted_.data(), sc.predicted.get(), slots * 4, cudaMemcpyDeviceToHost, stream_),
          "predicted experts");
  check(cudaStreamSynchronize(stream_), "routed experts");
  experts_->load(static_cast<int32_t>(l), host_ids_, next, host_predicted_, slot_ids_, stream_);
  // Pageable source: staged before the call returns, so slot_ids_ may change at the next layer.
  const cudaError_t e = cudaMemcpyAsync(sc.slot_ids.get(), slot_ids_.data(), slots * 4, cudaMemcpyHostToDevice, stream_);
  if (e != cudaSuccess) {
    experts_->abandon(stream_);
    cuda::throw_cuda(e, "expert slots");
  }
  return sc.slot_ids.get<int32_t>();
}

// The MoE layer to read ahead for after layer l, or -1: none in a layer-major prompt (every chunk of this layer
// comes first) nor for a layer on the CPU (it predicts for itself). A captured graph and serve_streamed_step ask it
// alike.
int32_t CudaBackend::next_predicted_layer(int64_t l) const {
  const ExpertStreamer& es = *t_.streamer();
  const int32_t next =
      es.options().expert_predict_next && !in_layer_major_ ? es.next_moe_layer(static_cast<int32_t>(l)) : -1;
  return next < n_dev_ ? next : -1;
}

// next_predicted_layer(l), its guess queued into sc.predicted: its router on this layer's input, as the CPU streamer
// predicts.
int32_t CudaBackend::predict_next_layer(Scratch& sc, int64_t l, int64_t n) const {
  const int32_t next = next_predicted_layer(l);
  if (next >= 0) {
    linear(sc, w_.layers[next].router, sc.h.get<float>(), sc.router.get<float>(), n);  // this layer's logits are used
    kc::route_topk(sc.router.get<float>(), n, s_.n_experts, s_.top_k, s_.norm_topk, sc.predicted.get<int32_t>(),
                   sc.predicted_weights.get<float>(), stream_);
  }
  return next;
}

// stream_in inside a decode graph being captured: the layer publishes its routed and predicted ids to the mailbox
// and waits there for the slots, which serve_streamed_step() names while the graph runs.
const int32_t* CudaBackend::stream_in_graph(Scratch& sc, int64_t l, int64_t n) const {
  const int64_t slots = n * s_.top_k;
  const int32_t next = predict_next_layer(sc, l, n);
  kc::publish_routing(mailbox_->view(), sc.experts.get<int32_t>(), next >= 0 ? sc.predicted.get<int32_t>() : nullptr,
                      slots, stream_);
  kc::await_slots(mailbox_->view(), sc.slot_ids.get<int32_t>(), slots, stream_);
  return sc.slot_ids.get<int32_t>();
}

// The host's half of a streamed decode graph's step, after its launch: each MoE layer in order, its published ids
// are loaded into the VRAM cache (reads, then copies on copy_stream_, waited for: the graph's kernels only read the
// slots after the answer) and its slots answered. On an error the copies are waited for and the step's slots
// forgotten, every remaining layer is answered with the last slots (in range: the graph finishes, its logits are not
// used), the graph is waited for and the counts restart from the device's.
void CudaBackend::serve_streamed_step() const {
  const int64_t slots = s_.top_k;
  const uint32_t base = served_, n_moe = static_cast<uint32_t>(moe_layers_.size());
  try {
    for (uint32_t i = 0; i < n_moe; ++i) {
      const int64_t l = moe_layers_[i];
      const int32_t next = next_predicted_layer(l);  // as when the graph was captured
      mailbox_->wait_published(base + i + 1, stream_);
      const auto ids = mailbox_->ids(slots), predicted = mailbox_->predicted(slots);
      host_ids_.assign(ids.begin(), ids.end());
      host_predicted_.assign(next >= 0 ? predicted.begin() : predicted.end(), predicted.end());
      experts_->load(static_cast<int32_t>(l), host_ids_, next, host_predicted_, slot_ids_, copy_stream_);
      experts_->finish();
      mailbox_->answer(slot_ids_, base + i + 1);
      served_ = base + i + 1;
    }
  } catch (...) {
    // No copy may still write a slot once the remaining layers run (load and finish wait for theirs; this makes sure).
    experts_->abandon(copy_stream_);
    // Far ahead: every remaining await passes even if the counts disagree (a graph that published more or fewer
    // layers than this loop serves), so the synchronisation below cannot hang on them.
    served_ = base + n_moe;
    mailbox_->release(served_ + (1u << 30));
    if (cudaStreamSynchronize(stream_) == cudaSuccess) {
      try {
        served_ = mailbox_->resync();  // the graph is done: both counts restart from the device's
      } catch (...) {
        mailbox_->release(served_);
      }
    } else {
      mailbox_->release(served_);
    }
    throw;
  }
}

// Decode fuses a layer's norms into its GEMVs where every GEMV that reads a norm can take it (4/8-bit q/k/v and
// gate/up: kc::matmul_norms_input) and the layer is dense without post-norms (a MoE block's experts and router read
// h; gemma's post-norms sit between a projection and its residual add). The head fuses the final norm likewise.
void CudaBackend::plan_fused_norms() {
  const char* env = std::getenv("LMLAB_FUSED_NORMS");
  const bool on = env && std::string(env) == "1";
  fused_norms_.assign(s_.n_layers + 1, false);
  auto takes = [](const cuda::DeviceLinear& l) { return kc::matmul_norms_input(l.w, 1); };
  for (int64_t l = 0; l < n_dev_; ++l) {
    const cuda::DeviceLayer& w = w_.layers[l];
    fused_norms_[l] = on && !s_.layers[l].moe && !w.post_attn_norm.get() && !w.post_ffn_norm.get() && takes(w.q) &&
                      takes(w.k) && takes(w.v) && takes(w.gate) && takes(w.up);
  }
  fused_norms_[s_.n_layers] = on && n_dev_ == s_.n_layers && takes(w_.lm_head);
}

// On entry x is the residual stream and, unless the layer fuses its norms (fuses_norms), h = attn_norm(x); on exit x
// has the layer's residuals and h = the next norm of x (the next layer's attention norm, or the final norm after the
// last layer when the head runs here) unless what comes next fuses it. Each residual add is fused with the norm that
// follows it, or (fused layers) into the GEMV whose output it adds.
void CudaBackend::layer(Scratch& sc, int64_t l, int64_t n, int64_t n_kv_bound, KvSequence& cache) const {
  const cuda::DeviceLayer& w = w_.layers[l];
  const LayerSpec& ls = s_.layers[l];
  const int64_t H = s_.hidden;
  float *x = sc.x.get<float>(), *h = sc.h.get<float>(), *y = sc.y.get<float>();
  float *q = sc.q.get<float>(), *k = sc.k.get<float>(), *v = sc.v.get<float>();
  const bool fused = fuses_norms(l, n);
  const kc::GemvPart qkv[] = {{w.q.w, q}, {w.k.w, k}, {w.v.w, v}};
  if (fused) kc::matmul_parts(qkv, 3, x, n, sc.mm.get(), stream_, {{w.attn_norm.get<float>(), s_.norm_eps}});
  else kc::matmul_parts(qkv, 3, h, n, sc.mm.get(), stream_);
  const RopeSpec& rope = s_.ropes[ls.rope];
  const int32_t* positions = sc.positions.get<int32_t>();
  const cuda::DeviceKvLayer kv = device_kv(cache, l);
  const auto f16 = kv.f16_blocks();
  if (f16) {  // the rows go into the cache in the same launch
    kc::qk_norm_rope_kv_write(q, k, v, *f16, n, s_.n_heads, rope.rot_dim, w.q_norm.get<float>(), w.k_norm.get<float>(),
                              s_.norm_eps, positions, w_.inv_freq[ls.rope].get<float>(), rope.attention_scaling, stream_);
  } else {
    kc::qk_norm_rope(q, k, n, s_.n_heads, s_.n_kv_heads, s_.head_dim, rope.rot_dim, w.q_norm.get<float>(),
                     w.k_norm.get<float>(), s_.norm_eps, positions, w_.inv_freq[ls.rope].get<float>(),
                     rope.attention_scaling, stream_);
    kv.write(k, v, n, positions, stream_);
  }
  kv.attend(q, n, positions, n_kv_bound, attention_spec(s_, ls), sc.attn.get<float>(), sc.at.get(), stream_,
            !f16.has_value());
  const DeviceBuffer* next = l + 1 < n_dev_ ? &w_.layers[l + 1].attn_norm
                             : n_dev_ == s_.n_layers ? &w_.final_norm
                                                     : nullptr;  // the CPU takes x from here
  const bool next_fused = next && fuses_norms(l + 1 < n_dev_ ? l + 1 : s_.n_layers, n);
  if (fused) {  // x += o; the MLP over norm(x); x += down
    const kc::GemvFusion add{.norm = {}, .accumulate = true};
    kc::matmul(w.o.w, sc.attn.get<float>(), x, n, sc.mm.get(), stream_, add);
    float* g = sc.g.get<float>();
    kc::matmul_gate_up(w.gate.w, w.up.w, gate_activation(), x, g, sc.u.get<float>(), g, n, sc.mm.get(), stream_,
                       {w.ffn_norm.get<float>(), s_.norm_eps});
    kc::matmul(w.down.w, g, x, n, sc.mm.get(), stream_, add);
    if (next && !next_fused) norm(*next, x, h, n, H);
    return;
  }
  linear(sc, w.o, sc.attn.get<float>(), y, n);
  if (w.post_attn_norm.get()) norm(w.post_attn_norm, y, y, n, H);
  kc::add_rmsnorm(x, y, w.ffn_norm.get<float>(), h, n, H, s_.norm_eps, stream_);
  const float* slot_out = sc.slot_out.get<float>();
  const int32_t* experts = sc.experts.get<int32_t>();
  if (ls.moe) {
    moe(sc, l, w, n);
    if (next && !w.post_ffn_norm.get()) {  // the experts' sum goes straight into the residual and the next norm
      kc::moe_combine_add_rmsnorm(x, slot_out, experts, sc.weights.get<float>(), s_.top_k, y, next->get<float>(), h, n,
                                  H, s_.norm_eps, stream_);
      return;
    }
    kc::moe_combine(slot_out, experts, sc.weights.get<float>(), n, s_.top_k, H, y, stream_);
  } else {
    mlp(sc, w, n);
  }
  if (w.post_ffn_norm.get()) norm(w.post_ffn_norm, y, y, n, H);
  if (next && !next_fused) kc::add_rmsnorm(x, y, next->get<float>(), h, n, H, s_.norm_eps, stream_);
  else kc::add_inplace(x, y, n * H, stream_);
}

void CudaBackend::run_device(Scratch& sc, int64_t n, int64_t n_out, int64_t n_kv_bound, KvSequence& cache) const {
  const int64_t H = s_.hidden;
  float *x = sc.x.get<float>(), *h = sc.h.get<float>();
  kc::embed_rows(w_.embed.w, sc.tokens.get<int32_t>(), n, s_.embed_scale, x, stream_);
  if (!fuses_norms(0, n)) norm(w_.layers[0].attn_norm, x, h, n, H);
  for (int64_t l = 0; l < n_dev_; ++l) layer(sc, l, n, n_kv_bound, cache);
  if (n_dev_ < s_.n_layers) return;
  if (fuses_norms(s_.n_layers, n))  // the final norm inside the head's GEMV
    kc::matmul(w_.lm_head.w, x + (n - n_out) * H, sc.logits.get<float>(), n_out, sc.mm.get(), stream_,
               {{w_.final_norm.get<float>(), s_.norm_eps}});
  else linear(sc, w_.lm_head, h + (n - n_out) * H, sc.logits.get<float>(), n_out);  // h: the final norm of x
  if (s_.final_softcap > 0) kc::softcap(sc.logits.get<float>(), n_out * s_.vocab, s_.final_softcap, stream_);
}

// One decode token at `pos` through the session's captured graph for that position's attention bound (captured on
// the first decode step that needs it). The graph holds this session's block tables (so it is keyed by its layer
// 0's) and splits attention for the bound, so any later position under it replays it.
void CudaBackend::replay_decode(Scratch& sc, KvSequence& cache, int64_t pos) const {
  const cuda::DeviceKvLayer kv0 = device_kv(cache, 0);
  const int64_t bound = decode_kv_bound(cache, pos);
  auto it = graphs_by_kv_.find({kv0.id(), bound});
  if (it == graphs_by_kv_.end()) {
    if (graphs_by_kv_.size() >= 64) {  // sessions come and go: drop the old graphs
      for (auto& [id, g] : graphs_by_kv_) cudaGraphExecDestroy(g.exec);
      graphs_by_kv_.clear();
    }
    cudaGraph_t graph = nullptr;
    check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "graph capture");
    capturing_streamed_ = experts_ != nullptr;
    try {
      run_device(sc, 1, 1, bound, cache);
    } catch (...) {
      capturing_streamed_ = false;
      cudaStreamEndCapture(stream_, &graph);
      if (graph) cudaGraphDestroy(graph);
      throw;
    }
    capturing_streamed_ = false;
    check(cudaStreamEndCapture(stream_, &graph), "graph capture");
    GraphExec g;
    const cudaError_t e = cudaGraphInstantiate(&g.exec, graph, 0);
    cudaGraphDestroy(graph);
    check(e, "graph instantiate");
    it = graphs_by_kv_.emplace(std::pair{kv0.id(), bound}, g).first;
  }
  step_timer_.begin(stream_);
  check(cudaGraphLaunch(it->second.exec, stream_), "graph launch");
  step_timer_.end(stream_);
  if (experts_) serve_streamed_step();
}

void CudaBackend::forward(std::span<const int32_t> tokens, int64_t pos0, KvSequence& cache, bool all_logits,
                          std::vector<float>& logits) const {
  std::lock_guard lock(mu_);
  const int64_t n = static_cast<int64_t>(tokens.size()), H = s_.hidden;
  if (n == 0) throw Error(ErrorKind::invalid_input, "forward", "no tokens to process");
  for (int32_t id : tokens)
    if (id < 0 || id >= s_.vocab)
      throw Error(ErrorKind::invalid_input, "tokens",
                  fmt::format("token id {} is outside the vocabulary [0, {})", id, s_.vocab));
  if (n > prefill_size_ && layer_major_ && !all_logits) return forward_layer_major(tokens, pos0, cache, logits);
  Scratch& sc = n == 1 ? decode_ : chunk_;
  ensure_scratch(sc, n);
  std::vector<int32_t> positions(n);
  for (int64_t t = 0; t < n; ++t) positions[t] = static_cast<int32_t>(pos0 + t);
  check(cudaMemcpyAsync(sc.tokens.get(), tokens.data(), n * 4, cudaMemcpyHostToDevice, stream_), "tokens");
  check(cudaMemcpyAsync(sc.positions.get(), positions.data(), n * 4, cudaMemcpyHostToDevice, stream_), "positions");
  for (int64_t l = 0; l < n_dev_; ++l) device_kv(cache, l).grow(n, stream_);  // blocks before the kernels

  const int64_t n_out = all_logits ? n : 1;
  const bool resident = n_dev_ == s_.n_layers;
  if (resident && n == 1 && graphs_ && (!experts_ || mailbox_)) replay_decode(sc, cache, pos0);
  // Streaming syncs per MoE layer, so no graph; attention is split as the graph splits it, so that decode logits
  // equal the resident model's bit for bit.
  else if (resident && n == 1 && experts_) run_device(sc, 1, 1, decode_kv_bound(cache, pos0), cache);
  else run_device(sc, n, n_out, pos0 + n, cache);

  if (!resident) {  // --gpu-layers: the rest of the layers and the head on the CPU
    std::vector<float> hx(n * H);
    check(cudaMemcpyAsync(hx.data(), sc.x.get(), n * H * 4, cudaMemcpyDeviceToHost, stream_), "activations");
    check(cudaStreamSynchronize(stream_), "forward");
    t_.run_layers(hx.data(), n, pos0, cache, n_dev_, s_.n_layers);
    t_.head(hx.data(), n, all_logits, logits);
    return;
  }
  logits.resize(static_cast<size_t>(n_out * s_.vocab));
  logits_to_host(sc, logits);
}

// A prompt of more than one chunk with streamed experts: each layer runs over every chunk before the next layer
// starts. Per chunk it is run_device's work on the same rows (the chunk's x and h copied into the chunk scratch and
// back), so the logits equal the chunk-by-chunk forward's bit for bit; only the order of the SSD reads changes.
void CudaBackend::forward_layer_major(std::span<const int32_t> tokens, int64_t pos0, KvSequence& cache,
                                      std::vector<float>& logits) const {
  const int64_t n = static_cast<int64_t>(tokens.size()), H = s_.hidden, chunk = prefill_size_;
  Scratch& sc = chunk_;
  ensure_scratch(sc, chunk);
  DeviceBuffer xs(*alloc_, n * H * 4, "layer-major activations"), hs(*alloc_, n * H * 4, "layer-major activations");
  std::vector<int32_t> positions(n);
  for (int64_t t = 0; t < n; ++t) positions[t] = static_cast<int32_t>(pos0 + t);
  for (int64_t l = 0; l < n_dev_; ++l) device_kv(cache, l).grow(n, stream_);
  float *x = sc.x.get<float>(), *h = sc.h.get<float>();
  auto rows = [&](float* dst, const float* src, int64_t m, const char* what) {
    check(cudaMemcpyAsync(dst, src, m * H * 4, cudaMemcpyDeviceToDevice, stream_), what);
  };
  // Chunk c's tokens and positions into the scratch (pageable sources: staged before the call returns).
  auto stage = [&](int64_t off, int64_t m, bool with_tokens) {
    if (with_tokens)
      check(cudaMemcpyAsync(sc.tokens.get(), tokens.data() + off, m * 4, cudaMemcpyHostToDevice, stream_), "tokens");
    check(cudaMemcpyAsync(sc.positions.get(), positions.data() + off, m * 4, cudaMemcpyHostToDevice, stream_),
          "positions");
  };
  in_layer_major_ = true;
  try {
    for (int64_t off = 0; off < n; off += chunk) {
      const int64_t m = std::min(chunk, n - off);
      stage(off, m, true);
      kc::embed_rows(w_.embed.w, sc.tokens.get<int32_t>(), m, s_.embed_scale, x, stream_);
      norm(w_.layers[0].attn_norm, x, h, m, H);
      rows(xs.get<float>() + off * H, x, m, "activations"), rows(hs.get<float>() + off * H, h, m, "activations");
    }
    for (int64_t l = 0; l < n_dev_; ++l)
      for (int64_t off = 0; off < n; off += chunk) {
        const int64_t m = std::min(chunk, n - off);
        stage(off, m, false);
        rows(x, xs.get<float>() + off * H, m, "activations"), rows(h, hs.get<float>() + off * H, m, "activations");
        layer(sc, l, m, pos0 + off + m, cache);
        rows(xs.get<float>() + off * H, x, m, "activations"), rows(hs.get<float>() + off * H, h, m, "activations");
      }
  } catch (...) {
    in_layer_major_ = false;
    throw;
  }
  in_layer_major_ = false;
  // h holds the last chunk's final norm; the head on its last row.
  const int64_t last = (n - 1) % chunk;
  linear(sc, w_.lm_head, h + last * H, sc.logits.get<float>(), 1);
  if (s_.final_softcap > 0) kc::softcap(sc.logits.get<float>(), s_.vocab, s_.final_softcap, stream_);
  logits.resize(static_cast<size_t>(s_.vocab));
  logits_to_host(sc, logits);
}

// The first logits.size() logits of the scratch into `logits`, waiting for the stream: through pinned memory where
// the driver gives it (a decode step's 0.6 MB copy and the GPU's idle wait for it shorter), else straight. Only a
// few rows' worth is pinned: a chunk's every-position logits (perplexity: 2048 x 152K floats) would hold 1.2 GB of
// host memory pinned for the process's life.
void CudaBackend::logits_to_host(const Scratch& sc, std::vector<float>& logits) const {
  constexpr size_t kMaxPinnedBytes = size_t{16} << 20;
  const size_t bytes = logits.size() * sizeof(float);
  void* pinned = bytes <= kMaxPinnedBytes ? logits_pinned_.reserve(bytes) : nullptr;
  check(cudaMemcpyAsync(pinned ? pinned : logits.data(), sc.logits.get(), bytes, cudaMemcpyDeviceToHost, stream_),
        "logits");
  check(cudaStreamSynchronize(stream_), "forward");
  if (pinned) std::memcpy(logits.data(), pinned, bytes);
}

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(const ModelOptions& options, const Transformer& transformer) {
  return std::make_unique<CudaBackend>(options, transformer);
}

}  // namespace lmlab
