// CUDA kernels of the CUDA backend; see kernels.h for each one's contract and CPU twin.
// STATUS: compiled by nvcc in CI; never run on a GPU by the author. The sliding-window
// mask in AttentionKernel was likewise compiled only, never run (no GPU was available).
#include "engine/cuda/kernels.h"

#include <cfloat>
#include <cmath>

namespace blockserve::engine::cuda {
namespace {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n elements (capped: the loop covers the rest).
unsigned GridFor(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 65535 * 8 ? (blocks > 0 ? blocks : 1) : 65535 * 8);
}

__device__ float WarpSum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ float WarpMax(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
__device__ float BlockSum(float v) {
  __shared__ float partial[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = WarpSum(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  const int warps = blockDim.x / 32;
  v = lane < warps ? partial[lane] : 0.0f;
  v = WarpSum(v);
  __syncthreads();  // partial may be reused by a later call
  return v;
}

__global__ void EmbeddingKernel(const bf16* table, const int32_t* tokens, int64_t n,
                                int64_t hidden, float* out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n * hidden;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t t = i / hidden, c = i % hidden;
    out[i] = __bfloat162float(table[int64_t{tokens[t]} * hidden + c]);
  }
}

__global__ void RmsNormKernel(const float* x, int64_t cols, const float* w, float eps, bf16* y) {
  const float* xi = x + blockIdx.x * cols;
  float ss = 0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) ss += xi[c] * xi[c];
  ss = BlockSum(ss);
  const float inv = rsqrtf(ss / static_cast<float>(cols) + eps);
  bf16* yi = y + blockIdx.x * cols;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    yi[c] = __float2bfloat16(xi[c] * inv * w[c]);
  }
}

__global__ void AddBiasKernel(float* x, int64_t rows, int64_t cols, const float* bias) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < rows * cols;
       i += int64_t{gridDim.x} * blockDim.x) {
    x[i] += bias[i % cols];
  }
}

__global__ void AddInPlaceKernel(float* x, const float* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    x[i] += y[i];
  }
}

__global__ void SwiGluKernel(const float* gate, const float* up, int64_t n, bf16* out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float g = gate[i];
    out[i] = __float2bfloat16(g / (1.0f + expf(-g)) * up[i]);
  }
}

__global__ void ToBf16Kernel(const float* x, int64_t n, bf16* out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = __float2bfloat16(x[i]);
  }
}

// Rotates the pair (x[i], x[i + half]) by angle `position * inv_freq`, computed in
// double as the CPU's Rope::Angles does, then applied in float.
__device__ void RotatePair(float* head, int64_t i, int64_t half, double position,
                           double inv_freq) {
  double s, c;
  sincos(position * inv_freq, &s, &c);
  const float cf = static_cast<float>(c), sf = static_cast<float>(s);
  const float x1 = head[i], x2 = head[i + half];
  head[i] = x1 * cf - x2 * sf;
  head[i + half] = x2 * cf + x1 * sf;
}

// One thread per (row, head, i < half).
__global__ void RopeApplyKernel(float* x, int64_t rows, int64_t num_heads, int64_t head_dim,
                                const int64_t* positions, const double* inv_freq) {
  const int64_t half = head_dim / 2, n = rows * num_heads * half;
  for (int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; t < n;
       t += int64_t{gridDim.x} * blockDim.x) {
    const int64_t i = t % half, vec = t / half, row = vec / num_heads;
    RotatePair(x + vec * head_dim, i, half, static_cast<double>(positions[row]), inv_freq[i]);
  }
}

// One thread per (layer, row, head, i < half).
__global__ void RopeShiftKernel(float* k, int64_t num_layers, int64_t layer_stride,
                                int64_t first_row, int64_t count, int64_t num_kv_heads,
                                int64_t head_dim, const double* inv_freq, int64_t delta) {
  const int64_t half = head_dim / 2, per_layer = count * num_kv_heads * half;
  for (int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; t < num_layers * per_layer;
       t += int64_t{gridDim.x} * blockDim.x) {
    const int64_t layer = t / per_layer, rest = t % per_layer;
    const int64_t i = rest % half, vec = rest / half;  // vec: row * num_kv_heads + head
    float* head = k + layer * layer_stride + first_row * num_kv_heads * head_dim + vec * head_dim;
    RotatePair(head, i, half, static_cast<double>(delta), inv_freq[i]);
  }
}

constexpr int kAttnWarps = 4;   // query rows per block, one warp each
constexpr int kAttnTile = 32;   // keys per shared-memory tile, one per lane
constexpr int kAttnMaxPerLane = kMaxAttentionHeadDim / 32;

size_t AttentionSharedBytes(int64_t head_dim) {
  // K tile padded to head_dim + 1 floats per row (no bank conflicts when each lane
  // reads its own key), V tile unpadded (lanes read consecutive dims), q rows.
  return sizeof(float) *
         (kAttnTile * (head_dim + 1) + kAttnTile * head_dim + kAttnWarps * head_dim);
}

__global__ void AttentionKernel(const float* q, const AttentionItem* items, int64_t num_heads,
                                int64_t num_kv_heads, int64_t head_dim, float* out) {
  extern __shared__ float smem[];
  const AttentionItem item = items[blockIdx.z];
  const int64_t h = blockIdx.y, d = head_dim, kd = d + 1;
  const int64_t g = h / (num_heads / num_kv_heads), kv_ld = num_kv_heads * d,
                q_ld = num_heads * d;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t row0 = int64_t{blockIdx.x} * kAttnWarps;
  if (row0 >= item.m) return;  // the whole block is past this item's rows
  float* k_tile = smem;
  float* v_tile = k_tile + kAttnTile * kd;
  float* q_rows = v_tile + kAttnTile * d;

  const int64_t i = row0 + warp;  // this warp's query row among the item's m
  const bool active = i < item.m;
  const float scale = rsqrtf(static_cast<float>(d));
  if (active) {
    const float* qi = q + (item.q_row0 + i) * q_ld + h * d;
    for (int64_t e = lane; e < d; e += 32) q_rows[warp * d + e] = qi[e] * scale;
  }
  float acc[kAttnMaxPerLane];
  for (int r = 0; r < kAttnMaxPerLane; ++r) acc[r] = 0.0f;
  float run_max = -FLT_MAX, run_sum = 0.0f;
  bool seen = false;

  const int64_t last_row = min(item.m, row0 + kAttnWarps) - 1;
  const int64_t keys = item.past + last_row + 1;  // the block's causal horizon
  const int64_t my_keys = active ? item.past + i + 1 : 0;
  // Sliding window: row i sees keys [past + i + 1 - window, past + i]. The block's first
  // row has the lowest bound, so tiles start there; each row masks the keys below its own.
  auto window_start = [&](int64_t row) {
    return item.window > 0 ? max(int64_t{0}, item.past + row + 1 - item.window) : int64_t{0};
  };
  const int64_t my_first = window_start(i);
  for (int64_t j0 = window_start(row0); j0 < keys; j0 += kAttnTile) {
    const int64_t jn = min(int64_t{kAttnTile}, keys - j0);
    __syncthreads();  // the previous tile is no longer read
    for (int64_t t = threadIdx.x; t < jn * d; t += blockDim.x) {
      const int64_t jj = t / d, e = t % d;
      const int64_t src = (j0 + jj) * kv_ld + g * d + e;
      k_tile[jj * kd + e] = item.k[src];
      v_tile[jj * d + e] = item.v[src];
    }
    __syncthreads();
    if (!active) continue;
    // The row sees this tile's keys [first, valid) (tile-relative; warp-uniform bounds).
    const int64_t valid = min(jn, my_keys - j0);
    const int64_t first = max(int64_t{0}, my_first - j0);
    if (valid <= first) continue;
    const bool visible = lane >= first && lane < valid;
    float s = -FLT_MAX;
    if (visible) {
      s = 0.0f;
      const float* kr = k_tile + lane * kd;
      const float* qr = q_rows + warp * d;
      for (int64_t e = 0; e < d; ++e) s += qr[e] * kr[e];
    }
    const float new_max = fmaxf(run_max, WarpMax(s));
    const float correction = seen ? expf(run_max - new_max) : 0.0f;
    const float p = visible ? expf(s - new_max) : 0.0f;
    run_sum = run_sum * correction + WarpSum(p);
    for (int r = 0; r < kAttnMaxPerLane; ++r) acc[r] *= correction;
    for (int64_t jj = first; jj < valid; ++jj) {
      const float pj = __shfl_sync(0xffffffffu, p, static_cast<int>(jj));
      const float* vr = v_tile + jj * d;
      for (int r = 0; r < kAttnMaxPerLane; ++r) {
        const int64_t e = lane + 32 * r;
        if (e < d) acc[r] += pj * vr[e];
      }
    }
    run_max = new_max;
    seen = true;
  }
  if (!active) return;
  const float inv = 1.0f / run_sum;
  float* o = out + (item.q_row0 + i) * q_ld + h * d;
  for (int r = 0; r < kAttnMaxPerLane; ++r) {
    const int64_t e = lane + 32 * r;
    if (e < d) o[e] = acc[r] * inv;
  }
}

__global__ void ArgmaxKernel(const float* x, int64_t cols, int32_t* out) {
  __shared__ float best_v[kThreads];
  __shared__ int64_t best_i[kThreads];
  const float* row = x + blockIdx.x * cols;
  float bv = -INFINITY;
  int64_t bi = cols;  // "none yet"; any real index is smaller
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    if (row[c] > bv || bi == cols) {  // strided scan: the first max seen is the lowest index
      bv = row[c];
      bi = c;
    }
  }
  best_v[threadIdx.x] = bv;
  best_i[threadIdx.x] = bi;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      const float ov = best_v[threadIdx.x + s];
      const int64_t oi = best_i[threadIdx.x + s];
      const float mv = best_v[threadIdx.x];
      const int64_t mi = best_i[threadIdx.x];
      if (oi != cols && (mi == cols || ov > mv || (ov == mv && oi < mi))) {
        best_v[threadIdx.x] = ov;
        best_i[threadIdx.x] = oi;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = static_cast<int32_t>(best_i[0]);
}

}  // namespace

void LaunchEmbedding(const bf16* table, const int32_t* tokens, int64_t n, int64_t hidden,
                     float* out, cudaStream_t stream) {
  EmbeddingKernel<<<GridFor(n * hidden), kThreads, 0, stream>>>(table, tokens, n, hidden, out);
}

void LaunchRmsNorm(const float* x, int64_t rows, int64_t cols, const float* w, float eps,
                   bf16* y, cudaStream_t stream) {
  if (rows == 0) return;
  RmsNormKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, cols, w, eps, y);
}

void LaunchAddBias(float* x, int64_t rows, int64_t cols, const float* bias, cudaStream_t stream) {
  AddBiasKernel<<<GridFor(rows * cols), kThreads, 0, stream>>>(x, rows, cols, bias);
}

void LaunchAddInPlace(float* x, const float* y, int64_t n, cudaStream_t stream) {
  AddInPlaceKernel<<<GridFor(n), kThreads, 0, stream>>>(x, y, n);
}

void LaunchSwiGlu(const float* gate, const float* up, int64_t n, bf16* out, cudaStream_t stream) {
  SwiGluKernel<<<GridFor(n), kThreads, 0, stream>>>(gate, up, n, out);
}

void LaunchToBf16(const float* x, int64_t n, bf16* out, cudaStream_t stream) {
  ToBf16Kernel<<<GridFor(n), kThreads, 0, stream>>>(x, n, out);
}

void LaunchRopeApply(float* x, int64_t rows, int64_t num_heads, int64_t head_dim,
                     const int64_t* positions, const double* inv_freq, cudaStream_t stream) {
  RopeApplyKernel<<<GridFor(rows * num_heads * head_dim / 2), kThreads, 0, stream>>>(
      x, rows, num_heads, head_dim, positions, inv_freq);
}

void LaunchRopeShift(float* k, int64_t num_layers, int64_t layer_stride, int64_t first_row,
                     int64_t count, int64_t num_kv_heads, int64_t head_dim,
                     const double* inv_freq, int64_t delta, cudaStream_t stream) {
  if (delta == 0 || count == 0) return;
  RopeShiftKernel<<<GridFor(num_layers * count * num_kv_heads * head_dim / 2), kThreads, 0,
                    stream>>>(k, num_layers, layer_stride, first_row, count, num_kv_heads,
                              head_dim, inv_freq, delta);
}

void LaunchAttention(const float* q, const AttentionItem* items, int64_t num_items,
                     int64_t max_m, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                     float* out, cudaStream_t stream) {
  if (num_items == 0 || max_m == 0) return;
  const size_t shared = AttentionSharedBytes(head_dim);
  // Above 48 KiB of dynamic shared memory a kernel must opt in (head_dim > 128 here).
  cudaFuncSetAttribute(AttentionKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                       static_cast<int>(AttentionSharedBytes(kMaxAttentionHeadDim)));
  const dim3 grid(static_cast<unsigned>((max_m + kAttnWarps - 1) / kAttnWarps),
                  static_cast<unsigned>(num_heads), static_cast<unsigned>(num_items));
  AttentionKernel<<<grid, kAttnWarps * 32, shared, stream>>>(q, items, num_heads, num_kv_heads,
                                                             head_dim, out);
}

void LaunchArgmax(const float* x, int64_t rows, int64_t cols, int32_t* out, cudaStream_t stream) {
  if (rows == 0) return;
  ArgmaxKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, cols, out);
}

}  // namespace blockserve::engine::cuda
