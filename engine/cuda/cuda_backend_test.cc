// The engine's exactness checks (engine/engine_test.cc) with the CUDA backend, on tiny
// random-weight models, plus direct comparisons of the CUDA and CPU backends.
//
// Tolerances (chosen from the arithmetic, NEVER MEASURED: no GPU was available when
// this was written). The CUDA backend stores weights and GEMM operands in bf16 (8
// significant bits: 2^-9 relative rounding), so against the fp32 reference its logits
// and KV carry bf16 noise through two layers. kBf16Tol allows 3% of the tensor's scale;
// the bugs these tests exist to catch (a wrong position, mask, head mapping, missing
// bias or a stale cache row) move values by O(1). Where both sides run the same
// precision, tighter bounds apply: the shift itself is fp32 (kShiftTol), and batching
// must not change a sequence's result beyond fp32 summation order (kBatchTol).
// Tagged manual+gpu: run by scripts/gpu_test.sh only. The sliding-window cases
// (mistral_sliding_window, qwen2_alternating_window, CudaSlidingWindowTest) were
// compiled and linked only, never run: no GPU was available.
#include "engine/cuda/cuda_backend.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <numeric>

#include "engine/cuda/cuda_util.h"
#include "engine/model_files.h"
#include "engine/reference_forward.h"
#include "engine/tiny_model.h"

namespace blockserve::engine {
namespace {

constexpr float kBf16Rel = 0.03f;
constexpr float kShiftTol = 1e-5f;
constexpr float kBatchTol = 1e-3f;

float MaxAbs(const float* a, int64_t n) {
  float m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::abs(a[i]));
  return m;
}

float MaxAbsDiff(const float* a, const float* b, int64_t n) {
  float m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

// |got - want| within kBf16Rel of want's scale.
void ExpectBf16Close(const float* got, const float* want, int64_t n, const std::string& what) {
  const float tol = kBf16Rel * (1.0f + MaxAbs(want, n));
  EXPECT_LE(MaxAbsDiff(got, want, n), tol) << what;
}

void ExpectBf16Close(const std::vector<float>& got, const std::vector<float>& want,
                     const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  ExpectBf16Close(got.data(), want.data(), got.size(), what);
}

// Every layer's K and V rows of `cache` against the reference's.
void ExpectKvBf16Close(const KvCache& cache, const ReferenceOutput& ref, const std::string& what) {
  const int64_t row = cache.shape().row();
  for (int64_t l = 0; l < cache.shape().num_layers; ++l) {
    for (int64_t t = 0; t < cache.num_tokens(); ++t) {
      ExpectBf16Close(cache.k(l) + t * row, ref.k[l][t].data(), row, what + " K");
      ExpectBf16Close(cache.v(l) + t * row, ref.v[l][t].data(), row, what + " V");
    }
  }
}

struct Variant {
  std::string name;
  TinyModelOptions options;
};

void PrintTo(const Variant& v, std::ostream* os) { *os << v.name; }

std::vector<Variant> Variants() {
  TinyModelOptions gqa;
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
  TinyModelOptions wide = gqa;  // head_dim 128, the common real size
  wide.hidden_size = 256;
  wide.num_heads = 2;
  wide.num_kv_heads = 1;
  TinyModelOptions biases = gqa;  // llama: q/k/v + o_proj biases, and MLP biases
  biases.attention_bias = true;
  biases.mlp_bias = true;
  // Windows shorter than the prompts below (11 and 33 tokens) and than passages 0 and 1
  // (9, 13), so full prefill, block encoding, the query and decoding all cut keys off;
  // the same variants as engine_test.cc's.
  TinyModelOptions mistral_window = gqa;
  mistral_window.model_type = "mistral";
  mistral_window.sliding_window = 8;
  TinyModelOptions qwen2_alternating = qwen2;  // windowed, full, windowed, full
  qwen2_alternating.num_layers = 4;
  qwen2_alternating.sliding_window = 6;
  qwen2_alternating.windowed_layers = {true, false, true, false};
  return {{"gqa", gqa},   {"mha", mha},       {"qwen2_bias", qwen2},   {"tied", tied},
          {"llama3_rope", llama3}, {"linear_rope", linear}, {"mistral_bf16", bf16},
          {"head_dim_128", wide}, {"llama_all_biases", biases},
          {"mistral_sliding_window", mistral_window},
          {"qwen2_alternating_window", qwen2_alternating}};
}

class CudaEngineTest : public testing::TestWithParam<Variant> {
 protected:
  void SetUp() override {
    ASSERT_GT(cuda::CudaDeviceCount(), 0) << "this test needs a CUDA GPU";
    dir_ = testing::TempDir() + "/cuda_backend_test_" + GetParam().name;
    ASSERT_TRUE(WriteTinyModel(dir_, GetParam().options).ok());
    absl::StatusOr<std::unique_ptr<Engine>> e = LoadCudaEngine(dir_);
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = *std::move(e);
    ASSERT_EQ(engine_->config().model_type, GetParam().options.model_type);
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
  std::unique_ptr<Backend> NewCudaBackend() {
    absl::StatusOr<std::unique_ptr<Backend>> b = CreateCudaBackend(weights_);
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? *std::move(b) : nullptr;
  }

  std::string dir_;
  std::unique_ptr<Engine> engine_;
  ModelWeights weights_;
  int32_t vocab_ = 0;
  std::vector<std::vector<int32_t>> passages_;
  std::vector<int32_t> query_;
};

TEST_P(CudaEngineTest, ShiftedBlockEqualsBlockComputedAtOffset) {
  const std::vector<int32_t>& b = passages_[1];
  const int64_t n = b.size(), offset = 37;
  absl::StatusOr<KvCache> kv = engine_->EncodeBlock(b);
  ASSERT_TRUE(kv.ok()) << kv.status();
  engine_->ShiftBlock(*kv, offset);
  ReferenceOutput ref = ReferenceForward(weights_, b, Iota(n, offset), BlockMask({n}));
  ExpectKvBf16Close(*kv, ref, "shifted block");
  const int64_t row = kv->shape().row();
  // The same on the GPU alone: encoding directly at the offset.
  std::unique_ptr<Backend> backend = NewCudaBackend();
  ASSERT_NE(backend, nullptr);
  KvCache direct(kv->shape());
  std::vector<std::vector<float>> logits;
  ASSERT_TRUE(backend->Forward({{b, offset, &direct, false}}, &logits).ok());
  for (int64_t l = 0; l < kv->shape().num_layers; ++l) {
    ExpectBf16Close(kv->k(l), direct.k(l), n * row, "shifted vs direct K");
  }
}

TEST_P(CudaEngineTest, ShiftKeysOnTheGpuEqualsTheCpuRotation) {
  absl::StatusOr<KvCache> kv = engine_->EncodeBlock(passages_[1]);
  ASSERT_TRUE(kv.ok()) << kv.status();
  KvCache cpu = *kv;
  std::unique_ptr<Backend> gpu = NewCudaBackend();
  ASSERT_NE(gpu, nullptr);
  gpu->ShiftKeys(*kv, 2, 8, 1234);
  std::unique_ptr<Backend> host = CreateCpuBackend(weights_);
  host->ShiftKeys(cpu, 2, 8, 1234);
  const int64_t n = kv->num_tokens() * kv->shape().row();
  for (int64_t l = 0; l < kv->shape().num_layers; ++l) {
    EXPECT_LE(MaxAbsDiff(kv->k(l), cpu.k(l), n), kShiftTol) << "layer " << l;
    EXPECT_EQ(MaxAbsDiff(kv->v(l), cpu.v(l), n), 0.0f) << "values must not move";
  }
}

TEST_P(CudaEngineTest, OneBlockEqualsCausalSelfAttention) {
  const std::vector<int32_t> q = TestTokens(11, 5, vocab_);
  const int64_t n = q.size();
  ReferenceOutput ref = ReferenceForward(weights_, q, Iota(n), BlockMask({n}));
  for (AttentionMode mode : {AttentionMode::kBlock, AttentionMode::kFull}) {
    absl::StatusOr<PrefillResult> r = engine_->PrefillLast({}, q, {.mode = mode});
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectBf16Close(r->logits_last, ref.logits.back(), "logits");
  }
}

TEST_P(CudaEngineTest, CachedShiftedBlocksEqualRecomputationUnderBlockMask) {
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
  ExpectBf16Close(hit->logits_last, ref.logits.back(), "hit logits");
  ExpectBf16Close(miss->logits_last, ref.logits.back(), "miss logits");
  ASSERT_EQ(hit->cache.num_tokens(), static_cast<int64_t>(all.size()));
  ExpectKvBf16Close(hit->cache, ref, "sequence");
}

TEST_P(CudaEngineTest, GlobalBlocksEqualFullAttentionOverThosePassagesAndQuery) {
  std::vector<KvCache> cached;
  std::vector<BlockInput> blocks;
  for (const auto& p : passages_) cached.push_back(*engine_->EncodeBlock(p));
  for (size_t i = 0; i < passages_.size(); ++i) blocks.push_back({passages_[i], &cached[i]});
  const std::vector<int32_t> all = Concat();
  const int64_t first_global = passages_[0].size();
  auto mask = [local = BlockMask({first_global, 1}), first_global](int64_t i, int64_t j) {
    if (j > i) return false;
    return i >= first_global || local(i, j);
  };
  ReferenceOutput ref = ReferenceForward(weights_, all, Iota(all.size()), mask);
  absl::StatusOr<PrefillResult> r = engine_->PrefillLast(blocks, query_, {.global_blocks = 2});
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectBf16Close(r->logits_last, ref.logits.back(), "global_blocks = 2");
  ReferenceOutput causal =
      ReferenceForward(weights_, all, Iota(all.size()), BlockMask({int64_t(all.size())}));
  absl::StatusOr<PrefillResult> full =
      engine_->PrefillLast(blocks, query_, {.mode = AttentionMode::kFull});
  ASSERT_TRUE(full.ok()) << full.status();
  ExpectBf16Close(full->logits_last, causal.logits.back(), "full");
}

TEST_P(CudaEngineTest, BatchedDecodeEqualsTheReferenceAndUnbatchedSteps) {
  std::vector<BlockInput> blocks;
  for (const auto& p : passages_) blocks.push_back({p, nullptr});
  absl::StatusOr<PrefillResult> a = engine_->PrefillLast(blocks, query_);
  absl::StatusOr<PrefillResult> b = engine_->PrefillLast({}, query_);
  ASSERT_TRUE(a.ok() && b.ok());
  KvCache a1 = a->cache, b1 = b->cache;  // for the one-at-a-time steps
  const int32_t next = 3;
  absl::StatusOr<std::vector<std::vector<float>>> batched = engine_->DecodeStep(
      {{&a->cache, next, a->next_position}, {&b->cache, next, b->next_position}});
  ASSERT_TRUE(batched.ok()) << batched.status();

  std::vector<int32_t> all = Concat();
  all.push_back(next);
  std::vector<int64_t> lengths = Lengths();
  lengths.back() += 1;
  ReferenceOutput ref = ReferenceForward(weights_, all, Iota(all.size()), BlockMask(lengths));
  ExpectBf16Close((*batched)[0], ref.logits.back(), "sequence a");
  std::vector<int32_t> qn = query_;
  qn.push_back(next);
  ReferenceOutput ref_b =
      ReferenceForward(weights_, qn, Iota(qn.size()), BlockMask({int64_t(qn.size())}));
  ExpectBf16Close((*batched)[1], ref_b.logits.back(), "sequence b");

  absl::StatusOr<std::vector<std::vector<float>>> alone_a =
      engine_->DecodeStep({{&a1, next, a->next_position}});
  absl::StatusOr<std::vector<std::vector<float>>> alone_b =
      engine_->DecodeStep({{&b1, next, b->next_position}});
  ASSERT_TRUE(alone_a.ok() && alone_b.ok());
  EXPECT_LE(MaxAbsDiff((*batched)[0].data(), (*alone_a)[0].data(), vocab_), kBatchTol);
  EXPECT_LE(MaxAbsDiff((*batched)[1].data(), (*alone_b)[0].data(), vocab_), kBatchTol);
}

INSTANTIATE_TEST_SUITE_P(Variants, CudaEngineTest, testing::ValuesIn(Variants()),
                         [](const auto& info) { return info.param.name; });

// A window of 40 keys over prompts spanning several of the kernel's 32-key tiles, with
// cached passages longer than the window: the CUDA engine against the reference and
// against the CPU engine, in block and full mode and for a decode step.
TEST(CudaSlidingWindowTest, LongPromptAcrossKeyTilesMatchesTheReferenceAndTheCpuEngine) {
  ASSERT_GT(cuda::CudaDeviceCount(), 0) << "this test needs a CUDA GPU";
  TinyModelOptions o;
  o.model_type = "mistral";
  o.sliding_window = 40;
  const std::string dir = testing::TempDir() + "/cuda_backend_test_long_window";
  ASSERT_TRUE(WriteTinyModel(dir, o).ok());
  absl::StatusOr<std::unique_ptr<Engine>> gpu = LoadCudaEngine(dir);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  absl::StatusOr<std::unique_ptr<Engine>> cpu = Engine::Load(dir);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  absl::StatusOr<ModelWeights> w = LoadModelWeights(dir);
  ASSERT_TRUE(w.ok()) << w.status();
  const std::vector<std::vector<int32_t>> prompt = TestBlocks({70, 90, 30}, w->config.vocab_size);
  const std::vector<int32_t> &p1 = prompt[0], &p2 = prompt[1], &q = prompt[2];
  std::vector<int32_t> all = JoinBlocks(prompt);
  const int64_t n = all.size();
  const ReferenceOutput ref_block = ReferenceForward(*w, all, Iota(n), BlockMask({70, 90, 30}));
  const ReferenceOutput ref_full = ReferenceForward(*w, all, Iota(n), BlockMask({n}));

  KvCache c1 = *(*gpu)->EncodeBlock(p1), c2 = *(*gpu)->EncodeBlock(p2);
  std::vector<BlockInput> blocks = {{p1, &c1}, {p2, &c2}};
  absl::StatusOr<PrefillResult> block = (*gpu)->PrefillLast(blocks, q);
  absl::StatusOr<PrefillResult> full =
      (*gpu)->PrefillLast(blocks, q, {.mode = AttentionMode::kFull});
  ASSERT_TRUE(block.ok()) << block.status();
  ASSERT_TRUE(full.ok()) << full.status();
  ExpectBf16Close(block->logits_last, ref_block.logits.back(), "block mode");
  ExpectBf16Close(full->logits_last, ref_full.logits.back(), "full mode");
  ASSERT_EQ(block->cache.num_tokens(), n);
  ExpectKvBf16Close(block->cache, ref_block, "block mode");
  const std::vector<BlockInput> uncached = {{p1, nullptr}, {p2, nullptr}};
  absl::StatusOr<PrefillResult> cpu_full =
      (*cpu)->PrefillLast(uncached, q, {.mode = AttentionMode::kFull});
  ASSERT_TRUE(cpu_full.ok()) << cpu_full.status();
  ExpectBf16Close(full->logits_last, cpu_full->logits_last, "CUDA vs CPU engine, full mode");

  const int32_t next = 5;
  absl::StatusOr<std::vector<std::vector<float>>> step =
      (*gpu)->DecodeStep({{&block->cache, next, block->next_position}});
  ASSERT_TRUE(step.ok()) << step.status();
  all.push_back(next);
  const ReferenceOutput ref_step =
      ReferenceForward(*w, all, Iota(all.size()), BlockMask({70, 90, 31}));
  ExpectBf16Close((*step)[0], ref_step.logits.back(), "decode step");
  std::filesystem::remove_all(dir);
}

class CudaBackendTest : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_GT(cuda::CudaDeviceCount(), 0) << "this test needs a CUDA GPU";
    dir_ = testing::TempDir() + "/cuda_backend_test_plain";
    ASSERT_TRUE(WriteTinyModel(dir_, TinyModelOptions{}).ok());
    absl::StatusOr<ModelFiles> files = ModelFiles::Open(dir_);
    ASSERT_TRUE(files.ok());
    weights_ = *LoadWeights(*files);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
  ModelWeights weights_;
};

TEST_F(CudaBackendTest, BadBatchesAreRejectedBeforeAnyCacheChanges) {
  absl::StatusOr<std::unique_ptr<Backend>> b = CreateCudaBackend(weights_);
  ASSERT_TRUE(b.ok()) << b.status();
  const ModelConfig& c = weights_.config;
  KvCache cache(KvShape{c.num_hidden_layers, c.num_key_value_heads, c.head_dim});
  const std::vector<int32_t> ok = {1, 2}, bad = {1, static_cast<int32_t>(c.vocab_size)};
  std::vector<std::vector<float>> logits;
  EXPECT_EQ((*b)->Forward({{bad, 0, &cache, true}}, &logits).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*b)->Forward({{ok, 0, &cache, true}, {ok, 0, &cache, true}}, &logits).code(),
            absl::StatusCode::kInvalidArgument);
  KvCache wrong(KvShape{1, 1, 2});
  EXPECT_EQ((*b)->Forward({{ok, 0, &wrong, true}}, &logits).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache.num_tokens(), 0);
}

TEST_F(CudaBackendTest, LogitsOnlyForItemsThatWantThem) {
  absl::StatusOr<std::unique_ptr<Backend>> b = CreateCudaBackend(weights_);
  ASSERT_TRUE(b.ok()) << b.status();
  const ModelConfig& c = weights_.config;
  const KvShape shape{c.num_hidden_layers, c.num_key_value_heads, c.head_dim};
  KvCache x(shape), y(shape);
  const std::vector<int32_t> t = {5, 6, 7};
  std::vector<std::vector<float>> logits;
  ASSERT_TRUE((*b)->Forward({{t, 0, &x, false}, {t, 0, &y, true}}, &logits).ok());
  ASSERT_EQ(logits.size(), 2u);
  EXPECT_TRUE(logits[0].empty());
  EXPECT_EQ(logits[1].size(), static_cast<size_t>(c.vocab_size));
  EXPECT_EQ(x.num_tokens(), 3);
  EXPECT_EQ(y.num_tokens(), 3);
}

TEST(CudaBackendWithoutGpuTest, AMissingDeviceIsFailedPrecondition) {
  absl::StatusOr<std::unique_ptr<Backend>> b =
      CreateCudaBackend(ModelWeights{}, {.device = cuda::CudaDeviceCount()});
  EXPECT_EQ(b.status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace blockserve::engine
