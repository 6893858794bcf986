// The CUDA backend; see cuda_backend.h for the precision and KV-placement contract.
//
// One Forward, T = all new rows of the batch, for each layer l:
//   h = rmsnorm(x) (bf16)            q, k, v = h W^T (+ b)     (cuBLAS, fp32 out)
//   rope(q), rope(k) at each row's position; k, v rows appended to the item's device KV
//   att = attention(q, KV) (fp32)   x += att Wo^T (+ bo)
//   h = rmsnorm(x)                   x += (silu(h Wg^T + bg) * (h Wu^T + bu)) Wd^T (+ bd)
// (biases where the model has them: ModelConfig::attention_bias, o_proj_bias(), mlp_bias).
// then logits = rmsnorm(x[last row]) W_lm^T for the items that want them.
// Sliding windows: layer l's attention items carry ModelConfig::LayerWindow(l) (0 for
// full attention), counted in rows of the item's KV, which are sequence indices, exactly
// as the CPU backend passes its window to CausalAttention.
// STATUS: compiled and linked in CI; never run on a GPU by the author (the sliding-window
// support too: compiled, never run).
#include "engine/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/cuda/cuda_util.h"
#include "engine/cuda/kernels.h"
#include "engine/rope.h"

namespace blockserve::engine {
namespace {

using cuda::bf16;
using cuda::DeviceArray;

#define RETURN_IF_ERROR(expr)                                  \
  do {                                                         \
    if (absl::Status _s = (expr); !_s.ok()) return _s;         \
  } while (0)

absl::Status CublasStatus(cublasStatus_t s, std::string_view what) {
  if (s == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(std::string(what), ": ", cublasGetStatusString(s)));
}

// fp32 host tensor -> bf16 device tensor (round to nearest even).
absl::Status UploadBf16(const std::vector<float>& host, DeviceArray<bf16>& out) {
  std::vector<bf16> tmp(host.size());
  for (size_t i = 0; i < host.size(); ++i) tmp[i] = __float2bfloat16(host[i]);
  return out.Upload(tmp.data(), tmp.size());
}

absl::Status UploadF32(const std::vector<float>& host, DeviceArray<float>& out) {
  if (host.empty()) return absl::OkStatus();
  return out.Upload(host.data(), host.size());
}

struct DeviceLayer {
  DeviceArray<float> input_norm, post_norm, bq, bk, bv, bo, b_gate, b_up, b_down;
  DeviceArray<bf16> wq, wk, wv, wo, w_gate, w_up, w_down;
};

// Device buffers reused across Forward calls; they grow to the largest batch seen.
struct Scratch {
  DeviceArray<float> x, q, k, v, att, tmp, gate, up, kv, last, logits, shift;
  DeviceArray<bf16> h, att16, act, last16;
  DeviceArray<int32_t> tokens;
  DeviceArray<int64_t> positions;
  DeviceArray<cuda::AttentionItem> items;
};

class CudaBackend : public Backend {
 public:
  CudaBackend(const ModelConfig& config, int device)
      : config_(config), rope_(config), device_(device) {}
  ~CudaBackend() override {
    cudaSetDevice(device_);
    if (blas_ != nullptr) cublasDestroy(blas_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  absl::Status Init(const ModelWeights& w);

  std::string_view name() const override { return "cuda"; }
  const ModelConfig& config() const override { return config_; }

  // Rotates on the GPU (all layers in one launch). On a CUDA failure the rotation is
  // done on the CPU instead (engine::Rope::Shift), so the cache is always re-encoded.
  void ShiftKeys(KvCache& cache, int64_t first_row, int64_t count, int64_t delta) override {
    if (count <= 0 || delta == 0) return;
    absl::Status s = ShiftOnDevice(cache, first_row, count, delta);
    if (s.ok()) return;
    std::fprintf(stderr, "cuda backend: ShiftKeys on the GPU failed (%s); rotating on the CPU\n",
                 std::string(s.message()).c_str());
    const KvShape& shape = cache.shape();
    for (int64_t l = 0; l < shape.num_layers; ++l) {
      rope_.Shift(cache.k(l) + first_row * shape.row(), count, shape.num_kv_heads, delta);
    }
  }

 private:
  absl::Status DoForward(absl::Span<const ForwardItem> batch,
                         std::vector<std::vector<float>>* logits) override {
    RETURN_IF_ERROR(cuda::CudaStatus(cudaSetDevice(device_), "cudaSetDevice"));
    return Run(batch, logits);
  }
  absl::Status Run(absl::Span<const ForwardItem> batch, std::vector<std::vector<float>>* logits);
  absl::Status Layer(int64_t l, int64_t total, absl::Span<const ForwardItem> batch,
                     const std::vector<int64_t>& row0, const std::vector<int64_t>& past,
                     const std::vector<int64_t>& kv_off, int64_t max_m);
  absl::Status ShiftOnDevice(KvCache& cache, int64_t first_row, int64_t count, int64_t delta);

  // y[m, n] = x[m, k] W^T with W stored [n, k] (Hugging Face); bf16 in, fp32 out and
  // accumulation. Row-major y^T = W x^T is cuBLAS's column-major C = op(A) B with
  // A = W (k x n column-major, transposed) and B = x (k x m column-major).
  absl::Status Gemm(const bf16* x, int64_t m, int64_t k, const bf16* w, int64_t n, float* y) {
    const float alpha = 1.0f, beta = 0.0f;
    return CublasStatus(
        cublasGemmEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                     static_cast<int>(k), &alpha, w, CUDA_R_16BF, static_cast<int>(k), x,
                     CUDA_R_16BF, static_cast<int>(k), &beta, y, CUDA_R_32F,
                     static_cast<int>(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "cublasGemmEx");
  }

  // Floats of one item's device KV: [layer][K|V][cap rows][kv row].
  int64_t KvFloats(int64_t cap) const {
    return 2 * config_.num_hidden_layers * cap * config_.num_key_value_heads * config_.head_dim;
  }

  ModelConfig config_;
  Rope rope_;
  int device_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  DeviceArray<bf16> embed_, lm_head_;
  const bf16* lm_head_ptr_ = nullptr;  // lm_head_ or, for tied embeddings, embed_
  DeviceArray<float> final_norm_;
  DeviceArray<double> inv_freq_;
  std::vector<DeviceLayer> layers_;
  Scratch s_;
};

absl::Status CudaBackend::Init(const ModelWeights& w) {
  RETURN_IF_ERROR(cuda::CudaStatus(cudaSetDevice(device_), "cudaSetDevice"));
  RETURN_IF_ERROR(cuda::CudaStatus(cudaStreamCreate(&stream_), "cudaStreamCreate"));
  RETURN_IF_ERROR(CublasStatus(cublasCreate(&blas_), "cublasCreate"));
  RETURN_IF_ERROR(CublasStatus(cublasSetStream(blas_, stream_), "cublasSetStream"));
  RETURN_IF_ERROR(UploadBf16(w.embed, embed_));
  if (config_.tie_word_embeddings) {
    lm_head_ptr_ = embed_.get();
  } else {
    RETURN_IF_ERROR(UploadBf16(w.lm_head, lm_head_));
    lm_head_ptr_ = lm_head_.get();
  }
  RETURN_IF_ERROR(UploadF32(w.final_norm, final_norm_));
  RETURN_IF_ERROR(inv_freq_.Upload(rope_.inv_freq().data(), rope_.inv_freq().size()));
  layers_.resize(w.layers.size());
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const LayerWeights& src = w.layers[l];
    DeviceLayer& dst = layers_[l];
    RETURN_IF_ERROR(UploadF32(src.input_norm, dst.input_norm));
    RETURN_IF_ERROR(UploadF32(src.post_attention_norm, dst.post_norm));
    RETURN_IF_ERROR(UploadF32(src.bq, dst.bq));
    RETURN_IF_ERROR(UploadF32(src.bk, dst.bk));
    RETURN_IF_ERROR(UploadF32(src.bv, dst.bv));
    RETURN_IF_ERROR(UploadF32(src.bo, dst.bo));
    RETURN_IF_ERROR(UploadF32(src.b_gate, dst.b_gate));
    RETURN_IF_ERROR(UploadF32(src.b_up, dst.b_up));
    RETURN_IF_ERROR(UploadF32(src.b_down, dst.b_down));
    RETURN_IF_ERROR(UploadBf16(src.wq, dst.wq));
    RETURN_IF_ERROR(UploadBf16(src.wk, dst.wk));
    RETURN_IF_ERROR(UploadBf16(src.wv, dst.wv));
    RETURN_IF_ERROR(UploadBf16(src.wo, dst.wo));
    RETURN_IF_ERROR(UploadBf16(src.w_gate, dst.w_gate));
    RETURN_IF_ERROR(UploadBf16(src.w_up, dst.w_up));
    RETURN_IF_ERROR(UploadBf16(src.w_down, dst.w_down));
  }
  if (config_.head_dim % 2 != 0 || config_.head_dim > cuda::kMaxAttentionHeadDim) {
    return absl::InvalidArgumentError(absl::StrCat("the CUDA backend supports even head_dim <= ",
                                                   cuda::kMaxAttentionHeadDim, ", not ",
                                                   config_.head_dim));
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::Layer(int64_t l, int64_t total, absl::Span<const ForwardItem> batch,
                                const std::vector<int64_t>& row0,
                                const std::vector<int64_t>& past,
                                const std::vector<int64_t>& kv_off, int64_t max_m) {
  const ModelConfig& c = config_;
  const DeviceLayer& w = layers_[l];
  const int64_t hidden = c.hidden_size, hd = c.head_dim, qd = c.num_attention_heads * hd,
                kvd = c.num_key_value_heads * hd, inter = c.intermediate_size;
  const float eps = static_cast<float>(c.rms_norm_eps);
  cuda::LaunchRmsNorm(s_.x.get(), total, hidden, w.input_norm.get(), eps, s_.h.get(), stream_);
  RETURN_IF_ERROR(Gemm(s_.h.get(), total, hidden, w.wq.get(), qd, s_.q.get()));
  RETURN_IF_ERROR(Gemm(s_.h.get(), total, hidden, w.wk.get(), kvd, s_.k.get()));
  RETURN_IF_ERROR(Gemm(s_.h.get(), total, hidden, w.wv.get(), kvd, s_.v.get()));
  if (c.attention_bias) {
    cuda::LaunchAddBias(s_.q.get(), total, qd, w.bq.get(), stream_);
    cuda::LaunchAddBias(s_.k.get(), total, kvd, w.bk.get(), stream_);
    cuda::LaunchAddBias(s_.v.get(), total, kvd, w.bv.get(), stream_);
  }
  cuda::LaunchRopeApply(s_.q.get(), total, c.num_attention_heads, hd, s_.positions.get(),
                        inv_freq_.get(), stream_);
  cuda::LaunchRopeApply(s_.k.get(), total, c.num_key_value_heads, hd, s_.positions.get(),
                        inv_freq_.get(), stream_);
  for (size_t b = 0; b < batch.size(); ++b) {  // append the new rows to the item's KV
    const int64_t m = batch[b].tokens.size(), cap = past[b] + m;
    float* k_dst = s_.kv.get() + kv_off[b] + (2 * l) * cap * kvd + past[b] * kvd;
    float* v_dst = s_.kv.get() + kv_off[b] + (2 * l + 1) * cap * kvd + past[b] * kvd;
    const size_t bytes = m * kvd * sizeof(float);
    RETURN_IF_ERROR(cuda::CudaStatus(cudaMemcpyAsync(k_dst, s_.k.get() + row0[b] * kvd, bytes,
                                                     cudaMemcpyDeviceToDevice, stream_),
                                     "KV append"));
    RETURN_IF_ERROR(cuda::CudaStatus(cudaMemcpyAsync(v_dst, s_.v.get() + row0[b] * kvd, bytes,
                                                     cudaMemcpyDeviceToDevice, stream_),
                                     "KV append"));
  }
  cuda::LaunchAttention(s_.q.get(), s_.items.get() + l * batch.size(), batch.size(), max_m,
                        c.num_attention_heads, c.num_key_value_heads, hd, s_.att.get(), stream_);
  cuda::LaunchToBf16(s_.att.get(), total * qd, s_.att16.get(), stream_);
  RETURN_IF_ERROR(Gemm(s_.att16.get(), total, qd, w.wo.get(), hidden, s_.tmp.get()));
  if (c.o_proj_bias()) cuda::LaunchAddBias(s_.tmp.get(), total, hidden, w.bo.get(), stream_);
  cuda::LaunchAddInPlace(s_.x.get(), s_.tmp.get(), total * hidden, stream_);

  cuda::LaunchRmsNorm(s_.x.get(), total, hidden, w.post_norm.get(), eps, s_.h.get(), stream_);
  RETURN_IF_ERROR(Gemm(s_.h.get(), total, hidden, w.w_gate.get(), inter, s_.gate.get()));
  RETURN_IF_ERROR(Gemm(s_.h.get(), total, hidden, w.w_up.get(), inter, s_.up.get()));
  if (c.mlp_bias) {
    cuda::LaunchAddBias(s_.gate.get(), total, inter, w.b_gate.get(), stream_);
    cuda::LaunchAddBias(s_.up.get(), total, inter, w.b_up.get(), stream_);
  }
  cuda::LaunchSwiGlu(s_.gate.get(), s_.up.get(), total * inter, s_.act.get(), stream_);
  RETURN_IF_ERROR(Gemm(s_.act.get(), total, inter, w.w_down.get(), hidden, s_.tmp.get()));
  if (c.mlp_bias) cuda::LaunchAddBias(s_.tmp.get(), total, hidden, w.b_down.get(), stream_);
  cuda::LaunchAddInPlace(s_.x.get(), s_.tmp.get(), total * hidden, stream_);
  return cuda::CudaStatus(cudaGetLastError(), absl::StrCat("layer ", l, " kernels"));
}

absl::Status CudaBackend::Run(absl::Span<const ForwardItem> batch,
                              std::vector<std::vector<float>>* logits) {
  const ModelConfig& c = config_;
  const int64_t num = batch.size(), layers = c.num_hidden_layers, hidden = c.hidden_size,
                qd = c.num_attention_heads * c.head_dim, kvd = c.num_key_value_heads * c.head_dim,
                inter = c.intermediate_size, vocab = c.vocab_size;
  std::vector<int64_t> row0(num), past(num), kv_off(num);
  std::vector<int32_t> tokens;
  std::vector<int64_t> positions;
  int64_t total = 0, kv_total = 0, max_m = 0;
  for (int64_t b = 0; b < num; ++b) {
    const ForwardItem& item = batch[b];
    const int64_t m = item.tokens.size();
    row0[b] = total;
    past[b] = item.cache->num_tokens();
    kv_off[b] = kv_total;
    kv_total += KvFloats(past[b] + m);
    total += m;
    max_m = std::max(max_m, m);
    tokens.insert(tokens.end(), item.tokens.begin(), item.tokens.end());
    for (int64_t t = 0; t < m; ++t) positions.push_back(item.first_position + t);
  }
  RETURN_IF_ERROR(s_.x.Reserve(total * hidden));
  RETURN_IF_ERROR(s_.tmp.Reserve(total * hidden));
  RETURN_IF_ERROR(s_.h.Reserve(total * hidden));
  RETURN_IF_ERROR(s_.q.Reserve(total * qd));
  RETURN_IF_ERROR(s_.att.Reserve(total * qd));
  RETURN_IF_ERROR(s_.att16.Reserve(total * qd));
  RETURN_IF_ERROR(s_.k.Reserve(total * kvd));
  RETURN_IF_ERROR(s_.v.Reserve(total * kvd));
  RETURN_IF_ERROR(s_.gate.Reserve(total * inter));
  RETURN_IF_ERROR(s_.up.Reserve(total * inter));
  RETURN_IF_ERROR(s_.act.Reserve(total * inter));
  RETURN_IF_ERROR(s_.kv.Reserve(kv_total));
  RETURN_IF_ERROR(s_.tokens.Reserve(total));
  RETURN_IF_ERROR(s_.positions.Reserve(total));
  RETURN_IF_ERROR(s_.items.Reserve(layers * num));

  // Host -> device: tokens, positions, each item's past KV rows, the attention items.
  auto h2d = [&](void* dst, const void* src, size_t bytes) {
    return cuda::CudaStatus(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_),
                            "host to device copy");
  };
  RETURN_IF_ERROR(h2d(s_.tokens.get(), tokens.data(), total * sizeof(int32_t)));
  RETURN_IF_ERROR(h2d(s_.positions.get(), positions.data(), total * sizeof(int64_t)));
  std::vector<cuda::AttentionItem> items(layers * num);
  for (int64_t b = 0; b < num; ++b) {
    const int64_t m = batch[b].tokens.size(), cap = past[b] + m;
    for (int64_t l = 0; l < layers; ++l) {
      float* k = s_.kv.get() + kv_off[b] + (2 * l) * cap * kvd;
      float* v = s_.kv.get() + kv_off[b] + (2 * l + 1) * cap * kvd;
      if (past[b] > 0) {
        RETURN_IF_ERROR(h2d(k, batch[b].cache->k(l), past[b] * kvd * sizeof(float)));
        RETURN_IF_ERROR(h2d(v, batch[b].cache->v(l), past[b] * kvd * sizeof(float)));
      }
      const int64_t window = c.LayerWindow(l).value_or(0);
      items[l * num + b] = cuda::AttentionItem{k, v, row0[b], m, past[b], window};
    }
  }
  RETURN_IF_ERROR(h2d(s_.items.get(), items.data(), items.size() * sizeof(cuda::AttentionItem)));

  cuda::LaunchEmbedding(embed_.get(), s_.tokens.get(), total, hidden, s_.x.get(), stream_);
  for (int64_t l = 0; l < layers; ++l) {
    RETURN_IF_ERROR(Layer(l, total, batch, row0, past, kv_off, max_m));
  }

  // Logits of the last row of each item that wants them, in one GEMM.
  std::vector<int64_t> want;
  for (int64_t b = 0; b < num; ++b) {
    if (batch[b].want_logits) want.push_back(b);
  }
  const int64_t nw = want.size();
  std::vector<float> host_logits(nw * vocab);
  if (nw > 0) {
    RETURN_IF_ERROR(s_.last.Reserve(nw * hidden));
    RETURN_IF_ERROR(s_.last16.Reserve(nw * hidden));
    RETURN_IF_ERROR(s_.logits.Reserve(nw * vocab));
    for (int64_t i = 0; i < nw; ++i) {
      const int64_t b = want[i], last_row = row0[b] + batch[b].tokens.size() - 1;
      RETURN_IF_ERROR(cuda::CudaStatus(
          cudaMemcpyAsync(s_.last.get() + i * hidden, s_.x.get() + last_row * hidden,
                          hidden * sizeof(float), cudaMemcpyDeviceToDevice, stream_),
          "gather last rows"));
    }
    cuda::LaunchRmsNorm(s_.last.get(), nw, hidden, final_norm_.get(),
                        static_cast<float>(c.rms_norm_eps), s_.last16.get(), stream_);
    RETURN_IF_ERROR(Gemm(s_.last16.get(), nw, hidden, lm_head_ptr_, vocab, s_.logits.get()));
    RETURN_IF_ERROR(cuda::CudaStatus(
        cudaMemcpyAsync(host_logits.data(), s_.logits.get(), nw * vocab * sizeof(float),
                        cudaMemcpyDeviceToHost, stream_),
        "logits download"));
  }

  // Device -> host: the new rows only, staged so that a failure leaves every cache as it was.
  std::vector<std::vector<float>> new_rows(num);
  for (int64_t b = 0; b < num; ++b) {
    const int64_t m = batch[b].tokens.size(), cap = past[b] + m;
    new_rows[b].resize(2 * layers * m * kvd);
    for (int64_t l = 0; l < layers; ++l) {
      for (int64_t kv = 0; kv < 2; ++kv) {
        const float* src = s_.kv.get() + kv_off[b] + (2 * l + kv) * cap * kvd + past[b] * kvd;
        RETURN_IF_ERROR(cuda::CudaStatus(
            cudaMemcpyAsync(new_rows[b].data() + (2 * l + kv) * m * kvd, src,
                            m * kvd * sizeof(float), cudaMemcpyDeviceToHost, stream_),
            "KV download"));
      }
    }
  }
  RETURN_IF_ERROR(cuda::CudaStatus(cudaStreamSynchronize(stream_), "forward"));
  RETURN_IF_ERROR(cuda::CudaStatus(cudaGetLastError(), "forward kernels"));

  logits->assign(num, {});
  for (int64_t i = 0; i < nw; ++i) {
    (*logits)[want[i]].assign(host_logits.begin() + i * vocab,
                              host_logits.begin() + (i + 1) * vocab);
  }
  for (int64_t b = 0; b < num; ++b) {
    KvCache& cache = *batch[b].cache;
    const int64_t first = cache.Append(batch[b].tokens), m = batch[b].tokens.size();
    for (int64_t l = 0; l < layers; ++l) {
      std::memcpy(cache.k(l) + first * kvd, new_rows[b].data() + (2 * l) * m * kvd,
                  m * kvd * sizeof(float));
      std::memcpy(cache.v(l) + first * kvd, new_rows[b].data() + (2 * l + 1) * m * kvd,
                  m * kvd * sizeof(float));
    }
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::ShiftOnDevice(KvCache& cache, int64_t first_row, int64_t count,
                                        int64_t delta) {
  RETURN_IF_ERROR(cuda::CudaStatus(cudaSetDevice(device_), "cudaSetDevice"));
  const KvShape& shape = cache.shape();
  const int64_t layers = shape.num_layers, row = shape.row(), per_layer = count * row;
  RETURN_IF_ERROR(s_.shift.Reserve(layers * per_layer));
  for (int64_t l = 0; l < layers; ++l) {
    RETURN_IF_ERROR(cuda::CudaStatus(
        cudaMemcpyAsync(s_.shift.get() + l * per_layer, cache.k(l) + first_row * row,
                        per_layer * sizeof(float), cudaMemcpyHostToDevice, stream_),
        "shift upload"));
  }
  cuda::LaunchRopeShift(s_.shift.get(), layers, per_layer, 0, count, shape.num_kv_heads,
                        shape.head_dim, inv_freq_.get(), delta, stream_);
  std::vector<float> rotated(layers * per_layer);
  RETURN_IF_ERROR(cuda::CudaStatus(
      cudaMemcpyAsync(rotated.data(), s_.shift.get(), rotated.size() * sizeof(float),
                      cudaMemcpyDeviceToHost, stream_),
      "shift download"));
  RETURN_IF_ERROR(cuda::CudaStatus(cudaStreamSynchronize(stream_), "shift"));
  RETURN_IF_ERROR(cuda::CudaStatus(cudaGetLastError(), "shift kernel"));
  for (int64_t l = 0; l < layers; ++l) {
    std::memcpy(cache.k(l) + first_row * row, rotated.data() + l * per_layer,
                per_layer * sizeof(float));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(ModelWeights weights,
                                                           CudaBackendOptions options) {
  const int devices = cuda::CudaDeviceCount();
  if (options.device < 0 || options.device >= devices) {
    return absl::FailedPreconditionError(absl::StrCat(
        "CUDA device ", options.device, " requested but ", devices, " CUDA device(s) found"));
  }
  auto backend = std::make_unique<CudaBackend>(weights.config, options.device);
  RETURN_IF_ERROR(backend->Init(weights));
  return backend;
}

absl::StatusOr<std::unique_ptr<Engine>> LoadCudaEngine(const std::string& model_dir,
                                                       CudaBackendOptions options) {
  return Engine::Load(model_dir, {}, [options](ModelWeights weights, const EngineOptions&) {
    return CreateCudaBackend(std::move(weights), options);
  });
}

}  // namespace blockserve::engine
