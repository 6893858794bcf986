// make_tiny_model: writes a random-weight Llama-family model folder (config.json,
// safetensors, tokenizer.json) reproducibly from a seed.
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "engine/tiny_model.h"

ABSL_FLAG(std::string, out, "", "folder to write (created if missing)");
ABSL_FLAG(uint64_t, seed, 1, "random seed for the weights");
ABSL_FLAG(std::string, model_type, "llama", "llama | mistral | qwen2 (qwen2 has q/k/v bias)");
ABSL_FLAG(int64_t, hidden_size, 64, "hidden size");
ABSL_FLAG(int64_t, intermediate_size, 128, "MLP size");
ABSL_FLAG(int64_t, layers, 2, "number of layers");
ABSL_FLAG(int64_t, heads, 4, "attention heads");
ABSL_FLAG(int64_t, kv_heads, 2, "key/value heads (< heads: grouped-query attention)");
ABSL_FLAG(int64_t, max_positions, 4096, "max_position_embeddings");
ABSL_FLAG(std::string, dtype, "F32", "stored dtype: F32 | F16 | BF16");
ABSL_FLAG(bool, tie_embeddings, false, "tie lm_head to embed_tokens");
ABSL_FLAG(uint64_t, max_shard_bytes, 0, "> 0: write sharded safetensors with an index");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Writes a tiny random-weight model folder.\n"
                               "Usage: make_tiny_model --out DIR [--seed N] [shape flags]");
  absl::ParseCommandLine(argc, argv);
  using namespace blockserve::engine;
  TinyModelOptions o;
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) {
    std::cerr << "make_tiny_model: --out is required (see --help)\n";
    return 2;
  }
  absl::StatusOr<DType> dtype = ParseDType(absl::GetFlag(FLAGS_dtype));
  if (!dtype.ok()) {
    std::cerr << "make_tiny_model: " << dtype.status().message() << "\n";
    return 2;
  }
  o.seed = absl::GetFlag(FLAGS_seed);
  o.model_type = absl::GetFlag(FLAGS_model_type);
  o.hidden_size = absl::GetFlag(FLAGS_hidden_size);
  o.intermediate_size = absl::GetFlag(FLAGS_intermediate_size);
  o.num_layers = absl::GetFlag(FLAGS_layers);
  o.num_heads = absl::GetFlag(FLAGS_heads);
  o.num_kv_heads = absl::GetFlag(FLAGS_kv_heads);
  o.max_position_embeddings = absl::GetFlag(FLAGS_max_positions);
  o.dtype = *dtype;
  o.tie_word_embeddings = absl::GetFlag(FLAGS_tie_embeddings);
  o.max_shard_bytes = absl::GetFlag(FLAGS_max_shard_bytes);
  if (absl::Status s = WriteTinyModel(out, o); !s.ok()) {
    std::cerr << "make_tiny_model: " << s.message() << "\n";
    return 1;
  }
  std::cout << "wrote " << out << "\n";
  return 0;
}
