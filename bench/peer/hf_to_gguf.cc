#include "bench/peer/hf_to_gguf.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "engine/json_nesting.h"
#include "engine/model_files.h"
#include "engine/tokenizer.h"
#include "engine/weights.h"
#include "nlohmann/json.hpp"

namespace blockserve::bench {
namespace {

using json = nlohmann::json;
namespace be = blockserve::engine;

// llama.cpp's token types (tokenizer.ggml.token_type).
constexpr int32_t kTokenNormal = 1, kTokenControl = 3, kTokenUserDefined = 4, kTokenUnused = 5;

absl::Status Unsupported(const std::string& dir, const std::string& what) {
  return absl::FailedPreconditionError(
      absl::StrCat("hf_to_gguf: ", dir, ": ", what, " is not supported by this converter"));
}

absl::Status CheckConfig(const std::string& dir, const be::ModelConfig& c) {
  if (c.model_type != "llama") return Unsupported(dir, absl::StrCat("model_type \"", c.model_type, "\""));
  if (c.attention_bias) return Unsupported(dir, "attention_bias (q/k/v/o biases)");
  if (c.mlp_bias) return Unsupported(dir, "mlp_bias");
  if (c.sliding_window.has_value()) return Unsupported(dir, "a sliding window");
  if (c.rope_scaling.type != be::RopeScalingType::kNone) return Unsupported(dir, "rope_scaling");
  if (c.head_dim % 2 != 0) return Unsupported(dir, "an odd head_dim");
  return absl::OkStatus();
}

struct Vocabulary {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  std::vector<std::string> merges;
};

// The byte-level BPE vocabulary in llama.cpp's "gpt2" form: token strings as
// tokenizer.json spells them (byte-level symbols), merges as "left right".
absl::StatusOr<Vocabulary> ReadVocabulary(const std::string& dir, int64_t vocab_size) {
  // The engine's tokenizer loads it first: it validates the file (nesting depth included)
  // and the folder must be one the engine itself accepts.
  absl::StatusOr<be::Tokenizer> tokenizer = be::Tokenizer::FromModelDir(dir);
  if (!tokenizer.ok()) return tokenizer.status();
  std::ifstream in(dir + "/tokenizer.json");
  std::stringstream text;
  text << in.rdbuf();
  if (absl::Status s = be::CheckJsonNesting(text.str()); !s.ok()) return s;
  const json root = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (!root.is_object()) return absl::InvalidArgumentError(absl::StrCat(dir, "/tokenizer.json is not a JSON object"));
  const json& model = root.value("model", json::object());
  if (model.value("type", std::string("BPE")) != "BPE") {
    return Unsupported(dir, absl::StrCat("tokenizer model type ", model.value("type", json()).dump()));
  }
  if (model.value("byte_fallback", false)) return Unsupported(dir, "a byte-fallback (SentencePiece-style) BPE tokenizer");
  if (root.contains("normalizer") && !root["normalizer"].is_null()) {
    return Unsupported(dir, "a tokenizer normalizer");
  }
  const json& pre = root.value("pre_tokenizer", json());
  // llama.cpp's "gpt-2" pre-tokenizer is exactly a ByteLevel step with the GPT-2 regex.
  if (!pre.is_object() || pre.value("type", std::string()) != "ByteLevel" ||
      !pre.value("use_regex", true) || pre.value("add_prefix_space", false)) {
    return Unsupported(dir, absl::StrCat("the pre-tokenizer ", pre.dump(),
                                         " (only ByteLevel with the GPT-2 regex, no prefix space)"));
  }
  const json& vocab = model.value("vocab", json::object());
  Vocabulary v;
  v.tokens.assign(vocab_size, "");
  v.types.assign(vocab_size, kTokenNormal);
  std::vector<bool> seen(vocab_size, false);
  auto put = [&](const std::string& token, int64_t id, int32_t type) -> absl::Status {
    if (id < 0 || id >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(dir, "/tokenizer.json: token ", json(token).dump(),
                                                     " has id ", id, ", outside config vocab_size ", vocab_size));
    }
    v.tokens[id] = token, v.types[id] = type, seen[id] = true;
    return absl::OkStatus();
  };
  for (const auto& [token, id] : vocab.items()) {
    if (absl::Status s = put(token, id.get<int64_t>(), kTokenNormal); !s.ok()) return s;
  }
  for (const json& added : root.value("added_tokens", json::array())) {
    absl::Status s = put(added.at("content").get<std::string>(), added.at("id").get<int64_t>(),
                         added.value("special", false) ? kTokenControl : kTokenUserDefined);
    if (!s.ok()) return s;
  }
  // Rows of the embedding no token names (config vocab_size padded past the tokenizer's).
  for (int64_t id = 0; id < vocab_size; ++id) {
    if (!seen[id]) v.tokens[id] = absl::StrCat("[PAD", id, "]"), v.types[id] = kTokenUnused;
  }
  for (const json& m : model.value("merges", json::array())) {
    if (m.is_string()) {
      v.merges.push_back(m.get<std::string>());
    } else {  // the newer ["left", "right"] form
      v.merges.push_back(absl::StrCat(m.at(0).get<std::string>(), " ", m.at(1).get<std::string>()));
    }
  }
  return v;
}

}  // namespace

absl::StatusOr<GgufWriter> HfFolderToGguf(const std::string& dir, const HfToGgufOptions& options) {
  const GgmlType matrix_type = options.matrix_type;
  absl::StatusOr<be::ModelFiles> files = be::ModelFiles::Open(dir);
  if (!files.ok()) return files.status();
  const be::ModelConfig& c = files->config();
  if (absl::Status s = CheckConfig(dir, c); !s.ok()) return s;
  absl::StatusOr<Vocabulary> vocab = ReadVocabulary(dir, c.vocab_size);
  if (!vocab.ok()) return vocab.status();
  absl::StatusOr<be::ModelWeights> w = be::LoadWeights(*files);
  if (!w.ok()) return w.status();

  GgufWriter g;
  g.AddString("general.architecture", "llama");
  g.AddString("general.name", std::filesystem::path(dir).filename().string());
  // llama.cpp's file types: 0 = all F32, 1 = mostly F16.
  g.AddUint32("general.file_type", matrix_type == GgmlType::kF32 ? 0 : 1);
  g.AddUint32("llama.vocab_size", c.vocab_size);
  g.AddUint32("llama.context_length", c.max_position_embeddings);
  g.AddUint32("llama.embedding_length", c.hidden_size);
  g.AddUint32("llama.block_count", c.num_hidden_layers);
  g.AddUint32("llama.feed_forward_length", c.intermediate_size);
  g.AddUint32("llama.rope.dimension_count", c.head_dim);
  g.AddUint32("llama.attention.head_count", c.num_attention_heads);
  g.AddUint32("llama.attention.head_count_kv", c.num_key_value_heads);
  // llama.cpp assumes head_dim = hidden / heads unless told otherwise.
  if (c.head_dim * c.num_attention_heads != c.hidden_size) {
    g.AddUint32("llama.attention.key_length", c.head_dim);
    g.AddUint32("llama.attention.value_length", c.head_dim);
  }
  g.AddFloat32("llama.attention.layer_norm_rms_epsilon", static_cast<float>(c.rms_norm_eps));
  g.AddFloat32("llama.rope.freq_base", static_cast<float>(c.rope_theta));
  g.AddString("tokenizer.ggml.model", "gpt2");
  g.AddString("tokenizer.ggml.pre", "gpt-2");
  g.AddStringArray("tokenizer.ggml.tokens", vocab->tokens);
  g.AddInt32Array("tokenizer.ggml.token_type", vocab->types);
  g.AddStringArray("tokenizer.ggml.merges", vocab->merges);
  if (c.bos_token_id) g.AddUint32("tokenizer.ggml.bos_token_id", *c.bos_token_id);
  if (!c.eos_token_ids.empty()) g.AddUint32("tokenizer.ggml.eos_token_id", c.eos_token_ids[0]);
  // Byte-level BPE models (GPT-2 style) do not prepend BOS when encoding text; the
  // benchmark passes token ids anyway.
  g.AddBool("tokenizer.ggml.add_bos_token", false);

  const int64_t h = c.hidden_size, d = c.head_dim, ff = c.intermediate_size;
  const int64_t q_rows = c.num_attention_heads * d, kv_rows = c.num_key_value_heads * d;
  auto rope_rows = [&](std::vector<float>& w, int64_t heads) {
    return options.permute_qk ? PermuteRowsForGgmlRope(w, heads, h) : std::move(w);
  };
  g.AddTensor("token_embd.weight", {h, c.vocab_size}, matrix_type, std::move(w->embed));
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    be::LayerWeights& lw = w->layers[l];
    const std::string b = absl::StrCat("blk.", l, ".");
    g.AddTensor(b + "attn_norm.weight", {h}, GgmlType::kF32, std::move(lw.input_norm));
    g.AddTensor(b + "attn_q.weight", {h, q_rows}, matrix_type,
                rope_rows(lw.wq, c.num_attention_heads));
    g.AddTensor(b + "attn_k.weight", {h, kv_rows}, matrix_type,
                rope_rows(lw.wk, c.num_key_value_heads));
    g.AddTensor(b + "attn_v.weight", {h, kv_rows}, matrix_type, std::move(lw.wv));
    g.AddTensor(b + "attn_output.weight", {q_rows, h}, matrix_type, std::move(lw.wo));
    g.AddTensor(b + "ffn_norm.weight", {h}, GgmlType::kF32, std::move(lw.post_attention_norm));
    g.AddTensor(b + "ffn_gate.weight", {h, ff}, matrix_type, std::move(lw.w_gate));
    g.AddTensor(b + "ffn_up.weight", {h, ff}, matrix_type, std::move(lw.w_up));
    g.AddTensor(b + "ffn_down.weight", {ff, h}, matrix_type, std::move(lw.w_down));
  }
  g.AddTensor("output_norm.weight", {h}, GgmlType::kF32, std::move(w->final_norm));
  // Tied embeddings: llama.cpp reuses token_embd when "output" is absent.
  if (!c.tie_word_embeddings) g.AddTensor("output.weight", {h, c.vocab_size}, matrix_type, std::move(w->lm_head));
  return g;
}

}  // namespace blockserve::bench
