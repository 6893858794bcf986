// Loading model folders end to end: every supported layout loads to the same model,
// and malformed folders give errors that say what is wrong, never crashes.
#include <filesystem>
#include <fstream>
#include <functional>

#include <gtest/gtest.h>

#include "engine/bpe_trainer.h"
#include "engine/engine.h"
#include "engine/tiny_model.h"

namespace blockserve::engine {
namespace {

namespace fs = std::filesystem;

class ModelLoadingTest : public testing::Test {
 protected:
  void SetUp() override {
    root_ = testing::TempDir() + "/model_loading_test";
    fs::remove_all(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string Write(const std::string& name, TinyModelOptions o = {}) {
    const std::string dir = root_ + "/" + name;
    absl::Status s = WriteTinyModel(dir, o);
    EXPECT_TRUE(s.ok()) << s;
    return dir;
  }
  static std::vector<float> LastLogits(const std::string& dir) {
    absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Load(dir);
    EXPECT_TRUE(e.ok()) << e.status();
    if (!e.ok()) return {};
    const std::vector<int32_t> q = {5, 17, 42, 99};
    return (*e)->PrefillLast({}, q)->logits_last;
  }
  static void WriteText(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  }
  std::string root_;
};

TEST_F(ModelLoadingTest, ShardedFolderLoadsTheSameModelAsSingleFile) {
  TinyModelOptions sharded;
  sharded.max_shard_bytes = 40000;
  const std::string one = Write("single"), many = Write("sharded", sharded);
  EXPECT_TRUE(fs::exists(many + "/model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(many + "/model.safetensors"));
  EXPECT_EQ(LastLogits(one), LastLogits(many));
}

TEST_F(ModelLoadingTest, HalfPrecisionWeightsLoadAndRunInFp32) {
  for (DType d : {DType::kF16, DType::kBF16}) {
    TinyModelOptions o;
    o.dtype = d;
    std::vector<float> logits = LastLogits(Write(std::string(DTypeName(d)), o));
    ASSERT_FALSE(logits.empty());
    for (float x : logits) ASSERT_TRUE(std::isfinite(x));
  }
}

TEST_F(ModelLoadingTest, FingerprintDependsOnWeightsAndConfigButNotOnSharding) {
  TinyModelOptions sharded, other_seed, other_theta;
  sharded.max_shard_bytes = 40000;
  other_seed.seed = 2;
  other_theta.rope_theta = 20000;
  auto fingerprint = [](const std::string& dir) { return (*Engine::Load(dir))->model_fingerprint(); };
  const uint64_t base = fingerprint(Write("fp_base"));
  EXPECT_EQ(fingerprint(Write("fp_sharded", sharded)), base);
  EXPECT_NE(fingerprint(Write("fp_seed", other_seed)), base);
  EXPECT_NE(fingerprint(Write("fp_theta", other_theta)), base);
}

TEST_F(ModelLoadingTest, MissingFolderOrConfigIsAnError) {
  EXPECT_FALSE(Engine::Load(root_ + "/nowhere").ok());
  const std::string dir = Write("no_config");
  fs::remove(dir + "/config.json");
  EXPECT_FALSE(Engine::Load(dir).ok());
}

TEST_F(ModelLoadingTest, WrongTensorShapeNamesTheTensor) {
  const std::string dir = Write("wrong_shape");
  // Claim a larger hidden size than the weights have.
  absl::StatusOr<ModelConfig> c = ModelConfig::FromFile(dir + "/config.json");
  ASSERT_TRUE(c.ok());
  c->intermediate_size = 96;
  WriteText(dir + "/config.json", c->ToJson());
  absl::Status s = Engine::Load(dir).status();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("mlp.gate_proj.weight"), std::string::npos) << s;
}

TEST_F(ModelLoadingTest, ABiasTheConfigImpliesButTheWeightsLackIsNamed) {
  // A qwen2 folder has q/k/v biases but no o_proj bias; declared as a llama with
  // attention_bias, it needs self_attn.o_proj.bias too. Likewise a plain llama
  // declared with mlp_bias. Neither may load with the missing bias taken as zero.
  TinyModelOptions qwen2;
  qwen2.model_type = "qwen2";
  struct Case {
    std::string name;
    TinyModelOptions options;
    std::function<void(ModelConfig&)> edit;
    std::string tensor, reason;
  };
  const std::vector<Case> cases = {
      {"llama_attention_bias", qwen2, [](ModelConfig& c) { c.model_type = "llama"; },
       "model.layers.0.self_attn.o_proj.bias", "attention_bias is true"},
      {"llama_mlp_bias", {}, [](ModelConfig& c) { c.mlp_bias = true; },
       "model.layers.0.mlp.gate_proj.bias", "mlp_bias is true"},
  };
  for (const Case& k : cases) {
    const std::string dir = Write(k.name, k.options);
    absl::StatusOr<ModelConfig> c = ModelConfig::FromFile(dir + "/config.json");
    ASSERT_TRUE(c.ok()) << c.status();
    k.edit(*c);
    ASSERT_TRUE(c->Validate().ok());
    WriteText(dir + "/config.json", c->ToJson());
    absl::Status s = Engine::Load(dir).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
    EXPECT_NE(s.message().find(k.tensor), std::string::npos) << s;
    EXPECT_NE(s.message().find(k.reason), std::string::npos) << s;
  }
}

TEST_F(ModelLoadingTest, MissingLmHeadWithoutTiedEmbeddingsIsAnError) {
  TinyModelOptions tied;
  tied.tie_word_embeddings = true;
  const std::string dir = Write("untied_without_head", tied);
  absl::StatusOr<ModelConfig> c = ModelConfig::FromFile(dir + "/config.json");
  ASSERT_TRUE(c.ok());
  c->tie_word_embeddings = false;
  WriteText(dir + "/config.json", c->ToJson());
  absl::Status s = Engine::Load(dir).status();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("lm_head.weight"), std::string::npos) << s;
}

TEST_F(ModelLoadingTest, TruncatedWeightsFileIsAnError) {
  const std::string dir = Write("truncated");
  const std::string file = dir + "/model.safetensors";
  fs::resize_file(file, fs::file_size(file) / 2);
  EXPECT_FALSE(Engine::Load(dir).ok());
}

TEST_F(ModelLoadingTest, MalformedOrMissingTokenizerIsAnError) {
  const std::string dir = Write("bad_tokenizer");
  WriteText(dir + "/tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": [");
  EXPECT_FALSE(Engine::Load(dir).ok());
  fs::remove(dir + "/tokenizer.json");
  EXPECT_FALSE(Engine::Load(dir).ok());
}

TEST_F(ModelLoadingTest, TokenizerLargerThanTheModelVocabIsAnError) {
  TinyModelOptions few_merges;
  few_merges.num_merges = 50;
  const std::string dir = Write("small_vocab", few_merges);
  absl::StatusOr<std::string> bigger =
      TrainByteLevelBpeJson(TinyTokenizerCorpus(), 300, {"<|begin_of_text|>", "<|end_of_text|>"});
  ASSERT_TRUE(bigger.ok());
  WriteText(dir + "/tokenizer.json", *bigger);
  absl::Status s = Engine::Load(dir).status();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("vocab_size"), std::string::npos) << s;
}

TEST_F(ModelLoadingTest, LoadBuildsTheBackendWithTheGivenFactory) {
  const std::string dir = Write("factory");
  int calls = 0, threads_seen = -1;
  int64_t vocab_seen = 0;
  auto counting = [&](ModelWeights weights, const EngineOptions& options) {
    ++calls;
    threads_seen = options.num_threads;
    vocab_seen = weights.config.vocab_size;
    return CpuBackendFactory(std::move(weights), options);
  };
  absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Load(dir, {.num_threads = 1}, counting);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(threads_seen, 1);
  EXPECT_EQ(vocab_seen, (*e)->config().vocab_size);
  const std::vector<int32_t> q = {5, 17, 42};
  absl::StatusOr<PrefillResult> r = (*e)->PrefillLast({}, q);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->logits_last.size(), static_cast<size_t>(vocab_seen));
}

TEST_F(ModelLoadingTest, AFactoryErrorIsLoadsErrorAndABadFolderNeverReachesTheFactory) {
  int calls = 0;
  auto failing = [&calls](ModelWeights, const EngineOptions&)
      -> absl::StatusOr<std::unique_ptr<Backend>> {
    ++calls;
    return absl::FailedPreconditionError("no device here");
  };
  absl::Status s = Engine::Load(Write("factory_fails"), {}, failing).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(s.message(), "no device here");
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(Engine::Load(root_ + "/nowhere", {}, failing).ok());
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace blockserve::engine
