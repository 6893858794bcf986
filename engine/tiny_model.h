// Writes small random-weight models in exactly the Hugging Face folder layout the engine
// loads (config.json, safetensors weights, tokenizer.json), reproducibly from a seed.
// Tests, benchmarks and the demo use these: no real weights can be downloaded here.
#ifndef BLOCKSERVE_ENGINE_TINY_MODEL_H_
#define BLOCKSERVE_ENGINE_TINY_MODEL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/dtype.h"
#include "engine/model_config.h"

namespace blockserve::engine {

struct TinyModelOptions {
  uint64_t seed = 1;
  std::string model_type = "llama";  // "llama", "mistral" or "qwen2" (qwen2 has q/k/v bias)
  int64_t hidden_size = 64;
  int64_t intermediate_size = 128;
  int64_t num_layers = 2;
  int64_t num_heads = 4;
  int64_t num_kv_heads = 2;          // < num_heads: grouped-query attention
  int64_t max_position_embeddings = 4096;
  int64_t num_merges = 300;          // BPE merges learned for tokenizer.json
  double rope_theta = 10000;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  // llama only: q/k/v AND o_proj biases (qwen2 always has q/k/v ones, mistral none).
  bool attention_bias = false;
  bool mlp_bias = false;             // llama only: gate/up/down biases
  // mistral or qwen2: attention limited to the last `sliding_window` keys, in the layers
  // windowed_layers marks (ModelConfig's field: empty for every layer, as mistral must be).
  std::optional<int64_t> sliding_window;
  std::vector<bool> windowed_layers;
  DType dtype = DType::kF32;
  size_t max_shard_bytes = 0;        // > 0: sharded safetensors with an index file
};

// Creates `dir` if needed and writes the model into it.
absl::Status WriteTinyModel(const std::string& dir, const TinyModelOptions& options);

// The config WriteTinyModel writes, given the tokenizer's vocabulary size.
ModelConfig TinyModelConfig(const TinyModelOptions& options, int64_t vocab_size);

// The text the tiny tokenizer's merges are learned from (English prose).
std::string_view TinyTokenizerCorpus();

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_TINY_MODEL_H_
