// The CUDA backend's kernels, one launcher per operation. Each has a CPU twin that
// kernels_test.cc compares it with (see the comment on each); the math and layouts are
// those of the CPU backend (engine/cpu_backend.cc, engine/cpu_attention.h,
// engine/rope.h).
//
// Conventions: row-major tensors, `rows` x `cols`; activations fp32, GEMM operands bf16
// (weights are stored bf16, normalized activations are written bf16 for the next GEMM);
// every launcher is asynchronous on `stream` and only enqueues work.
//
// STATUS: compiled by nvcc in CI; never run on a GPU by the author (no GPU was available).
#ifndef BLOCKSERVE_ENGINE_CUDA_KERNELS_H_
#define BLOCKSERVE_ENGINE_CUDA_KERNELS_H_

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

namespace blockserve::engine::cuda {

using bf16 = __nv_bfloat16;

// out[t, :] = table[tokens[t], :]  (bf16 table -> fp32 rows); CPU twin: the copy loop in
// CpuBackend::Forward. tokens must already be validated to lie in the vocabulary.
void LaunchEmbedding(const bf16* table, const int32_t* tokens, int64_t n, int64_t hidden,
                     float* out, cudaStream_t stream);

// y[i, :] = x[i, :] / sqrt(mean(x[i, :]^2) + eps) * w, fp32 in, bf16 out (the next GEMM's
// operand); sum of squares accumulated in fp32 per thread, then a block reduction.
void LaunchRmsNorm(const float* x, int64_t rows, int64_t cols, const float* w, float eps,
                   bf16* y, cudaStream_t stream);

// x[i, :] += bias for each of `rows` rows (the Qwen2 q/k/v biases).
void LaunchAddBias(float* x, int64_t rows, int64_t cols, const float* bias, cudaStream_t stream);

// x[i] += y[i] for i < n (residual connections).
void LaunchAddInPlace(float* x, const float* y, int64_t n, cudaStream_t stream);

// out[i] = silu(gate[i]) * up[i] as bf16 (the down projection's operand).
void LaunchSwiGlu(const float* gate, const float* up, int64_t n, bf16* out, cudaStream_t stream);

// out[i] = bf16(x[i]).
void LaunchToBf16(const float* x, int64_t n, bf16* out, cudaStream_t stream);

// RoPE (rotate_half) applied in place to `rows` vectors of `num_heads` heads each,
// laid out [rows][num_heads][head_dim]; row r is rotated by positions[r]. inv_freq has
// head_dim/2 entries (engine::RopeInverseFrequencies, uploaded as double). Angles and
// their cos/sin are computed in double, then rounded to float, exactly as Rope does.
void LaunchRopeApply(float* x, int64_t rows, int64_t num_heads, int64_t head_dim,
                     const int64_t* positions, const double* inv_freq, cudaStream_t stream);

// Re-encodes cached keys by `delta` positions for ALL layers in one launch: layer l's
// keys start at k + l * layer_stride (floats); rows [first_row, first_row + count) of
// each, [row][num_kv_heads][head_dim], are rotated by R(delta). CPU twin: Rope::Shift.
void LaunchRopeShift(float* k, int64_t num_layers, int64_t layer_stride, int64_t first_row,
                     int64_t count, int64_t num_kv_heads, int64_t head_dim,
                     const double* inv_freq, int64_t delta, cudaStream_t stream);

// One sequence's share of an attention launch. Its new query rows are
// q[q_row0 .. q_row0 + m) of the batch's q; its keys/values (already including the m
// new rows, which are the last m) are k/v rows [0, past + m), row stride kv_heads*head_dim.
// window > 0 limits each query row to the last `window` of those keys (a sliding-window
// layer, ModelConfig::LayerWindow); 0 means full causal attention.
struct AttentionItem {
  const float* k = nullptr;
  const float* v = nullptr;
  int64_t q_row0 = 0;
  int64_t m = 0;
  int64_t past = 0;
  int64_t window = 0;
};

// Causal attention with GQA for a batch of sequences (prefill and decode alike):
// out[q_row0 + i, h] = softmax_j(q . k_j / sqrt(d)) v_j over
//   past + i - window < j <= past + i   (no lower limit when the item's window is 0),
// the CPU kernel's rule (engine/cpu_attention.h), where
// k_j, v_j use kv head h / (num_heads / num_kv_heads). Flash-style: one block per
// (row tile, head, item); keys and values are staged through shared memory in tiles of
// 32 and the softmax is computed online, so memory does not grow with context length.
// `items` is a device array of `num_items`; `max_m` is the largest m among them.
// head_dim must be even and <= 256. CPU twin: engine::CausalAttention.
void LaunchAttention(const float* q, const AttentionItem* items, int64_t num_items,
                     int64_t max_m, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                     float* out, cudaStream_t stream);

// out[r] = argmax_j x[r, j] over `rows` rows of `cols` logits; ties go to the lowest
// index (as engine::Sampler's greedy mode). CPU twin: Sampler with temperature 0.
void LaunchArgmax(const float* x, int64_t rows, int64_t cols, int32_t* out, cudaStream_t stream);

// Largest head_dim LaunchAttention supports.
inline constexpr int64_t kMaxAttentionHeadDim = 256;

}  // namespace blockserve::engine::cuda

#endif  // BLOCKSERVE_ENGINE_CUDA_KERNELS_H_
