// The seed corpus stays what it is for: valid inputs of each format, so a fuzzer starts
// past the outer checks. Were a format to change under its seeds (a new codec version, a
// new required config key), every seed would fail early and the fuzzers would only ever
// test the first check, with nothing failing; this test fails instead. Regenerate with
// //fuzz:make_corpus.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/logits_request.h"
#include "engine/model_config.h"
#include "engine/safetensors.h"
#include "engine/tokenizer.h"
#include "fuzz/kv_chunks_stream.h"
#include "gtest/gtest.h"
#include "handoff/kv_chunks.h"
#include "kv_store/catalog_value.h"
#include "kv_store/codec.h"
#include "kv_store/source.h"

namespace blockserve::fuzz {
namespace {

namespace fs = std::filesystem;

// Seeds that are meant to be refused (they test an error path from a valid shape).
const std::set<std::string> kInvalidOnPurpose = {"seed-another-model", "seed-mode-number"};

std::vector<fs::path> Seeds(const std::string& target) {
  std::vector<fs::path> seeds;
  for (const auto& entry : fs::directory_iterator(fs::path("fuzz/corpus") / target)) {
    const std::string name = entry.path().filename();
    if (name.rfind("seed-", 0) == 0 && !kInvalidOnPurpose.count(name)) {
      seeds.push_back(entry.path());
    }
  }
  EXPECT_FALSE(seeds.empty()) << target;
  return seeds;
}

std::string Read(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST(SeedsTest, CodecSeedsDecode) {
  const kv_store::CodecOptions o{
      .model_fingerprint = 0x0123456789abcdefULL,
      .shape = {.num_layers = 2, .num_kv_heads = 2, .head_dim = 4}};
  for (const fs::path& seed : Seeds("codec_fuzzer")) {
    EXPECT_TRUE(kv_store::DecodeBlockValue(Read(seed), o).ok()) << seed;
  }
}

TEST(SeedsTest, CatalogSeedsDecodeForTheirId) {
  for (const fs::path& seed : Seeds("catalog_value_fuzzer")) {
    const std::string input = Read(seed);
    ASSERT_FALSE(input.empty());
    const size_t k = static_cast<uint8_t>(input[0]);
    EXPECT_TRUE(kv_store::DecodeCatalogValue(input.substr(1 + k), input.substr(1, k)).ok())
        << seed;
  }
}

TEST(SeedsTest, SourceSeedsDecode) {
  for (const fs::path& seed : Seeds("source_value_fuzzer")) {
    EXPECT_TRUE(kv_store::DecodeSourceValue(Read(seed)).ok()) << seed;
  }
}

TEST(SeedsTest, TokenizerSeedsLoad) {
  for (const fs::path& seed : Seeds("tokenizer_fuzzer")) {
    absl::StatusOr<engine::Tokenizer> t = engine::Tokenizer::FromJson(Read(seed));
    ASSERT_TRUE(t.ok()) << seed << ": " << t.status();
    EXPECT_FALSE(t->Encode("the answer is 42").empty()) << seed;
  }
}

TEST(SeedsTest, SafetensorsSeedsOpen) {
  for (const fs::path& seed : Seeds("safetensors_fuzzer")) {
    EXPECT_TRUE(engine::SafetensorsFile::Open(seed).ok()) << seed;
  }
}

TEST(SeedsTest, ModelConfigSeedsParse) {
  for (const fs::path& seed : Seeds("model_config_fuzzer")) {
    absl::StatusOr<engine::ModelConfig> c = engine::ModelConfig::FromJson(Read(seed));
    EXPECT_TRUE(c.ok()) << seed << ": " << c.status();
  }
}

TEST(SeedsTest, LogitsRequestSeedsParse) {
  for (const fs::path& seed : Seeds("logits_request_fuzzer")) {
    EXPECT_TRUE(engine::ParseLogitsRequest(Read(seed)).ok()) << seed;
  }
}

TEST(SeedsTest, KvChunkSeedsAssemble) {
  for (const fs::path& seed : Seeds("kv_chunks_fuzzer")) {
    const std::vector<v1::KvChunk> chunks = ParseKvChunkStream(Read(seed));
    ASSERT_GT(chunks.size(), 2u) << seed;
    handoff::SequenceAssembler assembler(KvChunksExpect());
    for (const v1::KvChunk& c : chunks) {
      ASSERT_TRUE(assembler.AddChunk(c).ok()) << seed << ": " << assembler.AddChunk(c);
    }
    EXPECT_TRUE(assembler.Finish().ok()) << seed;
  }
}

}  // namespace
}  // namespace blockserve::fuzz
