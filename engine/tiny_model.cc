#include "engine/tiny_model.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "absl/strings/str_cat.h"
#include "engine/bpe_trainer.h"
#include "engine/model_files.h"
#include "engine/tokenizer.h"
#include "engine/weights.h"

namespace blockserve::engine {
namespace {

constexpr char kCorpus[] =
    "Block attention splits a retrieval augmented prompt into blocks. Each retrieved passage "
    "is a block that attends only to itself, so its key and value states can be computed once "
    "and cached. When a question arrives, the cached states of every passage are moved to "
    "their place in the prompt by rotating the keys, and only the question is computed. "
    "The question attends to all of the passages before it, and the answer is generated "
    "token by token. The river Elbe flows through Dresden and Hamburg to the North Sea. "
    "The capital of France is Paris; the capital of Italy is Rome; the capital of Spain is "
    "Madrid. Water boils at one hundred degrees Celsius at sea level. The first computer "
    "programs were written for machines that filled whole rooms. A passage about the "
    "weather: it rained in the morning and the sun came out in the afternoon. What is the "
    "answer to the question? The answer is in the passage. Who wrote the report, and when "
    "was it written? It was written by the team in the year 2024.\n"
    "Numbers like 12345 and 3.14159 appear in text, as do names such as Ada, Alan and Grace.\n";

// Uniform in [-bound, bound], the Kaiming-style scale of a layer with `fan_in` inputs.
std::vector<float> RandomMatrix(std::mt19937_64& rng, int64_t n, double bound) {
  std::uniform_real_distribution<float> u(-bound, bound);
  std::vector<float> out(n);
  for (float& x : out) x = u(rng);
  return out;
}

std::vector<float> RandomTensor(std::mt19937_64& rng, const TensorSpec& spec) {
  int64_t n = 1;
  for (int64_t d : spec.shape) n *= d;
  const bool is_norm = spec.name.find("norm") != std::string::npos;
  if (is_norm) {  // near 1, as trained RMSNorm gains are
    std::vector<float> g = RandomMatrix(rng, n, 0.2);
    for (float& x : g) x += 1.0f;
    return g;
  }
  if (spec.shape.size() == 1) return RandomMatrix(rng, n, 0.1);  // biases
  if (spec.name.find("embed_tokens") != std::string::npos) return RandomMatrix(rng, n, 1.0);
  // q/k get a larger scale so attention is far from uniform and position matters.
  const bool qk = spec.name.find("q_proj") != std::string::npos ||
                  spec.name.find("k_proj") != std::string::npos;
  const double bound = (qk ? 3.0 : 1.7) / std::sqrt(static_cast<double>(spec.shape[1]));
  return RandomMatrix(rng, n, bound);
}

}  // namespace

std::string_view TinyTokenizerCorpus() { return kCorpus; }

ModelConfig TinyModelConfig(const TinyModelOptions& o, int64_t vocab_size) {
  ModelConfig c;
  c.model_type = o.model_type;
  c.vocab_size = vocab_size;
  c.hidden_size = o.hidden_size;
  c.intermediate_size = o.intermediate_size;
  c.num_hidden_layers = o.num_layers;
  c.num_attention_heads = o.num_heads;
  c.num_key_value_heads = o.num_kv_heads;
  c.head_dim = o.hidden_size / o.num_heads;
  c.max_position_embeddings = o.max_position_embeddings;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = o.rope_theta;
  c.rope_scaling = o.rope_scaling;
  c.tie_word_embeddings = o.tie_word_embeddings;
  c.attention_bias = o.model_type == "qwen2" || o.attention_bias;
  c.mlp_bias = o.mlp_bias;
  c.sliding_window = o.sliding_window;
  c.windowed_layers = o.windowed_layers;
  c.torch_dtype = o.dtype == DType::kF32 ? "float32" : o.dtype == DType::kF16 ? "float16" : "bfloat16";
  return c;
}

absl::Status WriteTinyModel(const std::string& dir, const TinyModelOptions& o) {
  absl::StatusOr<std::string> tokenizer_json = TrainByteLevelBpeJson(
      kCorpus, o.num_merges, {"<|begin_of_text|>", "<|end_of_text|>"});
  if (!tokenizer_json.ok()) return tokenizer_json.status();
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::FromJson(*tokenizer_json);
  if (!tokenizer.ok()) return tokenizer.status();

  ModelConfig config = TinyModelConfig(o, tokenizer->vocab_size());
  // The folder has no tokenizer_config.json: config.json's ids name BOS and EOS.
  config.bos_token_id = tokenizer->TokenId("<|begin_of_text|>");
  config.eos_token_ids = {*tokenizer->TokenId("<|end_of_text|>")};
  if (absl::Status s = config.Validate(); !s.ok()) return s;

  std::mt19937_64 rng(o.seed);
  std::vector<TensorToWrite> tensors;
  for (const TensorSpec& spec : ExpectedTensors(config)) {
    tensors.push_back(TensorToWrite{spec.name, o.dtype, spec.shape, RandomTensor(rng, spec)});
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  if (absl::Status s = WriteModelFolder(dir, config, tensors, o.max_shard_bytes); !s.ok()) return s;
  std::ofstream out(dir + "/tokenizer.json", std::ios::binary);
  out << *tokenizer_json;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", dir, "/tokenizer.json"));
  return absl::OkStatus();
}

}  // namespace blockserve::engine
