#include "engine/weights.h"

#include "absl/strings/str_cat.h"

namespace blockserve::engine {
namespace {

std::string LayerName(int64_t layer, std::string_view suffix) {
  return absl::StrCat("model.layers.", layer, ".", std::string(suffix));
}

// Points each expected tensor name at the member that receives it.
std::vector<std::pair<TensorSpec, std::vector<float>*>> Destinations(const ModelConfig& c,
                                                                     ModelWeights& w) {
  const int64_t h = c.hidden_size, q = c.num_attention_heads * c.head_dim,
                kv = c.num_key_value_heads * c.head_dim, inter = c.intermediate_size;
  std::vector<std::pair<TensorSpec, std::vector<float>*>> out;
  auto add = [&](std::string name, std::vector<int64_t> shape, std::vector<float>* dst) {
    out.push_back({TensorSpec{std::move(name), std::move(shape)}, dst});
  };
  add("model.embed_tokens.weight", {c.vocab_size, h}, &w.embed);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    LayerWeights& lw = w.layers[l];
    add(LayerName(l, "input_layernorm.weight"), {h}, &lw.input_norm);
    add(LayerName(l, "self_attn.q_proj.weight"), {q, h}, &lw.wq);
    add(LayerName(l, "self_attn.k_proj.weight"), {kv, h}, &lw.wk);
    add(LayerName(l, "self_attn.v_proj.weight"), {kv, h}, &lw.wv);
    if (c.attention_bias) {
      add(LayerName(l, "self_attn.q_proj.bias"), {q}, &lw.bq);
      add(LayerName(l, "self_attn.k_proj.bias"), {kv}, &lw.bk);
      add(LayerName(l, "self_attn.v_proj.bias"), {kv}, &lw.bv);
    }
    add(LayerName(l, "self_attn.o_proj.weight"), {h, q}, &lw.wo);
    if (c.o_proj_bias()) add(LayerName(l, "self_attn.o_proj.bias"), {h}, &lw.bo);
    add(LayerName(l, "post_attention_layernorm.weight"), {h}, &lw.post_attention_norm);
    add(LayerName(l, "mlp.gate_proj.weight"), {inter, h}, &lw.w_gate);
    add(LayerName(l, "mlp.up_proj.weight"), {inter, h}, &lw.w_up);
    add(LayerName(l, "mlp.down_proj.weight"), {h, inter}, &lw.w_down);
    if (c.mlp_bias) {
      add(LayerName(l, "mlp.gate_proj.bias"), {inter}, &lw.b_gate);
      add(LayerName(l, "mlp.up_proj.bias"), {inter}, &lw.b_up);
      add(LayerName(l, "mlp.down_proj.bias"), {h}, &lw.b_down);
    }
  }
  add("model.norm.weight", {h}, &w.final_norm);
  if (!c.tie_word_embeddings) add("lm_head.weight", {c.vocab_size, h}, &w.lm_head);
  return out;
}

}  // namespace

std::vector<TensorSpec> ExpectedTensors(const ModelConfig& config) {
  ModelWeights scratch;
  scratch.layers.resize(config.num_hidden_layers);
  std::vector<TensorSpec> specs;
  for (auto& [spec, dst] : Destinations(config, scratch)) specs.push_back(spec);
  return specs;
}

absl::StatusOr<ModelWeights> LoadWeights(const ModelFiles& files) {
  ModelWeights w;
  w.config = files.config();
  w.layers.resize(w.config.num_hidden_layers);
  for (auto& [spec, dst] : Destinations(w.config, w)) {
    absl::StatusOr<std::vector<float>> t = files.LoadF32(spec.name, spec.shape);
    if (!t.ok()) {
      const bool is_bias = spec.name.size() > 5 && spec.name.ends_with(".bias");
      if (!is_bias || t.status().code() != absl::StatusCode::kNotFound) return t.status();
      const char* why = spec.name.find(".mlp.") != std::string::npos ? "mlp_bias is true"
                        : w.config.model_type == "qwen2" ? "qwen2 has q/k/v biases"
                                                         : "attention_bias is true";
      return absl::NotFoundError(absl::StrCat(t.status().message(), " (config.json: ", why,
                                              ", so every layer needs this bias)"));
    }
    *dst = *std::move(t);
  }
  if (w.config.tie_word_embeddings) w.lm_head = w.embed;
  return w;
}

}  // namespace blockserve::engine
