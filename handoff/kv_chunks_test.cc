#include "handoff/kv_chunks.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

namespace blockserve::handoff {
namespace {

namespace v1 = ::blockserve::v1;

constexpr uint64_t kFingerprint = 0x0123456789abcdefULL;
const engine::KvShape kShape{/*num_layers=*/3, /*num_kv_heads=*/2, /*head_dim=*/4};

engine::KvCache RandomKv(int64_t tokens, uint64_t seed = 1) {
  engine::KvCache kv(kShape);
  std::vector<int32_t> ids(tokens);
  for (int64_t i = 0; i < tokens; ++i) ids[i] = static_cast<int32_t>(10 + i);
  kv.Append(ids);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0, 2);
  for (int64_t l = 0; l < kShape.num_layers; ++l) {
    for (int64_t i = 0; i < tokens * kShape.row(); ++i) {
      kv.k(l)[i] = normal(rng);
      kv.v(l)[i] = normal(rng);
    }
  }
  return kv;
}

v1::SequenceHeader CallerHeader() {
  v1::SequenceHeader h;
  h.set_sequence_id(42);
  h.set_model_fingerprint(FingerprintHex(kFingerprint));
  h.set_first_token_id(7);
  h.mutable_sampling()->set_seed(5);
  h.set_request_id("req-1");
  return h;
}

SequenceAssembler::Expect LocalModel() {
  return {FingerprintHex(kFingerprint), kShape, /*vocab_size=*/100, /*context_length=*/64, {}};
}

// Feeds `chunks` in order; returns the first error, or Finish's result.
absl::StatusOr<engine::KvCache> Assemble(const std::vector<v1::KvChunk>& chunks,
                                         SequenceAssembler::Expect expect = LocalModel()) {
  SequenceAssembler assembler(std::move(expect));
  for (const v1::KvChunk& c : chunks) {
    if (absl::Status s = assembler.AddChunk(c); !s.ok()) return s;
  }
  return assembler.Finish();
}

double MaxAbsDiff(const engine::KvCache& a, const engine::KvCache& b, bool relative) {
  double worst = 0;
  for (int64_t l = 0; l < a.shape().num_layers; ++l) {
    for (int64_t i = 0; i < a.num_tokens() * a.shape().row(); ++i) {
      for (auto [x, y] : {std::pair{a.k(l)[i], b.k(l)[i]}, std::pair{a.v(l)[i], b.v(l)[i]}}) {
        const double d = std::abs(x - y) / (relative ? std::max(1e-6f, std::abs(x)) : 1.0);
        worst = std::max(worst, d);
      }
    }
  }
  return worst;
}

TEST(SequenceToChunks, F32RoundTripIsExact) {
  const engine::KvCache kv = RandomKv(9);
  absl::StatusOr<engine::KvCache> back =
      Assemble(SequenceToChunks(CallerHeader(), kv, v1::DTYPE_F32));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->tokens(), kv.tokens());
  EXPECT_EQ(back->start_position(), 0);
  EXPECT_EQ(MaxAbsDiff(kv, *back, false), 0.0);
}

TEST(SequenceToChunks, Bf16AndF16RoundTripWithinTheirPrecision) {
  const engine::KvCache kv = RandomKv(9);
  absl::StatusOr<engine::KvCache> bf16 =
      Assemble(SequenceToChunks(CallerHeader(), kv, v1::DTYPE_BF16));
  ASSERT_TRUE(bf16.ok()) << bf16.status();
  EXPECT_LE(MaxAbsDiff(kv, *bf16, true), 1.0 / 256);  // 8 significant bits, round to nearest
  absl::StatusOr<engine::KvCache> f16 =
      Assemble(SequenceToChunks(CallerHeader(), kv, v1::DTYPE_F16));
  ASSERT_TRUE(f16.ok()) << f16.status();
  EXPECT_LE(MaxAbsDiff(kv, *f16, true), 1.0 / 2048);
}

// A bf16 sequence (the engines' default KV dtype) crosses as bf16, bit for bit, at half
// the bytes of f32, into a bf16 decoder; an f32 decoder gets it widened exactly.
TEST(SequenceToChunks, Bf16CacheCrossesUnchangedIntoABf16Decoder) {
  const engine::KvCache f32 = RandomKv(9);
  engine::KvCache bf16(kShape, engine::DType::kBF16);
  bf16.AppendCopy(f32);
  const v1::DType wire = ToWireDType(bf16.dtype());
  EXPECT_EQ(wire, v1::DTYPE_BF16);
  const std::vector<v1::KvChunk> chunks = SequenceToChunks(CallerHeader(), bf16, wire);
  const std::vector<v1::KvChunk> f32_chunks = SequenceToChunks(CallerHeader(), f32, v1::DTYPE_F32);
  auto payload = [](const std::vector<v1::KvChunk>& cs) {
    size_t n = 0;
    for (const v1::KvChunk& c : cs) n += c.has_slice() ? c.slice().data().size() : 0;
    return n;
  };
  EXPECT_EQ(2 * payload(chunks), payload(f32_chunks));

  SequenceAssembler::Expect bf16_decoder = LocalModel();
  bf16_decoder.kv_dtype = engine::DType::kBF16;
  absl::StatusOr<engine::KvCache> got = Assemble(chunks, bf16_decoder);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->dtype(), engine::DType::kBF16);
  EXPECT_EQ(got->tokens(), bf16.tokens());
  const size_t n = bf16.num_tokens() * kShape.row();
  for (int64_t l = 0; l < kShape.num_layers; ++l) {
    EXPECT_TRUE(std::equal(bf16.k_bf16(l), bf16.k_bf16(l) + n, got->k_bf16(l))) << l;
    EXPECT_TRUE(std::equal(bf16.v_bf16(l), bf16.v_bf16(l) + n, got->v_bf16(l))) << l;
  }
  absl::StatusOr<engine::KvCache> widened = Assemble(chunks);  // an f32 decoder
  ASSERT_TRUE(widened.ok()) << widened.status();
  ASSERT_EQ(widened->dtype(), engine::DType::kF32);
  for (int64_t l = 0; l < kShape.num_layers; ++l) {
    for (size_t i = 0; i < n; ++i) {
      EXPECT_EQ(widened->k(l)[i], engine::BF16ToF32(bf16.k_bf16(l)[i]));
      EXPECT_EQ(widened->v(l)[i], engine::BF16ToF32(bf16.v_bf16(l)[i]));
    }
  }
}

TEST(SequenceToChunks, HeaderFirstWithShapeFromTheCache) {
  const engine::KvCache kv = RandomKv(5);
  const std::vector<v1::KvChunk> chunks = SequenceToChunks(CallerHeader(), kv, v1::DTYPE_BF16);
  ASSERT_TRUE(chunks[0].has_header());
  const v1::SequenceHeader& h = chunks[0].header();
  EXPECT_EQ(h.sequence_id(), 42u);
  EXPECT_EQ(h.num_layers(), 3u);
  EXPECT_EQ(h.num_kv_heads(), 2u);
  EXPECT_EQ(h.head_dim(), 4u);
  EXPECT_EQ(h.dtype(), v1::DTYPE_BF16);
  EXPECT_EQ(h.token_count(), 5u);
  EXPECT_EQ(h.token_ids().ids_size(), 5);
  EXPECT_TRUE(std::all_of(chunks.begin() + 1, chunks.end(),
                          [](const v1::KvChunk& c) { return c.has_slice(); }));
}

TEST(SequenceToChunks, RespectsTheChunkSizeLimit) {
  const engine::KvCache kv = RandomKv(10);
  const size_t row_bytes = kShape.row() * 4;
  const size_t limit = 3 * row_bytes + 5;  // room for 3 rows, not 4
  const std::vector<v1::KvChunk> chunks =
      SequenceToChunks(CallerHeader(), kv, v1::DTYPE_F32, limit);
  // 10 tokens in slices of 3 → 4 slices per (layer, tensor).
  EXPECT_EQ(chunks.size(), 1u + 4u * 2 * kShape.num_layers);
  for (size_t i = 1; i < chunks.size(); ++i) EXPECT_LE(chunks[i].slice().data().size(), limit);
  absl::StatusOr<engine::KvCache> back = Assemble(chunks);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(MaxAbsDiff(kv, *back, false), 0.0);
}

TEST(SequenceToChunks, TinyLimitStillSendsOneTokenPerSlice) {
  const engine::KvCache kv = RandomKv(4);
  const std::vector<v1::KvChunk> chunks = SequenceToChunks(CallerHeader(), kv, v1::DTYPE_F32, 1);
  EXPECT_EQ(chunks.size(), 1u + 4u * 2 * kShape.num_layers);
  EXPECT_TRUE(Assemble(chunks).ok());
}

TEST(SequenceToChunks, SinkCanStopEarly) {
  int calls = 0;
  EXPECT_FALSE(ForEachChunk(CallerHeader(), RandomKv(4), v1::DTYPE_F32, kDefaultMaxChunkBytes,
                            [&](const v1::KvChunk&) { return ++calls < 2; }));
  EXPECT_EQ(calls, 2);
}

TEST(SequenceAssembler, AcceptsSlicesInAnyOrder) {
  const engine::KvCache kv = RandomKv(10);
  std::vector<v1::KvChunk> chunks =
      SequenceToChunks(CallerHeader(), kv, v1::DTYPE_F32, 2 * kShape.row() * 4);
  std::mt19937 rng(3);
  std::shuffle(chunks.begin() + 1, chunks.end(), rng);
  SequenceAssembler assembler(LocalModel());
  for (const v1::KvChunk& c : chunks) ASSERT_TRUE(assembler.AddChunk(c).ok());
  EXPECT_EQ(assembler.bytes_received(), 2 * kShape.num_layers * 10 * kShape.row() * 4);
  EXPECT_EQ(assembler.header().request_id(), "req-1");
  absl::StatusOr<engine::KvCache> back = assembler.Finish();
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(MaxAbsDiff(kv, *back, false), 0.0);
}

// ───────────────────────────── malformed streams ─────────────────────────────

class MalformedStream : public ::testing::Test {
 protected:
  std::vector<v1::KvChunk> chunks_ = SequenceToChunks(CallerHeader(), RandomKv(6), v1::DTYPE_F32);
  v1::SequenceHeader& header() { return *chunks_[0].mutable_header(); }
  v1::KvSlice& slice(int i) { return *chunks_[1 + i].mutable_slice(); }
  absl::StatusCode Code() { return Assemble(chunks_).status().code(); }
};

TEST_F(MalformedStream, MissingHeaderIsInvalidArgument) {
  chunks_.erase(chunks_.begin());
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(MalformedStream, EmptyStreamIsInvalidArgumentAtFinish) {
  chunks_.clear();
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(MalformedStream, HeaderTwiceIsInvalidArgument) {
  chunks_.push_back(chunks_[0]);
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(MalformedStream, ChunkWithoutBodyIsInvalidArgument) {
  chunks_.push_back(v1::KvChunk());
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(MalformedStream, OverlappingSliceIsInvalidArgument) {
  v1::KvChunk extra = chunks_[1];
  extra.mutable_slice()->set_token_begin(5);
  extra.mutable_slice()->set_token_end(6);
  extra.mutable_slice()->mutable_data()->resize(kShape.row() * 4);
  chunks_.push_back(extra);
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(MalformedStream, DuplicateSliceIsInvalidArgument) {
  chunks_.push_back(chunks_[3]);
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(MalformedStream, GapIsInvalidArgumentAtFinish) {
  chunks_.erase(chunks_.begin() + 4);
  SequenceAssembler assembler(LocalModel());
  for (const v1::KvChunk& c : chunks_) ASSERT_TRUE(assembler.AddChunk(c).ok());
  EXPECT_EQ(assembler.Finish().status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(MalformedStream, PartialTokenRangeIsInvalidArgumentAtFinish) {
  // Replace layer 0 K (tokens [0, 6)) by tokens [0, 5).
  slice(0).set_token_end(5);
  slice(0).mutable_data()->resize(5 * kShape.row() * 4);
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(MalformedStream, WrongByteSizeIsInvalidArgument) {
  slice(2).mutable_data()->pop_back();
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(MalformedStream, LayerOutOfRangeIsInvalidArgument) {
  slice(0).set_layer(3);
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(MalformedStream, UnspecifiedTensorIsInvalidArgument) {
  slice(0).set_tensor(v1::KV_TENSOR_UNSPECIFIED);
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(MalformedStream, EmptyTokenRangeIsInvalidArgument) {
  slice(0).set_token_begin(2);
  slice(0).set_token_end(2);
  slice(0).clear_data();
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(MalformedStream, RangePastTokenCountIsInvalidArgument) {
  slice(0).set_token_begin(1);
  slice(0).set_token_end(7);
  EXPECT_EQ(Code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(MalformedStream, FingerprintMismatchIsFailedPrecondition) {
  header().set_model_fingerprint(FingerprintHex(kFingerprint + 1));
  EXPECT_EQ(Code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(MalformedStream, ShapeMismatchIsFailedPrecondition) {
  for (auto mutate : {+[](v1::SequenceHeader& h) { h.set_num_layers(4); },
                      +[](v1::SequenceHeader& h) { h.set_num_kv_heads(1); },
                      +[](v1::SequenceHeader& h) { h.set_head_dim(8); }}) {
    v1::KvChunk chunk = chunks_[0];
    mutate(*chunk.mutable_header());
    SequenceAssembler assembler(LocalModel());
    EXPECT_EQ(assembler.AddChunk(chunk).code(), absl::StatusCode::kFailedPrecondition);
  }
}

TEST_F(MalformedStream, BadHeaderFieldsAreInvalidArgument) {
  const std::vector<void (*)(v1::SequenceHeader&)> mutations = {
      [](v1::SequenceHeader& h) { h.set_sequence_id(0); },
      [](v1::SequenceHeader& h) { h.set_dtype(v1::DTYPE_UNSPECIFIED); },
      [](v1::SequenceHeader& h) { h.set_dtype(static_cast<v1::DType>(9)); },
      [](v1::SequenceHeader& h) { h.clear_model_fingerprint(); },
      [](v1::SequenceHeader& h) { h.set_token_count(5); },
      [](v1::SequenceHeader& h) {
        h.set_token_count(0);
        h.mutable_token_ids()->clear_ids();
      },
      [](v1::SequenceHeader& h) { h.mutable_token_ids()->set_ids(0, 100); },
      [](v1::SequenceHeader& h) { h.mutable_token_ids()->set_ids(0, -1); },
      [](v1::SequenceHeader& h) { h.set_first_token_id(100); },
      [](v1::SequenceHeader& h) { h.mutable_sampling()->clear_seed(); },
      [](v1::SequenceHeader& h) { h.mutable_sampling()->set_temperature(-1); },
      [](v1::SequenceHeader& h) { h.mutable_sampling()->add_stop(""); },
      [](v1::SequenceHeader& h) { h.mutable_sampling()->add_stop_token_ids(100); },
      [](v1::SequenceHeader& h) { h.mutable_sampling()->set_max_new_tokens(5000); },
  };
  for (size_t i = 0; i < mutations.size(); ++i) {
    v1::KvChunk chunk = chunks_[0];
    mutations[i](*chunk.mutable_header());
    SequenceAssembler assembler(LocalModel());
    EXPECT_EQ(assembler.AddChunk(chunk).code(), absl::StatusCode::kInvalidArgument)
        << "mutation " << i;
  }
}

TEST_F(MalformedStream, PromptAtContextLengthIsInvalidArgument) {
  SequenceAssembler::Expect expect = LocalModel();
  expect.context_length = 6;  // the prompt must leave room for the first token
  SequenceAssembler assembler(expect);
  EXPECT_EQ(assembler.AddChunk(chunks_[0]).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(MalformedStream, ChunksAfterAnErrorAreRefused) {
  SequenceAssembler assembler(LocalModel());
  ASSERT_TRUE(assembler.AddChunk(chunks_[0]).ok());
  v1::KvChunk bad = chunks_[1];
  bad.mutable_slice()->set_layer(99);
  EXPECT_FALSE(assembler.AddChunk(bad).ok());
  EXPECT_FALSE(assembler.AddChunk(chunks_[1]).ok());
  EXPECT_FALSE(assembler.Finish().ok());
}

// ───────────────────────────── generation policy ─────────────────────────────

TEST(FromProto, UnsetMeansGreedyWithoutLimits) {
  absl::StatusOr<engine::SamplingParams> p = FromProto(v1::SamplingParams());
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->temperature, 0);
  EXPECT_EQ(p->top_p, 1);
  EXPECT_EQ(p->top_k, 0);
  EXPECT_EQ(p->seed, 0u);
}

TEST(FromProto, CopiesValidValues) {
  v1::SamplingParams in;
  in.set_temperature(0.7f);
  in.set_top_p(0.9f);
  in.set_top_k(40);
  in.set_seed(0);
  absl::StatusOr<engine::SamplingParams> p = FromProto(in);
  ASSERT_TRUE(p.ok());
  EXPECT_FLOAT_EQ(p->temperature, 0.7f);
  EXPECT_FLOAT_EQ(p->top_p, 0.9f);
  EXPECT_EQ(p->top_k, 40);
}

TEST(FromProto, RejectsBadValues) {
  const float nan = std::nanf(""), inf = INFINITY;
  for (float t : {-0.5f, nan, inf, 100.5f}) {
    v1::SamplingParams in;
    in.set_temperature(t);
    EXPECT_EQ(FromProto(in).status().code(), absl::StatusCode::kInvalidArgument) << t;
  }
  for (float top_p : {-0.1f, nan, 1.5f}) {
    v1::SamplingParams in;
    in.set_top_p(top_p);
    EXPECT_EQ(FromProto(in).status().code(), absl::StatusCode::kInvalidArgument) << top_p;
  }
  v1::SamplingParams in;
  in.set_top_k(-1);
  EXPECT_EQ(FromProto(in).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DecodeLimitsFromProto, AppliesTheServerPolicy) {
  const MaxNewTokensPolicy policy{/*default_max_new_tokens=*/20, /*max_new_tokens_limit=*/50};
  v1::SamplingParams in;
  in.add_stop("\n\n");
  in.add_stop_token_ids(3);
  in.set_ignore_eos(true);
  absl::StatusOr<engine::StopRules> limits = DecodeLimitsFromProto(in, 100, policy);
  ASSERT_TRUE(limits.ok()) << limits.status();
  EXPECT_EQ(limits->max_new_tokens, 20);
  EXPECT_TRUE(limits->ignore_eos);
  EXPECT_EQ(limits->stop_strings, std::vector<std::string>{"\n\n"});
  EXPECT_EQ(limits->stop_token_ids, std::vector<int32_t>{3});
  in.set_max_new_tokens(50);
  EXPECT_EQ(DecodeLimitsFromProto(in, 100, policy)->max_new_tokens, 50);
  in.set_max_new_tokens(51);
  EXPECT_EQ(DecodeLimitsFromProto(in, 100, policy).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(DecodeLimitsFromProto, RejectsBadStops) {
  const MaxNewTokensPolicy policy;
  v1::SamplingParams too_many;
  for (int i = 0; i < 17; ++i) too_many.add_stop("x");
  v1::SamplingParams too_long;
  too_long.add_stop(std::string(257, 'x'));
  v1::SamplingParams not_utf8;
  not_utf8.add_stop("\xC3");
  v1::SamplingParams too_many_ids;
  for (int i = 0; i < 17; ++i) too_many_ids.add_stop_token_ids(1);
  v1::SamplingParams negative_id;
  negative_id.add_stop_token_ids(-1);
  for (const v1::SamplingParams& p : {too_many, too_long, not_utf8, too_many_ids, negative_id}) {
    EXPECT_EQ(DecodeLimitsFromProto(p, 100, policy).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST(ToProto, MapsEveryFinishReason) {
  EXPECT_EQ(ToProto(engine::FinishReason::kEos), v1::FINISH_REASON_EOS);
  EXPECT_EQ(ToProto(engine::FinishReason::kStop), v1::FINISH_REASON_STOP);
  EXPECT_EQ(ToProto(engine::FinishReason::kLength), v1::FINISH_REASON_LENGTH);
}

TEST(FingerprintHex, IsSixteenLowercaseDigits) {
  EXPECT_EQ(FingerprintHex(0xABCDEF), "0000000000abcdef");
  EXPECT_EQ(FingerprintHex(~0ULL), "ffffffffffffffff");
}

}  // namespace
}  // namespace blockserve::handoff
