#include "decoder/decoder_core.h"

#include <gtest/gtest.h>

#include <fstream>
#include <thread>

#include "engine/generate.h"
#include "engine/model_config.h"
#include "engine/tiny_model.h"
#include "engine/utf8.h"
#include "handoff/kv_chunks.h"

namespace blockserve::decoder {
namespace {

namespace v1 = ::blockserve::v1;

struct Request {
  std::string prompt_text = "The quick brown fox jumps over the lazy dog";
  engine::SamplingParams sampling;
  engine::StopRules stop{/*max_new_tokens=*/16, /*ignore_eos=*/false, {}, {}};
};

// What a client sees: the prefill's first token and text, then the decoder's events.
struct Output {
  std::vector<int32_t> tokens;
  std::string text;
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
  v1::DecodeStats stats;
  int events = 0;
};

std::unique_ptr<engine::Engine> LoadTinyModel(const std::string& name,
                                              engine::TinyModelOptions options,
                                              std::optional<int32_t> eos = std::nullopt) {
  const std::string dir = testing::TempDir() + "/decoder_core_test_" + name;
  EXPECT_TRUE(engine::WriteTinyModel(dir, options).ok());
  if (eos) {  // make an ordinary token the model's EOS, so a random model stops on it
    absl::StatusOr<engine::ModelConfig> config =
        engine::ModelConfig::FromFile(dir + "/config.json");
    EXPECT_TRUE(config.ok());
    config->eos_token_ids = {*eos};
    std::ofstream(dir + "/config.json") << config->ToJson();
  }
  absl::StatusOr<std::unique_ptr<engine::Engine>> e = engine::Engine::Load(dir, {.num_threads = 1});
  EXPECT_TRUE(e.ok()) << e.status();
  return *std::move(e);
}

class DecoderCoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { engine_ = LoadTinyModel("main", {.seed = 3}).release(); }
  static void TearDownTestSuite() {
    delete engine_;
    engine_ = nullptr;
  }

  std::vector<int32_t> Prompt(const Request& r) const {
    return engine_->tokenizer().Encode(r.prompt_text);
  }

  // engine::Generate on the same engine: the single-sequence reference.
  static engine::Generation Reference(engine::Engine& e, const std::vector<int32_t>& prompt,
                                      const Request& r) {
    absl::StatusOr<engine::Generation> g = engine::Generate(e, {}, prompt, {}, r.sampling, r.stop);
    EXPECT_TRUE(g.ok()) << g.status();
    return *g;
  }

  // Does what the prefill does: computes the prompt, samples the first token (draw 0 of
  // the seed's stream) and derives its text per the contract in engine/sequence_end.h.
  static SequenceInput Prefill(engine::Engine& e, uint64_t id, const std::vector<int32_t>& prompt,
                               const Request& r, Output* out) {
    absl::StatusOr<engine::PrefillResult> p = e.PrefillLast({}, prompt);
    EXPECT_TRUE(p.ok()) << p.status();
    engine::Sampler sampler(r.sampling);
    const int32_t first = sampler.Sample(p->logits_last);
    engine::SequenceEnd end(e.tokenizer(), e.eos_ids(), r.stop, p->cache.num_tokens(),
                            e.config().max_position_embeddings);
    out->tokens = {first};
    out->text = end.Next(first).text_delta;
    return SequenceInput{id, "req", std::move(p->cache), first, r.sampling, r.stop};
  }

  // Attaches and drains a sequence to its final event, checking event indices.
  static void Drain(DecoderCore& core, uint64_t id, Output* out) {
    absl::StatusOr<std::unique_ptr<StreamHandle>> h = core.Attach(id, absl::Seconds(10));
    ASSERT_TRUE(h.ok()) << h.status();
    while (!(*h)->done()) {
      absl::StatusOr<std::optional<v1::TokenEvent>> ev = (*h)->Next(absl::Seconds(10));
      ASSERT_TRUE(ev.ok()) << ev.status();
      ASSERT_TRUE(ev->has_value()) << "no event within 10 s";
      const v1::TokenEvent& e = **ev;
      EXPECT_EQ(e.index(), out->tokens.size());
      out->tokens.insert(out->tokens.end(), e.token_ids().begin(), e.token_ids().end());
      out->text += e.text();
      out->finish = e.finish_reason();
      out->stats = e.stats();
      ++out->events;
    }
  }

  // Prefill + admit + drain on `core`.
  static Output Decode(DecoderCore& core, engine::Engine& e, uint64_t id, const Request& r) {
    Output out;
    const std::vector<int32_t> prompt = e.tokenizer().Encode(r.prompt_text);
    EXPECT_TRUE(core.Admit(Prefill(e, id, prompt, r, &out)).ok());
    Drain(core, id, &out);
    return out;
  }

  static void ExpectSameAsGenerate(engine::Engine& e, const Request& r, const Output& out) {
    const engine::Generation g = Reference(e, e.tokenizer().Encode(r.prompt_text), r);
    EXPECT_EQ(out.tokens, g.tokens);
    EXPECT_EQ(out.finish, handoff::ToProto(g.finish));
    EXPECT_EQ(out.text, engine::SanitizeUtf8(g.text));
  }

  static engine::Engine* engine_;
};

engine::Engine* DecoderCoreTest::engine_ = nullptr;

TEST_F(DecoderCoreTest, GreedyDecodeEqualsGenerate) {
  DecoderCore core(*engine_, {});
  Request r;
  r.stop.max_new_tokens = 40;
  const Output out = Decode(core, *engine_, 1, r);
  ExpectSameAsGenerate(*engine_, r, out);
  EXPECT_EQ(out.finish, v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(out.tokens.size(), 40u);
  EXPECT_EQ(out.stats.tokens_generated(), 39u);
  EXPECT_GT(out.stats.decode_ms(), 0);
}

TEST_F(DecoderCoreTest, SampledDecodeContinuesTheSeedsStream) {
  DecoderCore core(*engine_, {});
  for (uint64_t seed : {1, 2, 3}) {
    Request r;
    r.sampling = {.temperature = 0.9, .top_k = 0, .top_p = 1, .seed = seed};
    r.stop.max_new_tokens = 30;
    ExpectSameAsGenerate(*engine_, r, Decode(core, *engine_, 10 + seed, r));
  }
}

TEST_F(DecoderCoreTest, SequencesJoiningMidRunEqualTheirSingleResults) {
  MetricsRegistry metrics;
  DecoderCore core(*engine_, {.metrics = &metrics});
  const std::vector<std::string> texts = {"The quick brown fox", "Once upon a time there was", "A",
                                          "the lazy dog sleeps in the sun"};
  std::vector<Request> requests(texts.size());
  std::vector<Output> outputs(texts.size());
  std::vector<std::unique_ptr<StreamHandle>> handles;
  for (size_t i = 0; i < texts.size(); ++i) {
    requests[i].prompt_text = texts[i];
    requests[i].stop = {/*max_new_tokens=*/300, /*ignore_eos=*/true, {}, {}};
    if (i % 2 == 1) requests[i].sampling = {.temperature = 0.7, .top_k = 20, .top_p = 1, .seed = i};
    ASSERT_TRUE(
        core.Admit(Prefill(*engine_, 100 + i, Prompt(requests[i]), requests[i], &outputs[i])).ok());
    // Let the running batch make progress before the next sequence joins.
    absl::StatusOr<std::unique_ptr<StreamHandle>> h = core.Attach(100 + i, absl::Seconds(5));
    ASSERT_TRUE(h.ok());
    absl::StatusOr<std::optional<v1::TokenEvent>> ev = (*h)->Next(absl::Seconds(5));
    ASSERT_TRUE(ev.ok() && ev->has_value());
    outputs[i].tokens.insert(outputs[i].tokens.end(), (*ev)->token_ids().begin(),
                             (*ev)->token_ids().end());
    outputs[i].text += (*ev)->text();
    handles.push_back(*std::move(h));
  }
  for (size_t i = 0; i < texts.size(); ++i) {
    while (!handles[i]->done()) {
      absl::StatusOr<std::optional<v1::TokenEvent>> ev = handles[i]->Next(absl::Seconds(10));
      ASSERT_TRUE(ev.ok() && ev->has_value());
      EXPECT_EQ((*ev)->index(), outputs[i].tokens.size());
      outputs[i].tokens.insert(outputs[i].tokens.end(), (*ev)->token_ids().begin(),
                               (*ev)->token_ids().end());
      outputs[i].text += (*ev)->text();
      outputs[i].finish = (*ev)->finish_reason();
    }
    ExpectSameAsGenerate(*engine_, requests[i], outputs[i]);
  }
  // Some decode steps ran more than one sequence.
  const std::vector<int64_t> buckets =
      metrics.GetHistogram("blockserve_decoder_batch_size", "", {})->bucket_counts();
  int64_t multi = 0;
  for (size_t b = 1; b < buckets.size(); ++b) multi += buckets[b];
  EXPECT_GT(multi, 0);
  EXPECT_EQ(core.active_sequences(), 0);
}

TEST_F(DecoderCoreTest, CancelEndsTheStreamAndFreesTheKv) {
  DecoderCore core(*engine_, {});
  Request r;
  r.stop = {/*max_new_tokens=*/1000, /*ignore_eos=*/true, {}, {}};
  Output out;
  ASSERT_TRUE(core.Admit(Prefill(*engine_, 7, Prompt(r), r, &out)).ok());
  EXPECT_GT(core.reserved_kv_bytes(), 0);
  absl::StatusOr<std::unique_ptr<StreamHandle>> h = core.Attach(7, absl::Seconds(5));
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE((*h)->Next(absl::Seconds(5)).ok());
  const DecoderCore::CancelResult c = core.Cancel(7, "test");
  EXPECT_TRUE(c.was_active);
  EXPECT_EQ(core.active_sequences(), 0);
  EXPECT_EQ(core.reserved_kv_bytes(), 0);
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
  while (!(*h)->done()) {
    absl::StatusOr<std::optional<v1::TokenEvent>> ev = (*h)->Next(absl::Seconds(5));
    ASSERT_TRUE(ev.ok() && ev->has_value());
    finish = (*ev)->finish_reason();
    if (finish != v1::FINISH_REASON_UNSPECIFIED) {
      EXPECT_EQ((*ev)->stats().tokens_generated(), c.tokens_generated);
    }
  }
  EXPECT_EQ(finish, v1::FINISH_REASON_CANCELLED);
  EXPECT_FALSE(core.Cancel(7).was_active);  // idempotent
  EXPECT_FALSE(core.Cancel(12345).was_active);
}

TEST_F(DecoderCoreTest, DestroyingTheHandleCancelsTheSequence) {
  DecoderCore core(*engine_, {});
  Request r;
  r.stop = {/*max_new_tokens=*/1000, /*ignore_eos=*/true, {}, {}};
  Output out;
  ASSERT_TRUE(core.Admit(Prefill(*engine_, 8, Prompt(r), r, &out)).ok());
  {
    absl::StatusOr<std::unique_ptr<StreamHandle>> h = core.Attach(8, absl::Seconds(5));
    ASSERT_TRUE(h.ok());
  }
  EXPECT_EQ(core.active_sequences(), 0);
  EXPECT_EQ(core.Attach(8, absl::ZeroDuration()).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(DecoderCoreTest, StopStringEndsWithStopAndCutsTheText) {
  DecoderCore core(*engine_, {});
  Request r;
  r.stop.max_new_tokens = 40;
  const engine::Generation free_run = Reference(*engine_, Prompt(r), r);
  ASSERT_GT(free_run.text.size(), 12u);
  r.stop.stop_strings = {free_run.text.substr(free_run.text.size() / 2, 3)};
  const Output out = Decode(core, *engine_, 2, r);
  ExpectSameAsGenerate(*engine_, r, out);
  EXPECT_EQ(out.finish, v1::FINISH_REASON_STOP);
  EXPECT_EQ(out.text.find(r.stop.stop_strings[0]), std::string::npos);
}

TEST_F(DecoderCoreTest, StopTokenIdIsReturnedWithoutItsText) {
  DecoderCore core(*engine_, {});
  Request r;
  r.stop.max_new_tokens = 40;
  const engine::Generation free_run = Reference(*engine_, Prompt(r), r);
  const int32_t stop_id = free_run.tokens[5];
  const size_t at =
      std::find(free_run.tokens.begin(), free_run.tokens.end(), stop_id) - free_run.tokens.begin();
  r.stop.stop_token_ids = {stop_id};
  const Output out = Decode(core, *engine_, 3, r);
  EXPECT_EQ(out.finish, v1::FINISH_REASON_STOP);
  EXPECT_EQ(out.tokens,
            std::vector<int32_t>(free_run.tokens.begin(), free_run.tokens.begin() + at + 1));
  std::string before;
  for (size_t i = 0; i < at; ++i)
    before += *engine::TokenText(engine_->tokenizer(), free_run.tokens[i]);
  EXPECT_EQ(out.text, engine::SanitizeUtf8(before));
}

TEST_F(DecoderCoreTest, MaxNewTokensEndsWithLength) {
  DecoderCore core(*engine_, {});
  Request r;
  r.stop.max_new_tokens = 5;
  const Output out = Decode(core, *engine_, 4, r);
  ExpectSameAsGenerate(*engine_, r, out);
  EXPECT_EQ(out.tokens.size(), 5u);
  EXPECT_EQ(out.finish, v1::FINISH_REASON_LENGTH);
}

TEST_F(DecoderCoreTest, FirstTokenAloneCanFinish) {
  DecoderCore core(*engine_, {});
  Request r;
  r.stop.max_new_tokens = 1;
  const Output out = Decode(core, *engine_, 5, r);
  EXPECT_EQ(out.tokens.size(), 1u);
  EXPECT_EQ(out.finish, v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(out.stats.tokens_generated(), 0u);
}

TEST_F(DecoderCoreTest, EosEndsWithEosAndIsNotReturned) {
  Request r;
  r.stop.max_new_tokens = 40;
  const engine::Generation free_run = Reference(*engine_, Prompt(r), r);
  const int32_t eos = free_run.tokens[6];
  std::unique_ptr<engine::Engine> e = LoadTinyModel("eos", {.seed = 3}, eos);
  ASSERT_EQ(std::count(e->eos_ids().begin(), e->eos_ids().end(), eos), 1);
  DecoderCore core(*e, {});
  const Output out = Decode(core, *e, 6, r);
  ExpectSameAsGenerate(*e, r, out);
  EXPECT_EQ(out.finish, v1::FINISH_REASON_EOS);
  EXPECT_EQ(std::count(out.tokens.begin(), out.tokens.end(), eos), 0);
  r.stop.ignore_eos = true;  // then it runs to max_new_tokens
  const Output ignoring = Decode(core, *e, 7, r);
  EXPECT_EQ(ignoring.finish, v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(ignoring.tokens, free_run.tokens);
}

TEST_F(DecoderCoreTest, ContextLengthEndsWithLength) {
  std::unique_ptr<engine::Engine> e =
      LoadTinyModel("short", {.seed = 3, .max_position_embeddings = 40});
  DecoderCore core(*e, {});
  Request r;
  r.stop = {/*max_new_tokens=*/100, /*ignore_eos=*/true, {}, {}};
  const int64_t prompt = static_cast<int64_t>(e->tokenizer().Encode(r.prompt_text).size());
  ASSERT_LT(prompt, 36);
  const Output out = Decode(core, *e, 1, r);
  EXPECT_EQ(out.finish, v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(static_cast<int64_t>(out.tokens.size()), 40 - prompt);  // prompt + output = context
}

TEST_F(DecoderCoreTest, OverCapacityIsResourceExhausted) {
  Request r;
  r.stop = {/*max_new_tokens=*/1000, /*ignore_eos=*/true, {}, {}};
  Output out;
  {
    DecoderCore core(*engine_, {.max_active_sequences = 1});
    ASSERT_TRUE(core.Admit(Prefill(*engine_, 1, Prompt(r), r, &out)).ok());
    EXPECT_EQ(core.Admit(Prefill(*engine_, 2, Prompt(r), r, &out)).code(),
              absl::StatusCode::kResourceExhausted);
    EXPECT_EQ(core.Reserve(3, 10, 10).status().code(), absl::StatusCode::kResourceExhausted);
  }
  {
    DecoderCore core(*engine_, {.max_kv_bytes = 1 << 10});
    EXPECT_EQ(core.Admit(Prefill(*engine_, 1, Prompt(r), r, &out)).code(),
              absl::StatusCode::kResourceExhausted);
  }
}

TEST_F(DecoderCoreTest, DuplicateIdIsAlreadyExists) {
  DecoderCore core(*engine_, {});
  absl::StatusOr<DecoderCore::Reservation> a = core.Reserve(9, 10, 10);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(core.Reserve(9, 10, 10).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(core.Reserve(0, 10, 10).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(DecoderCoreTest, AttachWaitsForASequenceThatArrivesLater) {
  DecoderCore core(*engine_, {});
  Request r;
  Output out;
  SequenceInput input = Prefill(*engine_, 11, Prompt(r), r, &out);
  std::thread consumer([&] { Drain(core, 11, &out); });
  absl::SleepFor(absl::Milliseconds(100));
  ASSERT_TRUE(core.Admit(std::move(input)).ok());
  consumer.join();
  ExpectSameAsGenerate(*engine_, r, out);
}

TEST_F(DecoderCoreTest, AttachToUnknownIsNotFoundAfterTheWait) {
  DecoderCore core(*engine_, {});
  const absl::Time t0 = absl::Now();
  EXPECT_EQ(core.Attach(77, absl::Milliseconds(150)).status().code(), absl::StatusCode::kNotFound);
  EXPECT_GE(absl::Now() - t0, absl::Milliseconds(150));
  EXPECT_EQ(core.Attach(0, absl::ZeroDuration()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(DecoderCoreTest, SecondAttachIsAlreadyExists) {
  DecoderCore core(*engine_, {});
  Request r;
  r.stop = {/*max_new_tokens=*/1000, /*ignore_eos=*/true, {}, {}};
  Output out;
  ASSERT_TRUE(core.Admit(Prefill(*engine_, 12, Prompt(r), r, &out)).ok());
  absl::StatusOr<std::unique_ptr<StreamHandle>> first = core.Attach(12, absl::Seconds(5));
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(core.Attach(12, absl::Seconds(5)).status().code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(DecoderCoreTest, UnclaimedSequenceIsDroppedWithoutBeingDecoded) {
  MetricsRegistry metrics;
  DecoderCore core(*engine_, {.claim_timeout = absl::Milliseconds(300), .metrics = &metrics});
  Request r;
  r.stop = {/*max_new_tokens=*/200, /*ignore_eos=*/true, {}, {}};
  Output out;
  ASSERT_TRUE(core.Admit(Prefill(*engine_, 13, Prompt(r), r, &out)).ok());
  EXPECT_EQ(core.active_sequences(), 1);
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  while (core.active_sequences() > 0 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(core.active_sequences(), 0);
  EXPECT_EQ(core.reserved_kv_bytes(), 0);
  EXPECT_EQ(metrics.GetCounter("blockserve_decoder_sequences_dropped_total", "")->value(), 1);
  // Not one decode step ran for it (a free run would sample 199 tokens).
  EXPECT_EQ(metrics.GetCounter("blockserve_decoder_tokens_generated_total", "")->value(), 0);
  EXPECT_EQ(core.Attach(13, absl::ZeroDuration()).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(DecoderCoreTest, SequenceClaimedAfterItArrivedIsDecodedFromTheClaimOn) {
  MetricsRegistry metrics;
  DecoderCore core(*engine_, {.metrics = &metrics});
  Request r;
  r.stop = {/*max_new_tokens=*/30, /*ignore_eos=*/true, {}, {}};
  Output out;
  ASSERT_TRUE(core.Admit(Prefill(*engine_, 16, Prompt(r), r, &out)).ok());
  absl::SleepFor(absl::Milliseconds(100));  // the decode loop runs meanwhile, without it
  EXPECT_EQ(metrics.GetCounter("blockserve_decoder_tokens_generated_total", "")->value(), 0);
  Drain(core, 16, &out);
  ExpectSameAsGenerate(*engine_, r, out);
  EXPECT_EQ(out.stats.tokens_generated(), 29u);
}

TEST_F(DecoderCoreTest, BrokenHandoffIsUnavailableToAWaitingStream) {
  DecoderCore core(*engine_, {});
  absl::StatusOr<DecoderCore::Reservation> reservation = core.Reserve(14, 10, 10);
  ASSERT_TRUE(reservation.ok());
  absl::Status attach_status;
  std::thread consumer([&] { attach_status = core.Attach(14, absl::Seconds(5)).status(); });
  absl::SleepFor(absl::Milliseconds(100));
  *reservation = DecoderCore::Reservation();  // the KV stream broke
  consumer.join();
  EXPECT_EQ(attach_status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(core.active_sequences(), 0);
}

TEST_F(DecoderCoreTest, CancelDuringHandoffRejectsTheAdmission) {
  DecoderCore core(*engine_, {});
  Request r;
  Output out;
  SequenceInput input = Prefill(*engine_, 15, Prompt(r), r, &out);
  absl::StatusOr<DecoderCore::Reservation> reservation =
      core.Reserve(15, input.kv.num_tokens(), 16);
  ASSERT_TRUE(reservation.ok());
  EXPECT_TRUE(core.Cancel(15).was_active);
  EXPECT_EQ(core.Admit(*std::move(reservation), std::move(input)).code(),
            absl::StatusCode::kCancelled);
  EXPECT_EQ(core.active_sequences(), 0);
}

}  // namespace
}  // namespace blockserve::decoder
