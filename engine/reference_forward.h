// A deliberately naive forward pass, for tests only: plain loops, an explicit attention
// mask and explicit positions, no BLAS, no caches. The exactness tests check the
// engine's Block-Attention operations against it.
#ifndef BLOCKSERVE_ENGINE_REFERENCE_FORWARD_H_
#define BLOCKSERVE_ENGINE_REFERENCE_FORWARD_H_

#include <functional>
#include <vector>

#include "engine/weights.h"

namespace blockserve::engine {

struct ReferenceOutput {
  std::vector<std::vector<float>> logits;  // [token][vocab]
  // [layer][token][kv_head * head_dim]; K after RoPE at the given positions.
  std::vector<std::vector<std::vector<float>>> k, v;
};

// Token i sits at RoPE position positions[i] and attends to token j iff mask(i, j) and,
// in a layer with a sliding window (every layer, or those ModelConfig::windowed_layers
// marks; read from the fields, not through LayerWindow), i - j < window:
// the window is counted in token indices of `tokens`, whatever the positions. Every
// bias the weights hold (q/k/v, o_proj, MLP) is added.
ReferenceOutput ReferenceForward(const ModelWeights& w, const std::vector<int32_t>& tokens,
                                 const std::vector<int64_t>& positions,
                                 const std::function<bool(int64_t, int64_t)>& mask);

// The block mask of a prompt made of blocks with the given lengths: tokens of every
// block but the last attend causally within their block; tokens of the last block
// attend to everything before them.
std::function<bool(int64_t, int64_t)> BlockMask(const std::vector<int64_t>& block_lengths);

// `n` token ids in [0, vocab), spread over the vocabulary and different for each
// `seed`: the exactness tests' prompts.
std::vector<int32_t> TestTokens(int64_t n, int32_t seed, int32_t vocab);

// The weights of the model folder `dir`, loaded as Engine::Load loads them.
absl::StatusOr<ModelWeights> LoadModelWeights(const std::string& dir);

// One TestTokens block per length, seeded 1, 2, ...: a prompt's passages and query.
std::vector<std::vector<int32_t>> TestBlocks(const std::vector<int64_t>& lengths, int32_t vocab);

// The prompt made of `blocks`' tokens, one block after the other.
std::vector<int32_t> JoinBlocks(const std::vector<std::vector<int32_t>>& blocks);

// The positions start, start + 1, ..., start + n - 1.
std::vector<int64_t> Iota(int64_t n, int64_t start = 0);

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_REFERENCE_FORWARD_H_
