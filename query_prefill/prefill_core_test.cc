#include "query_prefill/prefill_core.h"

#include <functional>
#include <memory>

#include "absl/strings/str_cat.h"
#include "blocks/testing/test_stores.h"
#include "discovery/discovery.h"
#include "discovery/fake_resolver.h"
#include "engine/prompt.h"
#include "engine/sampling.h"
#include "engine/tiny_model.h"
#include "engine/utf8.h"
#include "gtest/gtest.h"
#include "kv_store/shm_store.h"
#include "kv_store/source.h"
#include "query_prefill/testing/fake_decoder.h"
#include "query_prefill/testing/not_a_decoder.h"

namespace blockserve::query_prefill {
namespace {

const std::vector<std::string> kPassages = {
    "The river Elbe flows through Dresden and Hamburg to the North Sea.",
    "The capital of France is Paris; the capital of Italy is Rome.",
    "Water boils at one hundred degrees Celsius at sea level.",
};
constexpr char kSystem[] = "Answer from the passages.";
constexpr char kQuery[] = "Which river flows through Dresden?";

// Records what the prefill hands off, without a network.
class RecordingHandoff final : public KvHandoff {
 public:
  absl::Status Send(const std::string& address, const v1::SequenceHeader& header,
                    const engine::KvCache& kv, absl::Time /*deadline*/) override {
    addresses.push_back(address);
    headers.push_back(header);
    kvs.push_back(kv);
    return absl::OkStatus();
  }
  std::vector<std::string> addresses;
  std::vector<v1::SequenceHeader> headers;
  std::vector<engine::KvCache> kvs;
};

// A handoff that fails with a given status, as a transport would report it.
class FailingHandoff final : public KvHandoff {
 public:
  absl::Status Send(const std::string&, const v1::SequenceHeader&, const engine::KvCache&,
                    absl::Time) override {
    return status;
  }
  absl::Status status;
};

// What the caller of a prefill whose handoff failed must get, whatever the failure.
void ExpectDecoderUnavailable(const absl::Status& status) {
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_EQ(std::string(status.message()), "decoder unavailable");
}

void ExpectSameKv(const engine::KvCache& got, const engine::KvCache& want) {
  ASSERT_EQ(got.shape(), want.shape());
  ASSERT_EQ(got.tokens(), want.tokens());
  const int64_t n = want.num_tokens() * want.shape().row();
  for (int64_t l = 0; l < want.shape().num_layers; ++l) {
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(got.k(l)[i], want.k(l)[i]) << "layer " << l << " K element " << i;
      ASSERT_EQ(got.v(l)[i], want.v(l)[i]) << "layer " << l << " V element " << i;
    }
  }
}

class PrefillCoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    engine_ = blocks::testing::LoadTinyEngine("prefill_core_test_model",
                                              {.max_position_embeddings = 512})
                  .release();
  }
  static void TearDownTestSuite() { delete engine_; }

  void SetUp() override {
    store_ = blocks::testing::OpenTestShmStore(*engine_);
    ASSERT_NE(store_, nullptr);
    cache_ = std::make_unique<blocks::BlockCache>(*engine_, *store_);
    core_ = MakeCore(recording_);
  }
  void TearDown() override {
    core_.reset();
    cache_.reset();
    store_.reset();
  }

  std::unique_ptr<PrefillCore> MakeCore(
      KvHandoff& handoff, std::shared_ptr<discovery::Discovery> allowed_decoders = nullptr) {
    PrefillCoreOptions o;
    o.max_passages = 8;
    o.max_new_tokens = {.default_max_new_tokens = 16, .max_new_tokens_limit = 64};
    o.allowed_decoders = std::move(allowed_decoders);
    return std::make_unique<PrefillCore>(*cache_, handoff, metrics_, o);
  }

  void Ingest() {
    for (size_t i = 0; i < kPassages.size(); ++i) {
      const std::vector<int32_t> tokens =
          engine::PassageBlockTokens(engine_->tokenizer(), kPassages[i]);
      ASSERT_TRUE(cache_->Ingest("", absl::StrCat("doc-", i), tokens, false).ok());
    }
  }

  static v1::PrefillRequest ByIdRequest() {
    v1::PrefillRequest r;
    r.set_system_prompt(kSystem);
    for (size_t i = 0; i < kPassages.size(); ++i) {
      r.add_passages()->set_passage_id(absl::StrCat("doc-", i));
    }
    r.set_query(kQuery);
    return r;
  }
  static v1::PrefillRequest InlineRequest() {
    v1::PrefillRequest r;
    r.set_system_prompt(kSystem);
    for (const std::string& p : kPassages) r.add_passages()->set_text(p);
    r.set_query(kQuery);
    return r;
  }

  // The same prompt computed in-process: blocks from EncodeBlock, then PrefillLast.
  static engine::PrefillResult Reference(const engine::PrefillOptions& options) {
    const engine::Tokenizer& t = engine_->tokenizer();
    std::vector<std::vector<int32_t>> tokens = {engine::SystemBlockTokens(t, kSystem)};
    for (const std::string& p : kPassages) tokens.push_back(engine::PassageBlockTokens(t, p));
    std::vector<engine::KvCache> kvs;
    for (const auto& b : tokens) kvs.push_back(*engine_->EncodeBlock(b));
    std::vector<engine::BlockInput> inputs;
    for (size_t i = 0; i < tokens.size(); ++i) {
      const bool cached = options.mode == engine::AttentionMode::kBlock;
      inputs.push_back({tokens[i], cached ? &kvs[i] : nullptr});
    }
    absl::StatusOr<engine::PrefillResult> r =
        engine_->PrefillLast(inputs, engine::QueryBlockTokens(t, kQuery), options);
    EXPECT_TRUE(r.ok()) << r.status();
    return *std::move(r);
  }
  static int32_t Greedy(const engine::PrefillResult& r) {
    return engine::Sampler({}).Sample(r.logits_last);
  }
  static int64_t BlockTokens(std::string_view text) {
    return engine::PassageBlockTokens(engine_->tokenizer(), text).size();
  }
  static int64_t PassageAndSystemTokens() {
    int64_t n = engine::SystemBlockTokens(engine_->tokenizer(), kSystem).size();
    for (const std::string& p : kPassages) n += BlockTokens(p);
    return n;
  }

  static engine::Engine* engine_;
  MetricsRegistry metrics_;
  blocks::testing::ScopedShmStore store_;
  std::unique_ptr<blocks::BlockCache> cache_;
  RecordingHandoff recording_;
  std::unique_ptr<PrefillCore> core_;
};

engine::Engine* PrefillCoreTest::engine_ = nullptr;

TEST_F(PrefillCoreTest, BlockModeFirstTokenEqualsInProcessPrefillLastGreedy) {
  Ingest();
  absl::StatusOr<v1::PrefillResponse> r = core_->Prefill(ByIdRequest());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->first_token_id(), Greedy(Reference({})));
  EXPECT_EQ(r->model_fingerprint(), handoff::FingerprintHex(engine_->model_fingerprint()));
  EXPECT_FALSE(r->request_id().empty());
}

TEST_F(PrefillCoreTest, FullModeFirstTokenEqualsInProcessFullPrefillGreedy) {
  Ingest();
  v1::PrefillRequest request = ByIdRequest();
  request.mutable_block_options()->set_mode(v1::ATTENTION_MODE_FULL);
  absl::StatusOr<v1::PrefillResponse> r = core_->Prefill(request);
  ASSERT_TRUE(r.ok()) << r.status();
  const engine::PrefillResult want = Reference({.mode = engine::AttentionMode::kFull});
  EXPECT_EQ(r->first_token_id(), Greedy(want));
  EXPECT_EQ(r->stats().tokens_reused(), 0u);
  EXPECT_EQ(r->stats().tokens_computed(), r->stats().prompt_tokens());
  EXPECT_EQ(r->stats().cache_hits(), 0u);
  EXPECT_EQ(r->stats().flops_to_first_token(), r->stats().flops_full_prefill());
}

TEST_F(PrefillCoreTest, GlobalBlocksEqualInProcessGlobalBlocks) {
  Ingest();
  v1::PrefillRequest request = ByIdRequest();
  request.mutable_block_options()->set_global_blocks(1);
  absl::StatusOr<v1::PrefillResponse> r = core_->Prefill(request);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->first_token_id(), Greedy(Reference({.global_blocks = 1})));
  // The last passage is computed with the query: the first two passages are hits, and
  // the system block (never ingested) is the one miss.
  EXPECT_EQ(r->stats().cache_hits(), 2u);
  EXPECT_EQ(r->stats().cache_misses(), 1u);
  EXPECT_EQ(r->stats().tokens_computed(),
            engine::SystemBlockTokens(engine_->tokenizer(), kSystem).size() +
                BlockTokens(kPassages.back()) +
                engine::QueryBlockTokens(engine_->tokenizer(), kQuery).size());
}

TEST_F(PrefillCoreTest, SecondRequestOverTheSamePassagesReusesEveryBlock) {
  absl::StatusOr<v1::PrefillResponse> cold = core_->Prefill(InlineRequest());
  ASSERT_TRUE(cold.ok()) << cold.status();
  // Blocks: the system block and the three passages.
  EXPECT_EQ(cold->stats().cache_hits(), 0u);
  EXPECT_EQ(cold->stats().cache_misses(), 4u);
  EXPECT_EQ(cold->stats().tokens_reused(), 0u);
  EXPECT_GT(cold->stats().kv_bytes_written(), 0u);

  absl::StatusOr<v1::PrefillResponse> warm = core_->Prefill(InlineRequest());
  ASSERT_TRUE(warm.ok()) << warm.status();
  EXPECT_EQ(warm->stats().cache_hits(), 4u);
  EXPECT_EQ(warm->stats().cache_misses(), 0u);
  EXPECT_EQ(warm->stats().tokens_reused(), PassageAndSystemTokens());
  EXPECT_EQ(warm->stats().tokens_computed(),
            engine::QueryBlockTokens(engine_->tokenizer(), kQuery).size());
  EXPECT_EQ(warm->stats().kv_bytes_fetched(), cold->stats().kv_bytes_written());
  EXPECT_EQ(warm->stats().kv_bytes_written(), 0u);
  EXPECT_LT(warm->stats().flops_to_first_token(), cold->stats().flops_to_first_token());
  EXPECT_EQ(warm->first_token_id(), cold->first_token_id());
  EXPECT_EQ(warm->first_token_id(), Greedy(Reference({})));
}

TEST_F(PrefillCoreTest, EachSystemPromptIsCachedUnderItsOwnContentKey) {
  v1::PrefillRequest a = InlineRequest();
  v1::PrefillRequest b = InlineRequest();
  b.set_system_prompt("Answer in one word.");
  ASSERT_TRUE(core_->Prefill(a).ok());
  ASSERT_TRUE(core_->Prefill(b).ok());
  for (const v1::PrefillRequest& r : {a, b}) {
    const std::vector<int32_t> system =
        engine::SystemBlockTokens(engine_->tokenizer(), r.system_prompt());
    EXPECT_TRUE(store_->Contains(kv_store::MakeBlockKey(engine_->model_fingerprint(), system)))
        << r.system_prompt();
  }
  absl::StatusOr<v1::PrefillResponse> b_again = core_->Prefill(b);
  ASSERT_TRUE(b_again.ok());
  EXPECT_EQ(b_again->stats().cache_misses(), 0u);
}

TEST_F(PrefillCoreTest, ReadOnlyPolicyEncodesMissesWithoutWritingThemBack) {
  v1::PrefillRequest request = InlineRequest();
  request.mutable_block_options()->set_cache_policy(v1::CACHE_POLICY_READ_ONLY);
  ASSERT_TRUE(core_->Prefill(request).ok());
  absl::StatusOr<v1::PrefillResponse> again = core_->Prefill(request);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->stats().cache_hits(), 0u);
  EXPECT_EQ(again->stats().kv_bytes_written(), 0u);
  EXPECT_EQ(again->first_token_id(), Greedy(Reference({})));
}

TEST_F(PrefillCoreTest, BypassPolicyIgnoresCachedBlocks) {
  Ingest();
  v1::PrefillRequest request = ByIdRequest();
  request.mutable_block_options()->set_cache_policy(v1::CACHE_POLICY_BYPASS);
  absl::StatusOr<v1::PrefillResponse> r = core_->Prefill(request);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stats().tokens_reused(), 0u);
  EXPECT_EQ(r->stats().cache_hits(), 0u);
  EXPECT_EQ(r->first_token_id(), Greedy(Reference({})));
}

TEST_F(PrefillCoreTest, UnknownPassageIdIsNotFound) {
  Ingest();
  v1::PrefillRequest request = ByIdRequest();
  request.add_passages()->set_passage_id("never-ingested");
  EXPECT_EQ(core_->Prefill(request).status().code(), absl::StatusCode::kNotFound);
}

// Puts unrelated blocks until `key`'s block is evicted; with `and_source`, until its
// source is evicted too.
void EvictBlock(kv_store::ShmStore& store, const engine::KvCache& filler,
                const kv_store::BlockKey& key, bool and_source) {
  for (int32_t i = 0; store.Contains(key) ||
                      (and_source && store.Contains(kv_store::SourceKey(key)));
       ++i) {
    ASSERT_LT(i, 100000) << "the block was never evicted";
    ASSERT_TRUE(store.Put(kv_store::MakeBlockKey(1, {i, -1}), filler).ok());
  }
}

TEST_F(PrefillCoreTest, EvictedPassageNamedByIdIsReencodedFromItsSourceWithTheSameAnswer) {
  Ingest();
  absl::StatusOr<v1::PrefillResponse> cached = core_->Prefill(ByIdRequest());
  ASSERT_TRUE(cached.ok()) << cached.status();
  ASSERT_EQ(cached->stats().cache_misses(), 1u);  // the system block only
  const kv_store::BlockKey doc0 = *store_->GetPassage("doc-0");
  EvictBlock(*store_, *engine_->EncodeBlock({1, 2, 3}), doc0, /*and_source=*/false);
  ASSERT_TRUE(store_->Contains(*store_->GetPassage("doc-2"))) << "evicted more than doc-0";

  absl::StatusOr<v1::PrefillResponse> again = core_->Prefill(ByIdRequest());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->stats().passages_reencoded(), 1u);
  EXPECT_GE(again->stats().cache_misses(), 1u);
  EXPECT_EQ(again->first_token_id(), cached->first_token_id());
  EXPECT_EQ(again->first_token_id(), Greedy(Reference({})));
  EXPECT_TRUE(store_->Contains(doc0)) << "the re-encoded block was not written back";
  EXPECT_EQ(metrics_.GetCounter("blockserve_prefill_passage_reencodes_total", "")->value(), 1);

  absl::StatusOr<v1::PrefillResponse> third = core_->Prefill(ByIdRequest());
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->stats().passages_reencoded(), 0u);
  EXPECT_EQ(third->stats().cache_misses(), 0u);
}

TEST_F(PrefillCoreTest, EvictedPassageWhoseSourceIsGoneTooIsNotFound) {
  Ingest();
  const kv_store::BlockKey doc0 = *store_->GetPassage("doc-0");
  EvictBlock(*store_, *engine_->EncodeBlock({1, 2, 3}), doc0, /*and_source=*/true);
  const absl::Status status = core_->Prefill(ByIdRequest()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_NE(status.message().find("ingest the passage again"), std::string::npos) << status;
}

TEST_F(PrefillCoreTest, AnEvictedPassageFailsFastWhenTheRequestSaysFail) {
  Ingest();
  const kv_store::BlockKey doc0 = *store_->GetPassage("doc-0");
  EvictBlock(*store_, *engine_->EncodeBlock({1, 2, 3}), doc0, /*and_source=*/false);
  v1::PrefillRequest request = ByIdRequest();
  request.mutable_block_options()->set_kv_load_failure_policy(v1::KV_LOAD_FAILURE_POLICY_FAIL);
  const absl::Status failed = core_->Prefill(request).status();
  EXPECT_EQ(failed.code(), absl::StatusCode::kUnavailable) << failed;
  EXPECT_NE(failed.message().find("\"doc-0\""), std::string::npos) << failed;
  EXPECT_FALSE(store_->Contains(doc0)) << "FAIL must not encode the block";
  EXPECT_EQ(metrics_.GetCounter("blockserve_prefill_kv_load_failures_total", "")->value(), 1);
  // The same request with RECOMPUTE (explicit, as unset) answers and heals.
  request.mutable_block_options()->set_kv_load_failure_policy(
      v1::KV_LOAD_FAILURE_POLICY_RECOMPUTE);
  EXPECT_TRUE(core_->Prefill(request).ok());
  EXPECT_TRUE(store_->Contains(doc0));
}

struct BadRequest {
  std::string name;
  std::function<void(v1::PrefillRequest&)> mutate;
};

TEST_F(PrefillCoreTest, MalformedRequestsAreInvalidArgument) {
  Ingest();
  const std::vector<BadRequest> cases = {
      {"empty query", [](v1::PrefillRequest& r) { r.set_query(""); }},
      {"invalid UTF-8 query", [](v1::PrefillRequest& r) { r.set_query("caf\xC3"); }},
      {"invalid UTF-8 system prompt", [](v1::PrefillRequest& r) { r.set_system_prompt("\xFF"); }},
      {"negative temperature",
       [](v1::PrefillRequest& r) { r.mutable_sampling()->set_temperature(-1); }},
      {"top_p over 1", [](v1::PrefillRequest& r) { r.mutable_sampling()->set_top_p(1.5); }},
      {"negative top_k", [](v1::PrefillRequest& r) { r.mutable_sampling()->set_top_k(-1); }},
      {"max_new_tokens over the limit",
       [](v1::PrefillRequest& r) { r.mutable_sampling()->set_max_new_tokens(65); }},
      {"empty stop string", [](v1::PrefillRequest& r) { r.mutable_sampling()->add_stop(""); }},
      {"global_blocks over the passages",
       [](v1::PrefillRequest& r) { r.mutable_block_options()->set_global_blocks(4); }},
      {"unknown attention mode",
       [](v1::PrefillRequest& r) {
         r.mutable_block_options()->set_mode(static_cast<v1::AttentionMode>(9));
       }},
      {"unknown cache policy",
       [](v1::PrefillRequest& r) {
         r.mutable_block_options()->set_cache_policy(static_cast<v1::CachePolicy>(9));
       }},
      {"passage ref without content", [](v1::PrefillRequest& r) { r.add_passages(); }},
      {"inline token id outside the vocabulary",
       [](v1::PrefillRequest& r) { r.add_passages()->mutable_token_ids()->add_ids(1 << 30); }},
      {"more passages than --max_passages",
       [](v1::PrefillRequest& r) {
         for (int i = 0; i < 6; ++i) r.add_passages()->set_text("x");
       }},
      {"request id too long",
       [](v1::PrefillRequest& r) { r.set_request_id(std::string(129, 'r')); }},
      {"prompt as long as the context",
       [](v1::PrefillRequest& r) {
         // Two passages of 300 tokens each: each is valid alone, the prompt is not.
         for (int b = 0; b < 2; ++b) {
           v1::TokenIds* ids = r.add_passages()->mutable_token_ids();
           for (int i = 0; i < 300; ++i) ids->add_ids(5);
         }
       }},
  };
  for (const BadRequest& c : cases) {
    v1::PrefillRequest request = ByIdRequest();
    c.mutate(request);
    EXPECT_EQ(core_->Prefill(request).status().code(), absl::StatusCode::kInvalidArgument)
        << c.name;
  }
  EXPECT_EQ(metrics_.GetCounter("blockserve_prefill_requests_failed_total", "")->value(),
            cases.size());
}

TEST_F(PrefillCoreTest, NcclTransportIsFailedPrecondition) {
  v1::PrefillRequest request = InlineRequest();
  request.mutable_decoder()->set_address("127.0.0.1:1");
  request.mutable_decoder()->set_transport(v1::HANDOFF_NCCL);
  EXPECT_EQ(core_->Prefill(request).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(PrefillCoreTest, HandoffCarriesTheHeaderResolvedSeedAndExactPrefillKv) {
  Ingest();
  v1::PrefillRequest request = ByIdRequest();
  request.mutable_decoder()->set_address("decoder-0:1234");
  request.mutable_decoder()->set_sequence_id(77);
  request.mutable_sampling()->set_ignore_eos(true);
  absl::StatusOr<v1::PrefillResponse> r = core_->Prefill(request);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->sequence_id(), 77u);
  EXPECT_EQ(r->finish_reason(), v1::FINISH_REASON_UNSPECIFIED);
  ASSERT_EQ(recording_.headers.size(), 1u);
  EXPECT_EQ(recording_.addresses[0], "decoder-0:1234");
  const v1::SequenceHeader& h = recording_.headers[0];
  EXPECT_EQ(h.sequence_id(), 77u);
  EXPECT_EQ(h.first_token_id(), r->first_token_id());
  EXPECT_EQ(h.model_fingerprint(), r->model_fingerprint());
  EXPECT_EQ(h.request_id(), r->request_id());
  EXPECT_TRUE(h.sampling().has_seed());
  EXPECT_EQ(h.sampling().max_new_tokens(), 16u);  // the server default, resolved
  EXPECT_TRUE(h.sampling().ignore_eos());
  ExpectSameKv(recording_.kvs[0], Reference({}).cache);
  EXPECT_EQ(r->stats().kv_bytes_handed_off(), static_cast<uint64_t>(recording_.kvs[0].bytes()));
}

TEST_F(PrefillCoreTest, SeededSamplingDrawsTheFirstTokenFromDrawZeroOfTheSeed) {
  v1::PrefillRequest request = InlineRequest();
  request.mutable_sampling()->set_temperature(1.5);
  request.mutable_sampling()->set_seed(12345);
  absl::StatusOr<v1::PrefillResponse> r = core_->Prefill(request);
  ASSERT_TRUE(r.ok()) << r.status();
  engine::Sampler sampler({.temperature = 1.5, .seed = 12345});
  EXPECT_EQ(r->first_token_id(), sampler.Sample(Reference({}).logits_last));
}

TEST_F(PrefillCoreTest, MaxNewTokensOfOneFinishesWithLengthAndNoHandoff) {
  v1::PrefillRequest request = InlineRequest();
  request.mutable_sampling()->set_max_new_tokens(1);
  request.mutable_sampling()->set_ignore_eos(true);
  request.mutable_decoder()->set_address("decoder-0:1234");
  absl::StatusOr<v1::PrefillResponse> r = core_->Prefill(request);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(r->sequence_id(), 0u);
  EXPECT_TRUE(recording_.headers.empty());
  const std::string bytes = *engine::TokenText(engine_->tokenizer(), r->first_token_id());
  EXPECT_EQ(r->first_token_text(), engine::SanitizeUtf8(bytes));
}

TEST_F(PrefillCoreTest, StopTokenIdFinishesWithStopAndWithoutItsText) {
  const int32_t first = Greedy(Reference({}));
  v1::PrefillRequest request = InlineRequest();
  request.mutable_sampling()->add_stop_token_ids(first);
  request.mutable_sampling()->set_ignore_eos(true);
  request.mutable_decoder()->set_address("decoder-0:1234");
  absl::StatusOr<v1::PrefillResponse> r = core_->Prefill(request);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->first_token_id(), first);
  EXPECT_EQ(r->finish_reason(), v1::FINISH_REASON_STOP);
  EXPECT_EQ(r->first_token_text(), "");
  EXPECT_TRUE(recording_.headers.empty());
}

TEST_F(PrefillCoreTest, NoDecoderAddressMeansNoHandoff) {
  v1::PrefillRequest request = InlineRequest();
  request.mutable_sampling()->set_ignore_eos(true);
  absl::StatusOr<v1::PrefillResponse> r = core_->Prefill(request);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->sequence_id(), 0u);
  EXPECT_TRUE(recording_.headers.empty());
}

TEST_F(PrefillCoreTest, DeadlinePassedBeforeTheHandoffIsDeadlineExceeded) {
  v1::PrefillRequest request = InlineRequest();
  request.mutable_sampling()->set_ignore_eos(true);
  request.mutable_decoder()->set_address("decoder-0:1234");
  EXPECT_EQ(core_->Prefill(request, absl::InfinitePast()).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(recording_.headers.empty());
}

TEST_F(PrefillCoreTest, HandoffToAnUnreachableDecoderIsUnavailableAndFast) {
  GrpcKvHandoff grpc_handoff;
  std::unique_ptr<PrefillCore> core = MakeCore(grpc_handoff);
  v1::PrefillRequest request = InlineRequest();
  request.mutable_sampling()->set_ignore_eos(true);
  request.mutable_decoder()->set_address(ClosedLoopbackAddress());
  const absl::Time start = absl::Now();
  absl::StatusOr<v1::PrefillResponse> r = core->Prefill(request, start + absl::Seconds(5));
  ExpectDecoderUnavailable(r.status());
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST_F(PrefillCoreTest, DecoderOutsideTheAllowedSetIsRefusedBeforeAnyWork) {
  core_ = MakeCore(recording_, discovery::Discovery::Fixed({"decoder-0:1234", "decoder-1:1234"}));
  v1::PrefillRequest request = InlineRequest();
  request.mutable_sampling()->set_ignore_eos(true);
  for (const std::string address : {"decoder-2:1234", "decoder-0:12345", "decoder-0"}) {
    request.mutable_decoder()->set_address(address);
    ExpectDecoderUnavailable(core_->Prefill(request).status());
  }
  EXPECT_TRUE(recording_.headers.empty());

  request.mutable_decoder()->set_address("decoder-1:1234");
  absl::StatusOr<v1::PrefillResponse> allowed = core_->Prefill(request);
  ASSERT_TRUE(allowed.ok()) << allowed.status();
  // The refused requests computed nothing: no block of theirs was written back.
  EXPECT_EQ(allowed->stats().cache_hits(), 0u);
  EXPECT_GT(allowed->stats().cache_misses(), 0u);
  ASSERT_EQ(recording_.addresses.size(), 1u);
  EXPECT_EQ(recording_.addresses[0], "decoder-1:1234");
}

// --allowed_decoders=dns:///decoder:50063: a decoder pod that appears after start (the
// StatefulSet scaled up) is accepted without a restart, one outside the name is not.
TEST_F(PrefillCoreTest, DiscoveredAllowedDecodersFollowTheName) {
  auto resolver = std::make_shared<discovery::testing::FakeResolver>();
  resolver->Set("decoder", std::vector<std::string>{"10.0.0.1"});
  auto allowed = std::make_shared<discovery::Discovery>(
      discovery::ParseDiscoverySpec("dns:///decoder:50063").value(),
      discovery::DiscoveryOptions{.interval = absl::Hours(1),
                                  .miss_refresh_interval = absl::ZeroDuration(),
                                  .resolver = resolver});
  ASSERT_TRUE(allowed->Refresh().ok());
  core_ = MakeCore(recording_, allowed);
  v1::PrefillRequest request = InlineRequest();
  request.mutable_sampling()->set_ignore_eos(true);
  request.mutable_decoder()->set_address("10.0.0.2:50063");
  ExpectDecoderUnavailable(core_->Prefill(request).status());
  EXPECT_TRUE(recording_.headers.empty());

  resolver->Set("decoder", std::vector<std::string>{"10.0.0.1", "10.0.0.2"});
  absl::StatusOr<v1::PrefillResponse> scaled = core_->Prefill(request);
  ASSERT_TRUE(scaled.ok()) << scaled.status();
  ASSERT_EQ(recording_.addresses.size(), 1u);
  EXPECT_EQ(recording_.addresses[0], "10.0.0.2:50063");
  request.mutable_decoder()->set_address("10.0.0.3:50063");
  ExpectDecoderUnavailable(core_->Prefill(request).status());
}

TEST_F(PrefillCoreTest, EveryHandoffFailureIsDecoderUnavailable) {
  FailingHandoff failing;
  std::unique_ptr<PrefillCore> core = MakeCore(failing);
  v1::PrefillRequest request = InlineRequest();
  request.mutable_sampling()->set_ignore_eos(true);
  request.mutable_decoder()->set_address("decoder-0:1234");
  for (const absl::Status& failure : {
           absl::UnavailableError("failed to connect to all addresses; Connection refused"),
           absl::UnavailableError("Trying to connect an http1.x server"),
           absl::InternalError("Received RST_STREAM with error code 2"),
           absl::UnimplementedError(""),
           absl::DeadlineExceededError("the KV did not arrive within the handoff lease"),
           absl::ResourceExhaustedError("decoder is full: 64 of 64 sequences active"),
           absl::FailedPreconditionError("model fingerprint mismatch"),
           absl::AlreadyExistsError("sequence 5 is already in use"),
           absl::InvalidArgumentError("max_new_tokens over the limit"),
       }) {
    failing.status = failure;
    ExpectDecoderUnavailable(core->Prefill(request, absl::Now() + absl::Seconds(30)).status());
  }
}

class GrpcHandoffTest : public PrefillCoreTest {
 protected:
  handoff::SequenceAssembler::Expect DecoderExpect() const {
    return {.model_fingerprint_hex = handoff::FingerprintHex(engine_->model_fingerprint()),
            .shape = engine_->kv_shape(),
            .vocab_size = engine_->config().vocab_size,
            .context_length = engine_->config().max_position_embeddings,
            .max_new_tokens = {.default_max_new_tokens = 16, .max_new_tokens_limit = 64}};
  }
};

TEST_F(GrpcHandoffTest, FakeDecoderReassemblesTheExactPrefillKv) {
  FakeDecoder decoder(DecoderExpect());
  // Small chunks so the KV crosses the wire in many slices.
  GrpcKvHandoff grpc_handoff({.max_chunk_bytes = 1024});
  std::unique_ptr<PrefillCore> core = MakeCore(grpc_handoff);
  Ingest();
  v1::PrefillRequest request = ByIdRequest();
  request.mutable_sampling()->set_ignore_eos(true);
  request.mutable_decoder()->set_address(decoder.address());
  request.mutable_decoder()->set_sequence_id(5);
  absl::StatusOr<v1::PrefillResponse> r = core->Prefill(request, absl::Now() + absl::Seconds(30));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->sequence_id(), 5u);

  const std::vector<FakeDecoder::Received> received = decoder.received();
  ASSERT_EQ(received.size(), 1u);
  EXPECT_EQ(received[0].header.sequence_id(), 5u);
  EXPECT_EQ(received[0].header.first_token_id(), r->first_token_id());
  EXPECT_EQ(received[0].header.dtype(), v1::DTYPE_F32);
  EXPECT_GT(received[0].chunks, 2);
  ExpectSameKv(received[0].kv, Reference({}).cache);
}

TEST_F(GrpcHandoffTest, DecoderRefusalsAreDecoderUnavailable) {
  // A full decoder, and one that serves another model.
  FakeDecoder full(DecoderExpect());
  full.RefuseWith(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "decoder KV memory full"));
  handoff::SequenceAssembler::Expect other = DecoderExpect();
  other.model_fingerprint_hex = "0123456789abcdef";
  FakeDecoder other_model(other);
  GrpcKvHandoff grpc_handoff;
  std::unique_ptr<PrefillCore> core = MakeCore(grpc_handoff);
  v1::PrefillRequest request = InlineRequest();
  request.mutable_sampling()->set_ignore_eos(true);
  for (const FakeDecoder* decoder : {&full, &other_model}) {
    request.mutable_decoder()->set_address(decoder->address());
    ExpectDecoderUnavailable(core->Prefill(request, absl::Now() + absl::Seconds(30)).status());
  }
}

}  // namespace
}  // namespace blockserve::query_prefill
