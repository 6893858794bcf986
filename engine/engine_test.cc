// Exactness of the Block-Attention operations against a naive reference forward pass
// (engine/reference_forward.h), for several model variants. fp32, random weights.
#include "engine/engine.h"

#include <cmath>
#include <filesystem>
#include <numeric>

#include <gtest/gtest.h>

#include "engine/generate.h"
#include "engine/model_files.h"
#include "engine/reference_forward.h"
#include "engine/tiny_model.h"

namespace blockserve::engine {
namespace {

constexpr float kTol = 1e-4f;

struct Variant {
  std::string name;
  TinyModelOptions options;
};

void PrintTo(const Variant& v, std::ostream* os) { *os << v.name; }

std::vector<Variant> Variants() {
  TinyModelOptions gqa;  // llama, 4 heads over 2 KV heads
  TinyModelOptions mha = gqa;
  mha.num_kv_heads = 4;
  TinyModelOptions qwen2 = gqa;
  qwen2.model_type = "qwen2";
  TinyModelOptions tied = gqa;
  tied.tie_word_embeddings = true;
  TinyModelOptions llama3 = gqa;
  llama3.rope_theta = 500000;
  llama3.rope_scaling = RopeScaling{RopeScalingType::kLlama3, 8, 1, 4, 64};
  TinyModelOptions linear = gqa;
  linear.rope_scaling = RopeScaling{RopeScalingType::kLinear, 4};
  TinyModelOptions bf16 = gqa;
  bf16.dtype = DType::kBF16;
  bf16.model_type = "mistral";
  TinyModelOptions attn_bias = gqa;  // llama: q/k/v and o_proj biases
  attn_bias.attention_bias = true;
  TinyModelOptions mlp_bias = gqa;
  mlp_bias.mlp_bias = true;
  // Windows shorter than the prompt (33 tokens) and than passages 0 and 1 (9, 13), so
  // block encoding, the query and decoding all cut keys off.
  TinyModelOptions mistral_window = gqa;
  mistral_window.model_type = "mistral";
  mistral_window.sliding_window = 8;
  TinyModelOptions qwen2_window = qwen2;  // layer 0 full, layer 1 windowed
  qwen2_window.sliding_window = 6;
  qwen2_window.windowed_layers = {false, true};
  // A pattern only layer_types can give (windowed layers first and between full ones).
  TinyModelOptions qwen2_alternating = qwen2;
  qwen2_alternating.num_layers = 4;
  qwen2_alternating.sliding_window = 6;
  qwen2_alternating.windowed_layers = {true, false, true, false};
  return {{"gqa", gqa},
          {"mha", mha},
          {"qwen2_bias", qwen2},
          {"tied", tied},
          {"llama3_rope", llama3},
          {"linear_rope", linear},
          {"mistral_bf16", bf16},
          {"llama_attention_bias", attn_bias},
          {"llama_mlp_bias", mlp_bias},
          {"mistral_sliding_window", mistral_window},
          {"qwen2_sliding_window", qwen2_window},
          {"qwen2_alternating_window", qwen2_alternating}};
}

float MaxAbsDiff(const float* a, const float* b, int64_t n) {
  float m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  return MaxAbsDiff(a.data(), b.data(), std::min(a.size(), b.size()));
}

class EngineExactnessTest : public testing::TestWithParam<Variant> {
 protected:
  void SetUp() override {
    dir_ = testing::TempDir() + "/engine_test_" + GetParam().name;
    ASSERT_TRUE(WriteTinyModel(dir_, GetParam().options).ok());
    absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Load(dir_);
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = *std::move(e);
    absl::StatusOr<ModelFiles> files = ModelFiles::Open(dir_);
    ASSERT_TRUE(files.ok()) << files.status();
    absl::StatusOr<ModelWeights> w = LoadWeights(*files);
    ASSERT_TRUE(w.ok()) << w.status();
    weights_ = *std::move(w);
    vocab_ = static_cast<int32_t>(weights_.config.vocab_size);
    passages_ = {TestTokens(9, 1, vocab_), TestTokens(13, 2, vocab_), TestTokens(6, 3, vocab_)};
    query_ = TestTokens(5, 4, vocab_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::vector<int32_t> Concat() const {
    std::vector<int32_t> all;
    for (const auto& p : passages_) all.insert(all.end(), p.begin(), p.end());
    all.insert(all.end(), query_.begin(), query_.end());
    return all;
  }
  std::vector<int64_t> Lengths() const {
    std::vector<int64_t> l;
    for (const auto& p : passages_) l.push_back(p.size());
    l.push_back(query_.size());
    return l;
  }

  std::string dir_;
  std::unique_ptr<Engine> engine_;
  ModelWeights weights_;
  int32_t vocab_ = 0;
  std::vector<std::vector<int32_t>> passages_;
  std::vector<int32_t> query_;
};

TEST_P(EngineExactnessTest, ShiftedBlockEqualsBlockComputedAtOffset) {
  const std::vector<int32_t>& b = passages_[1];
  const int64_t n = b.size(), offset = 37;
  absl::StatusOr<KvCache> kv = engine_->EncodeBlock(b);
  ASSERT_TRUE(kv.ok()) << kv.status();
  engine_->ShiftBlock(*kv, offset);
  ReferenceOutput ref = ReferenceForward(weights_, b, Iota(n, offset), BlockMask({n}));
  const int64_t row = kv->shape().row();
  for (int64_t l = 0; l < kv->shape().num_layers; ++l) {
    for (int64_t t = 0; t < n; ++t) {
      EXPECT_LE(MaxAbsDiff(kv->k(l) + t * row, ref.k[l][t].data(), row), kTol) << "K l" << l;
      EXPECT_LE(MaxAbsDiff(kv->v(l) + t * row, ref.v[l][t].data(), row), kTol) << "V l" << l;
    }
  }
}

TEST_P(EngineExactnessTest, OneBlockEqualsCausalSelfAttention) {
  const std::vector<int32_t> q = TestTokens(11, 5, vocab_);
  const int64_t n = q.size();
  ReferenceOutput ref = ReferenceForward(weights_, q, Iota(n), BlockMask({n}));
  for (AttentionMode mode : {AttentionMode::kBlock, AttentionMode::kFull}) {
    absl::StatusOr<PrefillResult> r = engine_->PrefillLast({}, q, {.mode = mode});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_LE(MaxAbsDiff(r->logits_last, ref.logits.back()), kTol);
  }
}

TEST_P(EngineExactnessTest, CachedShiftedBlocksEqualRecomputationUnderBlockMask) {
  std::vector<KvCache> cached;
  for (const auto& p : passages_) cached.push_back(*engine_->EncodeBlock(p));
  std::vector<BlockInput> blocks, uncached;
  for (size_t i = 0; i < passages_.size(); ++i) {
    blocks.push_back({passages_[i], &cached[i]});
    uncached.push_back({passages_[i], nullptr});
  }
  const std::vector<int32_t> all = Concat();
  ReferenceOutput ref = ReferenceForward(weights_, all, Iota(all.size()), BlockMask(Lengths()));

  absl::StatusOr<PrefillResult> hit = engine_->PrefillLast(blocks, query_);
  absl::StatusOr<PrefillResult> miss = engine_->PrefillLast(uncached, query_);
  ASSERT_TRUE(hit.ok()) << hit.status();
  ASSERT_TRUE(miss.ok()) << miss.status();
  EXPECT_LE(MaxAbsDiff(hit->logits_last, ref.logits.back()), kTol);
  EXPECT_LE(MaxAbsDiff(miss->logits_last, ref.logits.back()), kTol);
  // The whole sequence's KV, not only the logits, matches.
  const int64_t row = hit->cache.shape().row();
  for (int64_t l = 0; l < hit->cache.shape().num_layers; ++l) {
    for (size_t t = 0; t < all.size(); ++t) {
      EXPECT_LE(MaxAbsDiff(hit->cache.k(l) + t * row, ref.k[l][t].data(), row), kTol);
      EXPECT_LE(MaxAbsDiff(hit->cache.v(l) + t * row, ref.v[l][t].data(), row), kTol);
    }
  }
  // The cached blocks themselves were not modified by the request.
  KvCache fresh = *engine_->EncodeBlock(passages_[2]);
  EXPECT_EQ(MaxAbsDiff(fresh.k(0), cached[2].k(0), fresh.num_tokens() * row), 0.0f);
}

TEST_P(EngineExactnessTest, GlobalBlocksEqualFullAttentionOverThosePassagesAndQuery) {
  std::vector<KvCache> cached;
  std::vector<BlockInput> blocks;
  for (const auto& p : passages_) cached.push_back(*engine_->EncodeBlock(p));
  for (size_t i = 0; i < passages_.size(); ++i) blocks.push_back({passages_[i], &cached[i]});
  const std::vector<int32_t> all = Concat();
  const int64_t first_global = passages_[0].size();  // passages 1 and 2 are global
  auto mask = [local = BlockMask({first_global, 1}), first_global](int64_t i, int64_t j) {
    if (j > i) return false;
    return i >= first_global || local(i, j);
  };
  ReferenceOutput ref = ReferenceForward(weights_, all, Iota(all.size()), mask);
  absl::StatusOr<PrefillResult> r = engine_->PrefillLast(blocks, query_, {.global_blocks = 2});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_LE(MaxAbsDiff(r->logits_last, ref.logits.back()), kTol);

  // All passages global is exactly full attention.
  ReferenceOutput causal = ReferenceForward(weights_, all, Iota(all.size()), BlockMask({int64_t(all.size())}));
  absl::StatusOr<PrefillResult> g3 = engine_->PrefillLast(blocks, query_, {.global_blocks = 3});
  absl::StatusOr<PrefillResult> full = engine_->PrefillLast(blocks, query_, {.mode = AttentionMode::kFull});
  ASSERT_TRUE(g3.ok() && full.ok());
  EXPECT_LE(MaxAbsDiff(g3->logits_last, causal.logits.back()), kTol);
  EXPECT_LE(MaxAbsDiff(full->logits_last, causal.logits.back()), kTol);
}

TEST_P(EngineExactnessTest, WithoutReencodingBlocksKeepTheirOwnPositions) {
  std::vector<BlockInput> blocks;
  for (const auto& p : passages_) blocks.push_back({p, nullptr});
  const std::vector<int32_t> all = Concat();
  std::vector<int64_t> pos;
  for (const auto& p : passages_) {
    std::vector<int64_t> local = Iota(p.size());
    pos.insert(pos.end(), local.begin(), local.end());
  }
  std::vector<int64_t> q = Iota(query_.size(), all.size() - query_.size());
  pos.insert(pos.end(), q.begin(), q.end());
  ReferenceOutput ref = ReferenceForward(weights_, all, pos, BlockMask(Lengths()));
  absl::StatusOr<PrefillResult> r = engine_->PrefillLast(blocks, query_, {.reencode_positions = false});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_LE(MaxAbsDiff(r->logits_last, ref.logits.back()), kTol);
}

TEST_P(EngineExactnessTest, DecodeStepsContinueTheSequenceAndBatchExactly) {
  std::vector<BlockInput> blocks;
  for (const auto& p : passages_) blocks.push_back({p, nullptr});
  absl::StatusOr<PrefillResult> a = engine_->PrefillLast(blocks, query_);
  absl::StatusOr<PrefillResult> b = engine_->PrefillLast({}, query_);
  ASSERT_TRUE(a.ok() && b.ok());
  const int32_t next = 3;
  absl::StatusOr<std::vector<std::vector<float>>> batched = engine_->DecodeStep(
      {{&a->cache, next, a->next_position}, {&b->cache, next, b->next_position}});
  ASSERT_TRUE(batched.ok()) << batched.status();

  std::vector<int32_t> all = Concat();
  all.push_back(next);
  std::vector<int64_t> lengths = Lengths();
  lengths.back() += 1;  // the decoded token belongs to the last block: it sees everything
  ReferenceOutput ref = ReferenceForward(weights_, all, Iota(all.size()), BlockMask(lengths));
  EXPECT_LE(MaxAbsDiff((*batched)[0], ref.logits.back()), kTol);

  std::vector<int32_t> qn = query_;
  qn.push_back(next);
  ReferenceOutput ref_b = ReferenceForward(weights_, qn, Iota(qn.size()), BlockMask({int64_t(qn.size())}));
  EXPECT_LE(MaxAbsDiff((*batched)[1], ref_b.logits.back()), kTol);
}

// The tests above would catch a missing feature: dropping the variant's biases or its
// window moves the reference logits far beyond kTol on these prompts.
TEST_P(EngineExactnessTest, TheVariantsFeaturesMatterForTheseTests) {
  ModelWeights plain = weights_;
  bool stripped = false;
  if (plain.config.o_proj_bias() || plain.config.mlp_bias) {
    for (LayerWeights& l : plain.layers) {
      stripped |= !l.bo.empty() || !l.b_down.empty();
      l.bo.clear();
      l.b_gate.clear();
      l.b_up.clear();
      l.b_down.clear();
    }
  }
  if (plain.config.sliding_window.has_value()) {
    plain.config.sliding_window.reset();
    plain.config.windowed_layers.clear();
    stripped = true;
  }
  if (!stripped) GTEST_SKIP() << "no o_proj/MLP bias or window in this variant";
  const std::vector<int32_t> all = Concat();
  for (const auto& mask : {BlockMask({int64_t(all.size())}), BlockMask(Lengths())}) {
    ReferenceOutput with = ReferenceForward(weights_, all, Iota(all.size()), mask);
    ReferenceOutput without = ReferenceForward(plain, all, Iota(all.size()), mask);
    EXPECT_GT(MaxAbsDiff(with.logits.back(), without.logits.back()), 100 * kTol);
  }
}

// Which layers slide matters too: the same weights with the complementary layer
// pattern, or with every layer windowed, move the reference logits far beyond kTol, so
// the tests above would catch a backend that windows the wrong layers.
TEST_P(EngineExactnessTest, TheVariantsLayerPatternMattersForTheseTests) {
  const ModelConfig& c = weights_.config;
  if (c.windowed_layers.empty()) GTEST_SKIP() << "no per-layer pattern in this variant";
  ModelWeights flipped = weights_, every = weights_;
  flipped.config.windowed_layers.flip();
  every.config.windowed_layers.clear();
  ASSERT_TRUE(flipped.config.Validate().ok());
  ASSERT_TRUE(every.config.Validate().ok());
  const std::vector<int32_t> all = Concat();
  for (const auto& mask : {BlockMask({int64_t(all.size())}), BlockMask(Lengths())}) {
    ReferenceOutput with = ReferenceForward(weights_, all, Iota(all.size()), mask);
    for (const ModelWeights* other : {&flipped, &every}) {
      ReferenceOutput without = ReferenceForward(*other, all, Iota(all.size()), mask);
      EXPECT_GT(MaxAbsDiff(with.logits.back(), without.logits.back()), 100 * kTol);
    }
  }
}

// Sliding window over a prompt that spans several of the CPU kernel's key tiles (64
// keys), with cached passages longer than the window, in both modes and for decoding.
TEST(SlidingWindowTest, LongPromptAcrossKeyTilesMatchesTheReference) {
  TinyModelOptions o;
  o.model_type = "mistral";
  o.sliding_window = 40;
  o.num_layers = 2;
  const std::string dir = testing::TempDir() + "/engine_test_long_window";
  ASSERT_TRUE(WriteTinyModel(dir, o).ok());
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Load(dir);
  ASSERT_TRUE(engine.ok()) << engine.status();
  absl::StatusOr<ModelWeights> w = LoadModelWeights(dir);
  ASSERT_TRUE(w.ok()) << w.status();
  const std::vector<std::vector<int32_t>> prompt = TestBlocks({70, 90, 30}, w->config.vocab_size);
  const std::vector<int32_t> &p1 = prompt[0], &p2 = prompt[1], &q = prompt[2];
  std::vector<int32_t> all = JoinBlocks(prompt);
  KvCache c1 = *(*engine)->EncodeBlock(p1), c2 = *(*engine)->EncodeBlock(p2);
  std::vector<BlockInput> blocks = {{p1, &c1}, {p2, &c2}};

  absl::StatusOr<PrefillResult> block = (*engine)->PrefillLast(blocks, q);
  absl::StatusOr<PrefillResult> full = (*engine)->PrefillLast(blocks, q, {.mode = AttentionMode::kFull});
  ASSERT_TRUE(block.ok() && full.ok());
  ReferenceOutput ref_block = ReferenceForward(*w, all, Iota(all.size()), BlockMask({70, 90, 30}));
  ReferenceOutput ref_full = ReferenceForward(*w, all, Iota(all.size()), BlockMask({int64_t(all.size())}));
  EXPECT_LE(MaxAbsDiff(block->logits_last, ref_block.logits.back()), kTol);
  EXPECT_LE(MaxAbsDiff(full->logits_last, ref_full.logits.back()), kTol);
  // Two layers of a 40-key window reach 2 * 39 tokens back from the last query token,
  // which stays inside passage 2 (90 tokens): what passage 1 is, and whether passage 2
  // was encoded alone, cannot matter, so block and full mode agree. Without the window
  // they differ by far more.
  EXPECT_LE(MaxAbsDiff(block->logits_last, full->logits_last), kTol);
  ModelWeights unwindowed = *w;
  unwindowed.config.sliding_window.reset();
  const int64_t n = all.size();
  EXPECT_GT(MaxAbsDiff(ReferenceForward(unwindowed, all, Iota(n), BlockMask({70, 90, 30})).logits.back(),
                       ReferenceForward(unwindowed, all, Iota(n), BlockMask({n})).logits.back()),
            100 * kTol);

  const int32_t next = 5;
  absl::StatusOr<std::vector<std::vector<float>>> step =
      (*engine)->DecodeStep({{&block->cache, next, block->next_position}});
  ASSERT_TRUE(step.ok()) << step.status();
  all.push_back(next);
  ReferenceOutput ref_step = ReferenceForward(*w, all, Iota(all.size()), BlockMask({70, 90, 31}));
  EXPECT_LE(MaxAbsDiff((*step)[0], ref_step.logits.back()), kTol);
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Variants, EngineExactnessTest, testing::ValuesIn(Variants()),
                         [](const auto& info) { return info.param.name; });

class EngineTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(testing::TempDir() + "/engine_test_plain");
    ASSERT_TRUE(WriteTinyModel(*dir_, TinyModelOptions{}).ok());
    engine_ = Engine::Load(*dir_)->release();
  }
  static void TearDownTestSuite() {
    delete engine_;
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }
  static std::string* dir_;
  static Engine* engine_;
};
std::string* EngineTest::dir_ = nullptr;
Engine* EngineTest::engine_ = nullptr;

TEST_F(EngineTest, StatsCountReusedAndComputedTokensAndFlops) {
  const std::vector<int32_t> p1 = TestTokens(20, 1, 100), p2 = TestTokens(30, 2, 100), q = TestTokens(5, 3, 100);
  KvCache c1 = *engine_->EncodeBlock(p1);
  std::vector<BlockInput> blocks = {{p1, &c1}, {p2, nullptr}};
  absl::StatusOr<PrefillResult> r = engine_->PrefillLast(blocks, q);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stats.tokens_reused, 20);
  EXPECT_EQ(r->stats.tokens_computed, 35);
  EXPECT_GT(r->stats.flops_to_first_token, 0);
  EXPECT_LT(r->stats.flops_to_first_token, r->stats.flops_full_prefill);
  absl::StatusOr<PrefillResult> full = engine_->PrefillLast(blocks, q, {.mode = AttentionMode::kFull});
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(full->stats.tokens_computed, 55);
  EXPECT_EQ(full->stats.tokens_reused, 0);
  EXPECT_DOUBLE_EQ(full->stats.flops_to_first_token, full->stats.flops_full_prefill);
}

TEST_F(EngineTest, BadRequestsAreRejectedWithInvalidArgument) {
  const std::vector<int32_t> p = TestTokens(8, 1, 100), q = TestTokens(4, 2, 100);
  KvCache c = *engine_->EncodeBlock(p);
  std::vector<BlockInput> one = {{p, &c}};
  EXPECT_EQ(engine_->PrefillLast(one, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->PrefillLast(one, q, {.global_blocks = 2}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->PrefillLast(one, q, {.global_blocks = -1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<BlockInput> mismatched = {{q, &c}};  // cache of p offered for q's tokens
  EXPECT_EQ(engine_->PrefillLast(mismatched, q).status().code(), absl::StatusCode::kInvalidArgument);
  const std::vector<int32_t> out_of_vocab = {1, 2, 1 << 20};
  EXPECT_EQ(engine_->PrefillLast({}, out_of_vocab).status().code(), absl::StatusCode::kInvalidArgument);
  const std::vector<int32_t> too_long(engine_->config().max_position_embeddings + 1, 1);
  absl::Status s = engine_->PrefillLast({}, too_long).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("exceeds the model's context"), std::string::npos) << s;
  EXPECT_EQ(engine_->EncodeBlock({}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(EngineTest, GenerateIsReproducibleAndStopsAtMaxTokens) {
  const std::vector<int32_t> p = engine_->tokenizer().Encode("The capital of France is Paris.");
  const std::vector<int32_t> q = engine_->tokenizer().Encode("What is the capital of France?");
  std::vector<BlockInput> blocks = {{p, nullptr}};
  StopRules stop{.max_new_tokens = 6, .ignore_eos = true};
  SamplingParams sampling{.temperature = 0.8, .top_p = 0.95, .seed = 11};
  absl::StatusOr<Generation> a = Generate(*engine_, blocks, q, {}, sampling, stop);
  absl::StatusOr<Generation> b = Generate(*engine_, blocks, q, {}, sampling, stop);
  ASSERT_TRUE(a.ok() && b.ok()) << a.status();
  EXPECT_EQ(a->tokens.size(), 6u);
  EXPECT_EQ(a->tokens, b->tokens);
  EXPECT_EQ(a->finish, FinishReason::kLength);
  EXPECT_EQ(a->text, *engine_->tokenizer().Decode(a->tokens, true));
}

TEST_F(EngineTest, GenerateCutsTheTextAtAStopString) {
  const std::vector<int32_t> q = engine_->tokenizer().Encode("Who wrote the report?");
  StopRules stop{.max_new_tokens = 20, .ignore_eos = true};
  absl::StatusOr<Generation> free_run = Generate(*engine_, {}, q, {}, {}, stop);
  ASSERT_TRUE(free_run.ok()) << free_run.status();
  ASSERT_GE(free_run->text.size(), 3u);
  // Stop on the text of a generated token (the first from the third on that decodes
  // to some text): generation must end there, with the stop string cut off.
  std::string stop_at;
  for (size_t i = 2; i < free_run->tokens.size() && stop_at.empty(); ++i) {
    stop_at = *engine_->tokenizer().Decode({free_run->tokens[i]}, true);
  }
  ASSERT_FALSE(stop_at.empty()) << "no generated token decodes to text";
  stop.stop_strings = {stop_at};
  absl::StatusOr<Generation> cut = Generate(*engine_, {}, q, {}, {}, stop);
  ASSERT_TRUE(cut.ok());
  EXPECT_EQ(cut->finish, FinishReason::kStop);
  EXPECT_EQ(cut->text.find(stop_at), std::string::npos);
  EXPECT_LT(cut->tokens.size(), free_run->tokens.size());
}

TEST_F(EngineTest, GenerateRejectsBadSamplingAndLimits) {
  const std::vector<int32_t> q = {1, 2, 3};
  EXPECT_EQ(Generate(*engine_, {}, q, {}, {.temperature = -1}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Generate(*engine_, {}, q, {}, {}, {.max_new_tokens = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace blockserve::engine
