// The subset of a Hugging Face config.json that BlockServe's decoder-only
// transformer needs, for the Llama, Mistral and Qwen2 families.

#ifndef BLOCKSERVE_ENGINE_MODEL_CONFIG_H_
#define BLOCKSERVE_ENGINE_MODEL_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace blockserve::engine {

enum class RopeScalingType { kNone, kLinear, kLlama3 };

// RoPE frequency scaling. kLinear uses only `factor`; kLlama3 uses all
// fields (as in Llama 3.1's config.json). Ignored for kNone.
struct RopeScaling {
  RopeScalingType type = RopeScalingType::kNone;
  double factor = 1;
  double low_freq_factor = 1;
  double high_freq_factor = 4;
  int64_t original_max_position_embeddings = 8192;

  bool operator==(const RopeScaling&) const = default;
};

struct ModelConfig {
  // A bound far above any real model's depth, so that parsing a config never
  // allocates per-layer data (windowed_layers) for an absurd layer count.
  static constexpr int64_t kMaxHiddenLayers = 1 << 16;

  std::string model_type;  // "llama", "mistral" or "qwen2"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  // Biases, as Hugging Face's modeling code builds them per family:
  //   llama:   "attention_bias" gives q/k/v AND o_proj biases; "mlp_bias" gives
  //            gate/up/down biases (LlamaAttention, LlamaMLP).
  //   qwen2:   q/k/v biases always, never an o_proj or MLP bias (both keys
  //            are ignored, as Qwen2Attention / Qwen2MLP do).
  //   mistral: no biases at all (both keys are ignored, as MistralAttention /
  //            MistralMLP do).
  // attention_bias is the q/k/v bias; o_proj_bias() derives the o_proj one.
  bool attention_bias = false;
  bool mlp_bias = false;
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;  // "eos_token_id": int, list or null
  std::string torch_dtype;             // e.g. "bfloat16"; "" if absent
  // Set when attention is limited to a window smaller than
  // max_position_embeddings: Mistral's "sliding_window" (absent key: 4096,
  // MistralConfig's default; null: none), or Qwen2's when
  // "use_sliding_window" is true (absent key: 4096). A query at sequence
  // index i attends to keys j with i - window < j <= i: `window` keys,
  // itself included (Hugging Face's sliding_window_overlay). Unset when no
  // layer would use it.
  std::optional<int64_t> sliding_window;
  // Which layers attend through the window, one entry per hidden layer
  // (true: windowed), or empty when every layer does (always for Mistral).
  // Qwen2 takes it from "layer_types" when present (any pattern of
  // "full_attention" and "sliding_attention"), else layers from
  // "max_window_layers" (default 28) on slide. Always empty when
  // sliding_window is unset; when set and not empty it holds both a full and
  // a windowed layer, so each config has one representation.
  std::vector<bool> windowed_layers;

  // Whether o_proj has a bias: Llama's attention_bias covers it, Qwen2's
  // q/k/v bias does not.
  bool o_proj_bias() const { return attention_bias && model_type == "llama"; }

  // The window of layer `layer` (see sliding_window and windowed_layers), or
  // nullopt for full causal attention.
  std::optional<int64_t> LayerWindow(int64_t layer) const {
    if (!sliding_window.has_value()) return std::nullopt;
    if (!windowed_layers.empty() && !windowed_layers[layer]) return std::nullopt;
    return sliding_window;
  }

  // Parses config.json text. Missing optional keys get Hugging Face
  // LlamaConfig defaults: num_key_value_heads = num_attention_heads,
  // head_dim = hidden_size / num_attention_heads, rms_norm_eps 1e-6,
  // rope_theta 10000, max_position_embeddings 2048, tie_word_embeddings
  // false. model_type, vocab_size, hidden_size, intermediate_size,
  // num_hidden_layers and num_attention_heads are required. The result is
  // Validate()d. Errors: InvalidArgument for bad JSON, missing or mistyped
  // keys, unsupported model_type, or invalid values; Unimplemented for a
  // rope_scaling type other than default/linear/llama3 (message names it).
  // A Qwen2 "layer_types" that is not a list of num_hidden_layers
  // "full_attention" / "sliding_attention" strings is InvalidArgument.
  static absl::StatusOr<ModelConfig> FromJson(std::string_view json_text);

  // Reads and parses the file at `path` (NotFound if absent); error
  // messages are prefixed with the path.
  static absl::StatusOr<ModelConfig> FromFile(const std::string& path);

  // A Hugging Face style config.json ("architectures", "model_type", ...)
  // that FromJson parses back to an equal ModelConfig.
  std::string ToJson() const;

  // Checks consistency: supported model_type, positive sizes,
  // num_attention_heads divisible by num_key_value_heads, even head_dim,
  // rms_norm_eps > 0, rope_theta > 0, sane rope scaling parameters,
  // num_hidden_layers at most kMaxHiddenLayers, non-negative token ids,
  // positive sliding window below max_position_embeddings, windowed_layers
  // empty or one entry per layer mixing full and windowed ones (empty for
  // mistral and without a window), qwen2 with attention_bias, biases only
  // where the family has them (mlp_bias: llama; attention_bias: not
  // mistral). InvalidArgument naming the offending field otherwise.
  absl::Status Validate() const;

  bool operator==(const ModelConfig&) const = default;
};

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_MODEL_CONFIG_H_
