// make_corpus: writes the seed corpus of every fuzz target, valid inputs made with the
// real encoders (and the shipped model's config.json and a cut of its tokenizer.json),
// so each fuzzer starts past the format's outer checks.
//
//   bazel run //fuzz:make_corpus -- --out "$PWD/fuzz/corpus" --model_dir "$PWD/models/blockserve-tiny-rag"
//
// Writes fuzz/corpus/<target>/seed-*; inputs a fuzzer found (crash-*, named by what they
// broke) are left alone. Deterministic: running it again rewrites the same bytes.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "engine/dtype.h"
#include "engine/kv_cache.h"
#include "engine/safetensors.h"
#include "engine/tokenizer.h"
#include "fuzz/kv_chunks_stream.h"
#include "handoff/kv_chunks.h"
#include "kv_store/block_key.h"
#include "kv_store/catalog_value.h"
#include "kv_store/codec.h"
#include "kv_store/source.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, out, "", "the corpus folder (fuzz/corpus), one subfolder per target");
ABSL_FLAG(std::string, model_dir, "models/blockserve-tiny-rag",
          "the shipped model: its config.json and tokenizer.json seed two targets");

namespace blockserve::fuzz {
namespace {

namespace fs = std::filesystem;
using engine::DType;

fs::path out_dir;

void Write(const std::string& target, const std::string& name, const std::string& bytes) {
  const fs::path dir = out_dir / target;
  fs::create_directories(dir);
  std::ofstream(dir / ("seed-" + name), std::ios::binary) << bytes;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::cerr << "make_corpus: cannot read " << path << "\n";
    std::exit(1);
  }
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Deterministic values over a few binades, both signs, zeros.
engine::KvCache MakeKv(engine::KvShape shape, int tokens, int first_id, int64_t start_position) {
  engine::KvCache kv(shape);
  std::vector<int32_t> ids;
  for (int i = 0; i < tokens; ++i) ids.push_back(first_id + i);
  kv.Append(ids);
  kv.set_start_position(start_position);
  for (int64_t l = 0; l < shape.num_layers; ++l) {
    for (int64_t i = 0; i < tokens * shape.row(); ++i) {
      kv.k(l)[i] = i % 7 == 0 ? 0.0f : std::sin(0.3f * i + l) * std::ldexp(1.0f, i % 5 - 2);
      kv.v(l)[i] = std::cos(0.2f * i - l) * 3;
    }
  }
  return kv;
}

// Must match fuzz/codec_fuzzer.cc.
constexpr engine::KvShape kCodecShape{.num_layers = 2, .num_kv_heads = 2, .head_dim = 4};
constexpr uint64_t kCodecFingerprint = 0x0123456789abcdefULL;

void Codec() {
  auto encode = [](DType dtype, int tokens, int64_t start, uint64_t fingerprint) {
    return kv_store::EncodeBlockValue(
        MakeKv(kCodecShape, tokens, 100, start),
        {.model_fingerprint = fingerprint, .shape = kCodecShape, .dtype = dtype});
  };
  Write("codec_fuzzer", "f32-3-tokens", encode(DType::kF32, 3, 0, kCodecFingerprint));
  Write("codec_fuzzer", "f16-2-tokens", encode(DType::kF16, 2, 0, kCodecFingerprint));
  Write("codec_fuzzer", "bf16-1-token-at-5", encode(DType::kBF16, 1, 5, kCodecFingerprint));
  Write("codec_fuzzer", "another-model", encode(DType::kBF16, 2, 0, 0xfeedULL));
}

void CatalogValues() {
  auto seed = [](const std::string& id, std::vector<int32_t> tokens) {
    const std::string value =
        kv_store::EncodeCatalogValue(id, kv_store::MakeBlockKey(kCodecFingerprint, tokens));
    return std::string(1, static_cast<char>(id.size())) + id + value;
  };
  Write("catalog_value_fuzzer", "doc-1", seed("doc-1", {5, 6, 7}));
  Write("catalog_value_fuzzer", "tenant-passage", seed("t:acme/ns:wiki/passage-0042", {9}));
  Write("catalog_value_fuzzer", "empty-id", seed("", {1, 2}));
}

void SourceValues() {
  Write("source_value_fuzzer", "three-tokens", kv_store::EncodeSourceValue({5, 6, 7}));
  Write("source_value_fuzzer", "one-token", kv_store::EncodeSourceValue({3142}));
  std::vector<int32_t> many;
  for (int i = 0; i < 40; ++i) many.push_back(i * 77);
  Write("source_value_fuzzer", "forty-tokens", kv_store::EncodeSourceValue(many));
}

// The shipped tokenizer.json cut to the byte symbols, the first merges and what they
// make, with everything else (added tokens, pre-tokenizer, post-processor) as shipped:
// a few KB, a real file's shape.
void Tokenizers(const fs::path& model_dir) {
  nlohmann::ordered_json full =
      nlohmann::ordered_json::parse(ReadFile(model_dir / "tokenizer.json"));
  nlohmann::ordered_json& model = full["model"];
  std::set<std::string> keep;
  for (int b = 0; b < 256; ++b) keep.insert(engine::ByteLevelEncode(std::string(1, char(b))));
  nlohmann::ordered_json merges = nlohmann::ordered_json::array();
  for (size_t i = 0; i < 40 && i < model["merges"].size(); ++i) {
    const std::string merge = model["merges"][i];
    const size_t space = merge.find(' ');
    keep.insert(merge.substr(0, space));
    keep.insert(merge.substr(space + 1));
    keep.insert(merge.substr(0, space) + merge.substr(space + 1));
    merges.push_back(merge);
  }
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  for (const auto& [token, id] : model["vocab"].items()) {
    if (keep.count(token)) vocab[token] = id;
  }
  model["vocab"] = vocab;
  model["merges"] = merges;
  Write("tokenizer_fuzzer", "shipped-cut", full.dump());

  // The other supported shapes: merges as pairs, NFC, a Split + ByteLevel sequence, a
  // TemplateProcessing BOS, unk_token, ignore_merges.
  model["merges"] = nlohmann::ordered_json::array();
  for (const std::string merge : merges) {
    const size_t space = merge.find(' ');
    model["merges"].push_back({merge.substr(0, space), merge.substr(space + 1)});
  }
  model["unk_token"] = "e";
  model["ignore_merges"] = true;
  full["normalizer"] = {{"type", "NFC"}};
  full["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"},
         {"pattern", {{"Regex", "\\p{N}"}}},
         {"behavior", "Isolated"},
         {"invert", false}},
        {{"type", "Split"}, {"pattern", {{"String", "\n"}}}, {"behavior", "MergedWithNext"}},
        {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}}}}};
  // As Hugging Face writes one (Llama 3's): the BOS before each sequence, its id under
  // special_tokens.
  nlohmann::ordered_json bos_ids = nlohmann::ordered_json::array();
  for (const auto& added : full["added_tokens"]) {
    if (added["content"] == "<|begin_of_text|>") bos_ids.push_back(added["id"]);
  }
  const nlohmann::ordered_json bos = {{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}};
  full["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", {bos, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"pair",
       {bos, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}, bos,
        {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
      {"special_tokens",
       {{"<|begin_of_text|>",
         {{"id", "<|begin_of_text|>"}, {"ids", bos_ids}, {"tokens", {"<|begin_of_text|>"}}}}}}};
  Write("tokenizer_fuzzer", "pairs-split-template", full.dump());

  Write("tokenizer_fuzzer", "minimal",
        R"({"model": {"vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}})");
}

void Safetensors(const fs::path& scratch) {
  auto write = [&](const std::string& name, const std::vector<engine::TensorToWrite>& tensors,
                   const std::map<std::string, std::string>& metadata) {
    const fs::path path = scratch / (name + ".safetensors");
    if (absl::Status s = engine::WriteSafetensors(path, tensors, metadata); !s.ok()) {
      std::cerr << "make_corpus: " << s << "\n";
      std::exit(1);
    }
    Write("safetensors_fuzzer", name, ReadFile(path));
  };
  write("three-dtypes",
        {{.name = "model.embed_tokens.weight", .dtype = DType::kBF16, .shape = {3, 2},
          .values = {1, -2, 0.5f, 0, 3e-3f, -7}},
         {.name = "model.norm.weight", .dtype = DType::kF32, .shape = {2}, .values = {1, 0.25f}},
         {.name = "lm_head.weight", .dtype = DType::kF16, .shape = {2, 2},
          .values = {0.1f, 0.2f, -65504, 6e-8f}}},
        {{"format", "pt"}});
  write("scalar-and-empty",
        {{.name = "scale", .dtype = DType::kF32, .shape = {}, .values = {2}},
         {.name = "nothing", .dtype = DType::kF16, .shape = {0, 4}, .values = {}}},
        {});
  write("no-tensors", {}, {});
}

void ModelConfigs(const fs::path& model_dir) {
  Write("model_config_fuzzer", "shipped", ReadFile(model_dir / "config.json"));
  Write("model_config_fuzzer", "llama3-rope",
        R"({"model_type": "llama", "vocab_size": 128256, "hidden_size": 4096,
            "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 8, "max_position_embeddings": 131072,
            "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
            "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 8192, "rope_type": "llama3"},
            "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
            "tie_word_embeddings": false, "torch_dtype": "bfloat16"})");
  Write("model_config_fuzzer", "qwen2-sliding",
        R"({"model_type": "qwen2", "vocab_size": 151936, "hidden_size": 896,
            "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
            "num_key_value_heads": 2, "max_position_embeddings": 32768,
            "use_sliding_window": true, "sliding_window": 4096, "rope_theta": 1000000.0,
            "rms_norm_eps": 1e-06, "tie_word_embeddings": true, "eos_token_id": 151643})");
  Write("model_config_fuzzer", "mistral-linear-rope-parameters",
        R"({"model_type": "mistral", "vocab_size": 32000, "hidden_size": 64,
            "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "head_dim": 16, "sliding_window": null, "hidden_act": "silu",
            "rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4},
            "dtype": "float32", "attention_bias": false, "mlp_bias": false})");
  Write("model_config_fuzzer", "qwen2-alternating-layer-types",
        R"({"model_type": "qwen2", "vocab_size": 1000, "hidden_size": 64,
            "intermediate_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
            "num_key_value_heads": 2, "use_sliding_window": true, "sliding_window": 6,
            "layer_types": ["sliding_attention", "full_attention", "sliding_attention",
                            "full_attention"],
            "rope_theta": 10000.0, "rms_norm_eps": 1e-06, "tie_word_embeddings": false})");
}

void LogitsRequests() {
  Write("logits_request_fuzzer", "readme",
        R"({"blocks": [[5, 6, 7], [8, 9], [10, 11]], "mode": "block"})");
  Write("logits_request_fuzzer", "full-global",
        R"({"blocks": [[1], [2, 3], [4]], "mode": "full", "global_blocks": 1})");
  Write("logits_request_fuzzer", "query-only", R"({"blocks": [[2147483647, 0]]})");
  // Issue 15: this aborted the tool (an uncaught nlohmann type_error).
  Write("logits_request_fuzzer", "mode-number", R"({"blocks": [[1, 2]], "mode": 5})");
}

void KvChunks() {
  const handoff::SequenceAssembler::Expect expect = KvChunksExpect();
  v1::SequenceHeader header;
  header.set_sequence_id(42);
  header.set_model_fingerprint(expect.model_fingerprint_hex);
  header.set_first_token_id(7);
  header.mutable_sampling()->set_seed(5);
  header.mutable_sampling()->set_temperature(0.7f);
  header.mutable_sampling()->set_max_new_tokens(16);
  header.mutable_sampling()->add_stop("\n");
  header.set_request_id("req-1");
  auto stream = [&](int tokens, v1::DType dtype, size_t max_chunk_bytes) {
    return handoff::SequenceToChunks(header, MakeKv(expect.shape, tokens, 10, 0), dtype,
                                     max_chunk_bytes);
  };
  Write("kv_chunks_fuzzer", "f32-3-tokens", KvChunkStream(stream(3, v1::DTYPE_F32, 64)));
  Write("kv_chunks_fuzzer", "bf16-5-tokens", KvChunkStream(stream(5, v1::DTYPE_BF16, 32)));
  std::vector<v1::KvChunk> reversed = stream(4, v1::DTYPE_F16, 16);
  std::reverse(reversed.begin() + 1, reversed.end());  // slices in any order
  Write("kv_chunks_fuzzer", "f16-4-tokens-reversed", KvChunkStream(reversed));
}

}  // namespace
}  // namespace blockserve::fuzz

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  using namespace blockserve::fuzz;
  if (absl::GetFlag(FLAGS_out).empty()) {
    std::cerr << "make_corpus: --out is required\n";
    return 2;
  }
  out_dir = absl::GetFlag(FLAGS_out);
  const fs::path model_dir = absl::GetFlag(FLAGS_model_dir);
  const fs::path scratch = fs::temp_directory_path() / "blockserve_make_corpus";
  fs::create_directories(scratch);
  Codec();
  CatalogValues();
  SourceValues();
  Tokenizers(model_dir);
  Safetensors(scratch);
  ModelConfigs(model_dir);
  LogitsRequests();
  KvChunks();
  fs::remove_all(scratch);
  std::cout << "make_corpus: wrote the seeds under " << out_dir << "\n";
  return 0;
}
