// Analytic FLOP counts for the transformer's forward pass (a multiply-add = 2 FLOPs).
//
// Per new token and layer, the projections cost
//   2 * hidden * (q_dim + 2 * kv_dim) + 2 * q_dim * hidden + 3 * 2 * hidden * intermediate,
// and attending to c keys costs 2 * 2 * c * q_dim (scores Q K^T, then P V). A run of m
// new tokens after `past` cached rows attends to past + i + 1 keys for token i. The LM
// head (2 * hidden * vocab) is counted once when logits are computed. Norms, RoPE and
// softmax are ignored: they are linear in tokens and small beside the GEMMs.
#ifndef BLOCKSERVE_ENGINE_FLOPS_H_
#define BLOCKSERVE_ENGINE_FLOPS_H_

#include <cstdint>

#include "engine/model_config.h"

namespace blockserve::engine {

double ForwardFlops(const ModelConfig& config, int64_t new_tokens, int64_t past, bool logits);

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_FLOPS_H_
