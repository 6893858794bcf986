// Causal attention for the CPU backend, flash-style: keys and values are visited in
// tiles with an online softmax, so memory stays O(rows x tile) whatever the context
// length (never T x T). Work is spread over (KV head, row block) tasks, each taking all
// the query heads that share the KV head in one pass over its K/V; when those tasks are
// too few for the pool (a short query or a decode step over a long past), each block's
// keys are split too and the partial softmax states merged.
//
// For new query row i (0-based among m rows that follow `past` cached rows), head h:
//   out[i, h] = sum_j softmax_j(q[i, h] . k[j, g(h)] / sqrt(d)) v[j, g(h)],
//               past + i - window < j <= past + i
// where g(h) = h / (heads / kv_heads) is the key/value head shared by h (GQA), and
// window = 0 means no lower limit (full causal attention). With a window, a row sees
// `window` keys, itself included (Hugging Face's sliding-window convention), counted
// in rows of k/v; key tiles entirely outside every row's window are skipped.
#ifndef BLOCKSERVE_ENGINE_CPU_ATTENTION_H_
#define BLOCKSERVE_ENGINE_CPU_ATTENTION_H_

#include <cstdint>

#include "engine/thread_pool.h"

namespace blockserve::engine {

struct AttentionShape {
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
};

// q: [m][num_heads * head_dim]; k, v: [past + m][num_kv_heads * head_dim] (the last m
// rows are the new tokens' own); out: [m][num_heads * head_dim]; window >= 0.
void CausalAttention(const float* q, int64_t m, const float* k, const float* v, int64_t past,
                     const AttentionShape& shape, float* out, ThreadPool& pool,
                     int64_t window = 0);

// The same with K and V in bf16 (each element a float's top 16 bits, as F32ToBF16 in
// engine/dtype.h makes them): read as stored and widened to fp32 in registers, tile by
// tile; q, out and all arithmetic stay fp32.
void CausalAttention(const float* q, int64_t m, const uint16_t* k, const uint16_t* v, int64_t past,
                     const AttentionShape& shape, float* out, ThreadPool& pool,
                     int64_t window = 0);

// Element-wise 2^x for n floats x <= 0, as the attention kernels' softmax computes it:
// within 3e-7 relative for x in [-125, 0]; smaller x (and -inf) gives 0.
void Exp2InPlace(float* x, int64_t n);

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_CPU_ATTENTION_H_
