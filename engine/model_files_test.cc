#include "engine/model_files.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace blockserve::engine {
namespace {

namespace fs = std::filesystem;

ModelConfig TinyConfig() {
  ModelConfig config;
  config.model_type = "llama";
  config.vocab_size = 32;
  config.hidden_size = 64;
  config.intermediate_size = 96;
  config.num_hidden_layers = 1;
  config.num_attention_heads = 4;
  config.num_key_value_heads = 2;
  config.head_dim = 16;
  config.eos_token_ids = {2};
  config.torch_dtype = "bfloat16";
  return config;
}

TensorToWrite MakeTensor(const std::string& name, DType dtype,
                         std::vector<int64_t> shape, float seed) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<float> values(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    values[i] = seed + 0.01f * static_cast<float>(i % 97) -
                0.003f * static_cast<float>(i % 13);
  }
  return {name, dtype, std::move(shape), std::move(values)};
}

// Weights in the order a real checkpoint lists them, mixing dtypes.
std::vector<TensorToWrite> TinyTensors() {
  return {
      MakeTensor("model.embed_tokens.weight", DType::kBF16, {32, 64}, 0.1f),
      MakeTensor("model.layers.0.self_attn.q_proj.weight", DType::kF16,
                 {64, 64}, 0.2f),
      MakeTensor("model.layers.0.self_attn.k_proj.weight", DType::kF16,
                 {32, 64}, 0.3f),
      MakeTensor("model.layers.0.self_attn.v_proj.weight", DType::kF32,
                 {32, 64}, 0.4f),
      MakeTensor("model.layers.0.input_layernorm.weight", DType::kF32, {64},
                 1.0f),
      MakeTensor("model.norm.weight", DType::kBF16, {64}, 1.0f),
      MakeTensor("lm_head.weight", DType::kBF16, {32, 64}, 0.5f),
  };
}

std::vector<float> Rounded(const TensorToWrite& t) {
  std::vector<uint8_t> bytes(t.values.size() * DTypeSize(t.dtype));
  ConvertFromF32(t.dtype, t.values.data(), t.values.size(), bytes.data());
  std::vector<float> out(t.values.size());
  ConvertToF32(t.dtype, bytes.data(), out.size(), out.data());
  return out;
}

std::string Message(const absl::Status& status) {
  return std::string(status.message());
}

class ModelFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/model_files_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string Dir(const std::string& name) const { return root_ + "/" + name; }

  std::string root_;
};

void ExpectFolderMatches(const ModelFiles& files,
                         const std::vector<TensorToWrite>& tensors) {
  EXPECT_EQ(files.config(), TinyConfig());
  EXPECT_EQ(files.TensorNames().size(), tensors.size());
  for (const TensorToWrite& t : tensors) {
    ASSERT_TRUE(files.Has(t.name)) << t.name;
    absl::StatusOr<std::vector<float>> values = files.LoadF32(t.name, t.shape);
    ASSERT_TRUE(values.ok()) << values.status();
    EXPECT_EQ(*values, Rounded(t)) << t.name;
    ASSERT_NE(files.Find(t.name), nullptr);
    EXPECT_EQ(files.Find(t.name)->dtype, t.dtype) << t.name;
  }
  EXPECT_FALSE(files.Has("model.layers.1.mlp.up_proj.weight"));
}

TEST_F(ModelFilesTest, SingleFileFolderRoundTrips) {
  const std::string dir = Dir("single");
  ASSERT_TRUE(WriteModelFolder(dir, TinyConfig(), TinyTensors()).ok());
  EXPECT_TRUE(fs::is_regular_file(dir + "/config.json"));
  EXPECT_TRUE(fs::is_regular_file(dir + "/model.safetensors"));
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors.index.json"));

  absl::StatusOr<ModelFiles> files = ModelFiles::Open(dir);
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_EQ(files->dir(), dir);
  ExpectFolderMatches(*files, TinyTensors());
  EXPECT_EQ(files->FileOf("lm_head.weight"), "model.safetensors");

  // Hugging Face loaders expect format metadata in the weights file.
  absl::StatusOr<SafetensorsFile> raw =
      SafetensorsFile::Open(dir + "/model.safetensors");
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_EQ(raw->metadata().at("format"), "pt");
}

TEST_F(ModelFilesTest, ShardedFolderRoundTripsWithHuggingFaceNaming) {
  const std::string dir = Dir("sharded");
  // 8 KiB shards: the 8 KiB q_proj fills one, smaller tensors share.
  ASSERT_TRUE(WriteModelFolder(dir, TinyConfig(), TinyTensors(), 8192).ok());
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors"));
  std::ifstream index_in(dir + "/model.safetensors.index.json");
  const nlohmann::json index = nlohmann::json::parse(index_in);
  const nlohmann::json& weight_map = index.at("weight_map");
  ASSERT_EQ(weight_map.size(), TinyTensors().size());
  std::set<std::string> shard_names;
  uint64_t total = 0;
  for (const TensorToWrite& t : TinyTensors()) {
    shard_names.insert(weight_map.at(t.name).get<std::string>());
    total += t.values.size() * DTypeSize(t.dtype);
  }
  EXPECT_EQ(index.at("metadata").at("total_size").get<uint64_t>(), total);
  const size_t n = shard_names.size();
  ASSERT_GT(n, 2u);
  size_t i = 1;
  for (const std::string& name : shard_names) {
    char expected[64];
    std::snprintf(expected, sizeof(expected),
                  "model-%05zu-of-%05zu.safetensors", i++, n);
    EXPECT_EQ(name, expected);
    EXPECT_TRUE(fs::is_regular_file(dir + "/" + name)) << name;
    EXPECT_LE(fs::file_size(dir + "/" + name), 8192u + 1024u) << name;
  }
  // Order is kept: the first tensor lives in the first shard.
  EXPECT_EQ(weight_map.at("model.embed_tokens.weight"),
            "model-00001-of-" + std::string(5 - std::to_string(n).size(), '0') +
                std::to_string(n) + ".safetensors");

  absl::StatusOr<ModelFiles> files = ModelFiles::Open(dir);
  ASSERT_TRUE(files.ok()) << files.status();
  ExpectFolderMatches(*files, TinyTensors());
}

TEST_F(ModelFilesTest, TensorLargerThanShardLimitGetsAShardOfItsOwn) {
  const std::string dir = Dir("tiny_shards");
  ASSERT_TRUE(WriteModelFolder(dir, TinyConfig(), TinyTensors(), 16).ok());
  absl::StatusOr<ModelFiles> files = ModelFiles::Open(dir);
  ASSERT_TRUE(files.ok()) << files.status();
  std::set<std::string> used;
  for (const std::string& name : files->TensorNames()) {
    used.insert(files->FileOf(name));
  }
  EXPECT_EQ(used.size(), TinyTensors().size());
  ExpectFolderMatches(*files, TinyTensors());
}

TEST_F(ModelFilesTest, ContentHashIgnoresShardingButSeesEveryTensorDetail) {
  ASSERT_TRUE(WriteModelFolder(Dir("a"), TinyConfig(), TinyTensors()).ok());
  ASSERT_TRUE(
      WriteModelFolder(Dir("b"), TinyConfig(), TinyTensors(), 4096).ok());
  const uint64_t base = ModelFiles::Open(Dir("a"))->ContentHash();
  EXPECT_EQ(ModelFiles::Open(Dir("b"))->ContentHash(), base);

  // Same weights, different config: same content hash.
  ModelConfig other_config = TinyConfig();
  other_config.rope_theta = 12345;
  ASSERT_TRUE(WriteModelFolder(Dir("c"), other_config, TinyTensors()).ok());
  EXPECT_EQ(ModelFiles::Open(Dir("c"))->ContentHash(), base);

  std::vector<std::vector<TensorToWrite>> variants(4, TinyTensors());
  variants[0][3].values[100] += 1.0f;                       // one value
  variants[1][5].name = "model.final_norm.weight";          // a name
  variants[2][2].shape = {64, 32};                          // a shape
  variants[3][3].dtype = DType::kF16;                       // a dtype
  std::set<uint64_t> hashes = {base};
  for (size_t i = 0; i < variants.size(); ++i) {
    const std::string dir = Dir("v" + std::to_string(i));
    ASSERT_TRUE(WriteModelFolder(dir, TinyConfig(), variants[i]).ok());
    hashes.insert(ModelFiles::Open(dir)->ContentHash());
  }
  EXPECT_EQ(hashes.size(), 1 + variants.size());
}

TEST(DataHash64Test, DependsOnEveryByteAndTheLength) {
  std::vector<uint8_t> bytes(103);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i);
  std::set<uint64_t> hashes;
  for (size_t n = 0; n <= bytes.size(); ++n) {
    hashes.insert(DataHash64(bytes.data(), n));  // prefixes of every length
  }
  for (size_t i = 0; i < bytes.size(); ++i) {  // a flip at every position
    std::vector<uint8_t> changed = bytes;
    changed[i] ^= 0x01;
    hashes.insert(DataHash64(changed.data(), changed.size()));
  }
  EXPECT_EQ(hashes.size(), (bytes.size() + 1) + bytes.size());
  const std::vector<uint8_t> zeros(64, 0);
  EXPECT_NE(DataHash64(zeros.data(), 63), DataHash64(zeros.data(), 64));
}

TEST(DataHash64Test, KnownValuesAreStable) {
  // Fingerprints may be persisted: changing the algorithm must be a
  // deliberate decision that updates these values.
  const std::string text = "BlockServe weights, 40 bytes long.......";
  ASSERT_EQ(text.size(), 40u);  // one 32-byte block plus one word
  const auto* bytes = reinterpret_cast<const uint8_t*>(text.data());
  EXPECT_EQ(DataHash64(nullptr, 0), 0xfd98e5100ddd6c11ull);
  EXPECT_EQ(DataHash64(bytes + 7, 3), DataHash64(  // unaligned
      reinterpret_cast<const uint8_t*>("rve"), 3));
  EXPECT_EQ(DataHash64(reinterpret_cast<const uint8_t*>("abc"), 3),
            0x603be2ec472639a3ull);
  EXPECT_EQ(DataHash64(bytes, text.size()), 0x51aaa72c88134537ull);
}

TEST_F(ModelFilesTest, WrongShapeErrorNamesTensorFileAndBothShapes) {
  const std::string dir = Dir("shape");
  ASSERT_TRUE(WriteModelFolder(dir, TinyConfig(), TinyTensors(), 20000).ok());
  absl::StatusOr<ModelFiles> files = ModelFiles::Open(dir);
  ASSERT_TRUE(files.ok()) << files.status();
  ASSERT_EQ(files->FileOf("model.layers.0.self_attn.q_proj.weight"),
            "model-00001-of-00002.safetensors");
  absl::StatusOr<std::vector<float>> loaded =
      files->LoadF32("model.layers.0.self_attn.q_proj.weight", {64, 32});
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(loaded.status()),
            "model.layers.0.self_attn.q_proj.weight in "
            "model-00001-of-00002.safetensors: expected shape [64, 32], "
            "found [64, 64]");
  EXPECT_FALSE(files->LoadF32("model.norm.weight", {}).ok());
  EXPECT_FALSE(files->LoadF32("model.norm.weight", {64, 1}).ok());
}

TEST_F(ModelFilesTest, MissingTensorIsNotFoundNamingIt) {
  const std::string dir = Dir("missing_tensor");
  ASSERT_TRUE(WriteModelFolder(dir, TinyConfig(), TinyTensors()).ok());
  absl::StatusOr<ModelFiles> files = ModelFiles::Open(dir);
  ASSERT_TRUE(files.ok()) << files.status();
  absl::StatusOr<std::vector<float>> loaded =
      files->LoadF32("model.layers.7.mlp.gate_proj.weight", {96, 64});
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(
      Message(loaded.status()).find("model.layers.7.mlp.gate_proj.weight"),
      std::string::npos);
  EXPECT_NE(Message(loaded.status()).find(dir), std::string::npos);
}

TEST_F(ModelFilesTest, MissingShardIsNotFoundNamingIt) {
  const std::string dir = Dir("missing_shard");
  ASSERT_TRUE(WriteModelFolder(dir, TinyConfig(), TinyTensors(), 20000).ok());
  fs::remove(dir + "/model-00002-of-00002.safetensors");
  absl::StatusOr<ModelFiles> files = ModelFiles::Open(dir);
  ASSERT_FALSE(files.ok());
  EXPECT_EQ(files.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(Message(files.status()).find("model-00002-of-00002.safetensors"),
            std::string::npos)
      << files.status();
}

TEST_F(ModelFilesTest, IndexEntryAbsentFromItsShardIsNotFoundNamingIt) {
  const std::string dir = Dir("bad_index");
  ASSERT_TRUE(WriteModelFolder(dir, TinyConfig(), TinyTensors(), 20000).ok());
  const std::string index_path = dir + "/model.safetensors.index.json";
  nlohmann::json index = nlohmann::json::parse(std::ifstream(index_path));
  index["weight_map"]["model.ghost.weight"] =
      "model-00001-of-00002.safetensors";
  std::ofstream(index_path) << index.dump();
  absl::StatusOr<ModelFiles> files = ModelFiles::Open(dir);
  ASSERT_FALSE(files.ok());
  EXPECT_EQ(files.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(Message(files.status()).find("\"model.ghost.weight\""),
            std::string::npos)
      << files.status();
}

TEST_F(ModelFilesTest, MalformedIndexIsRejected) {
  const std::string dir = Dir("malformed_index");
  ASSERT_TRUE(WriteModelFolder(dir, TinyConfig(), TinyTensors(), 20000).ok());
  const std::string index_path = dir + "/model.safetensors.index.json";
  for (const char* text :
       {"not json", "[]", R"({"metadata": {}})", R"({"weight_map": []})",
        R"({"weight_map": {"lm_head.weight": 3}})",
        R"({"weight_map": {"lm_head.weight": "../model.safetensors"}})"}) {
    std::ofstream(index_path) << text;
    absl::StatusOr<ModelFiles> files = ModelFiles::Open(dir);
    ASSERT_FALSE(files.ok()) << text;
    EXPECT_EQ(files.status().code(), absl::StatusCode::kInvalidArgument)
        << text;
    EXPECT_NE(Message(files.status()).find("model.safetensors.index.json"),
              std::string::npos)
        << files.status();
  }
}

// A shard value nested a million deep: the error message's dump() of it recursed once
// per level and overflowed the stack (SIGSEGV). Refused before parsing.
TEST_F(ModelFilesTest, DeeplyNestedIndexIsInvalidArgumentNotAStackOverflow) {
  const std::string dir = Dir("deep_index");
  ASSERT_TRUE(WriteModelFolder(dir, TinyConfig(), TinyTensors(), 20000).ok());
  const int depth = 1'000'000;
  std::ofstream(dir + "/model.safetensors.index.json")
      << R"({"weight_map": {"lm_head.weight": )" << std::string(depth, '[')
      << std::string(depth, ']') << "}}";
  absl::StatusOr<ModelFiles> files = ModelFiles::Open(dir);
  EXPECT_EQ(files.status().code(), absl::StatusCode::kInvalidArgument)
      << files.status();
  EXPECT_NE(Message(files.status()).find("nested deeper than"),
            std::string::npos)
      << files.status();
}

TEST_F(ModelFilesTest, MissingConfigOrWeightsOrFolderIsNotFound) {
  const std::string dir = Dir("incomplete");
  ASSERT_TRUE(WriteModelFolder(dir, TinyConfig(), TinyTensors()).ok());
  fs::remove(dir + "/model.safetensors");
  absl::StatusOr<ModelFiles> no_weights = ModelFiles::Open(dir);
  EXPECT_EQ(no_weights.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(Message(no_weights.status()).find("model.safetensors"),
            std::string::npos);

  fs::remove(dir + "/config.json");
  absl::StatusOr<ModelFiles> no_config = ModelFiles::Open(dir);
  EXPECT_EQ(no_config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(Message(no_config.status()).find("config.json"), std::string::npos);

  EXPECT_EQ(ModelFiles::Open(Dir("absent")).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ModelFilesTest, InvalidConfigIsRejectedOnWriteAndOnOpen) {
  ModelConfig bad = TinyConfig();
  bad.num_key_value_heads = 3;
  EXPECT_EQ(WriteModelFolder(Dir("bad"), bad, TinyTensors()).code(),
            absl::StatusCode::kInvalidArgument);

  const std::string dir = Dir("bad_on_disk");
  ASSERT_TRUE(WriteModelFolder(dir, TinyConfig(), TinyTensors()).ok());
  std::ofstream(dir + "/config.json") << R"({"model_type": "gpt2"})";
  absl::StatusOr<ModelFiles> files = ModelFiles::Open(dir);
  EXPECT_EQ(files.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(Message(files.status()).find("gpt2"), std::string::npos);
}

TEST_F(ModelFilesTest, RewritingAFolderSwitchesLayoutCleanly) {
  const std::string dir = Dir("rewrite");
  ASSERT_TRUE(WriteModelFolder(dir, TinyConfig(), TinyTensors(), 4096).ok());
  std::vector<TensorToWrite> changed = TinyTensors();
  changed[0].values[0] = 42.0f;
  ASSERT_TRUE(WriteModelFolder(dir, TinyConfig(), changed).ok());
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors.index.json"));
  absl::StatusOr<ModelFiles> files = ModelFiles::Open(dir);
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_EQ((*files->LoadF32("model.embed_tokens.weight", {32, 64}))[0], 42.0f);

  ASSERT_TRUE(WriteModelFolder(dir, TinyConfig(), TinyTensors(), 4096).ok());
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors"));
  files = ModelFiles::Open(dir);
  ASSERT_TRUE(files.ok()) << files.status();
  ExpectFolderMatches(*files, TinyTensors());
}

TEST_F(ModelFilesTest, MovedModelFilesStillServesTensors) {
  const std::string dir = Dir("moved");
  ASSERT_TRUE(WriteModelFolder(dir, TinyConfig(), TinyTensors(), 4096).ok());
  absl::StatusOr<ModelFiles> files = ModelFiles::Open(dir);
  ASSERT_TRUE(files.ok()) << files.status();
  const uint64_t hash = files->ContentHash();
  ModelFiles moved = *std::move(files);
  EXPECT_EQ(moved.ContentHash(), hash);
  ExpectFolderMatches(moved, TinyTensors());
}

}  // namespace
}  // namespace blockserve::engine
