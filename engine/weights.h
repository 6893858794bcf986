// The model's parameters in fp32, loaded from a Hugging Face model folder.
//
// Tensor names and shapes follow Hugging Face's LlamaForCausalLM / Qwen2ForCausalLM /
// MistralForCausalLM (weights are [out_features, in_features], y = x W^T + b):
//   model.embed_tokens.weight                 [vocab, hidden]
//   model.layers.L.input_layernorm.weight     [hidden]
//   model.layers.L.self_attn.q_proj.weight    [heads * head_dim, hidden]   (+ .bias if attention_bias)
//   model.layers.L.self_attn.k_proj.weight    [kv_heads * head_dim, hidden] (+ .bias)
//   model.layers.L.self_attn.v_proj.weight    [kv_heads * head_dim, hidden] (+ .bias)
//   model.layers.L.self_attn.o_proj.weight    [hidden, heads * head_dim]   (+ .bias if o_proj_bias())
//   model.layers.L.post_attention_layernorm.weight [hidden]
//   model.layers.L.mlp.{gate,up}_proj.weight  [intermediate, hidden]       (+ .bias if mlp_bias)
//   model.layers.L.mlp.down_proj.weight       [hidden, intermediate]       (+ .bias if mlp_bias)
//   model.norm.weight                         [hidden]
//   lm_head.weight                            [vocab, hidden] (absent when tied to embed_tokens)
#ifndef BLOCKSERVE_ENGINE_WEIGHTS_H_
#define BLOCKSERVE_ENGINE_WEIGHTS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_config.h"
#include "engine/model_files.h"

namespace blockserve::engine {

struct LayerWeights {
  std::vector<float> input_norm, post_attention_norm;
  std::vector<float> wq, wk, wv, wo;
  std::vector<float> bq, bk, bv;  // empty unless config.attention_bias
  std::vector<float> bo;          // empty unless config.o_proj_bias()
  std::vector<float> w_gate, w_up, w_down;
  std::vector<float> b_gate, b_up, b_down;  // empty unless config.mlp_bias
};

struct ModelWeights {
  ModelConfig config;
  std::vector<float> embed;    // [vocab, hidden]
  std::vector<LayerWeights> layers;
  std::vector<float> final_norm;
  std::vector<float> lm_head;  // [vocab, hidden]; a copy of embed when tied
};

// Loads and shape-checks every tensor the config implies. Errors name the tensor, the
// file and the expected vs found shape; a bias the config implies but the folder lacks
// is NotFound naming the config key that implies it (never treated as zero). A tensor
// the config does not imply is ignored, as Hugging Face's loader does.
absl::StatusOr<ModelWeights> LoadWeights(const ModelFiles& files);

// The tensor names and shapes a config implies, in a stable order; used by the loader
// and by the tiny-model writer so both agree on one list.
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
};
std::vector<TensorSpec> ExpectedTensors(const ModelConfig& config);

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_WEIGHTS_H_
