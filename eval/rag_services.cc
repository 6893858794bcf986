#include "eval/rag_services.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace blockserve::eval {

std::string PassageId(std::string_view text) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a, 64 bits
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return absl::StrFormat("p-%016x", h);
}

std::vector<v1::Passage> PassagesOf(const std::vector<RagExample>& examples) {
  std::vector<v1::Passage> passages;
  std::set<std::string> seen;
  for (const RagExample& ex : examples) {
    for (const std::string& text : ex.passages) {
      std::string id = PassageId(text);
      if (!seen.insert(id).second) continue;
      v1::Passage& p = passages.emplace_back();
      p.set_id(std::move(id));
      p.set_text(text);
    }
  }
  return passages;
}

std::string ModeName(v1::AttentionMode mode) {
  return mode == v1::ATTENTION_MODE_FULL ? "full" : "block";
}

engine::PrefillOptions EngineOptions(v1::AttentionMode mode) {
  engine::PrefillOptions options;
  options.mode = mode == v1::ATTENTION_MODE_FULL ? engine::AttentionMode::kFull
                                                 : engine::AttentionMode::kBlock;
  return options;
}

v1::GenerateRequest MakeRequest(const RagExample& example, v1::AttentionMode mode,
                                int64_t max_new_tokens) {
  v1::GenerateRequest r;
  r.set_system_prompt(example.system);
  for (const std::string& text : example.passages) {
    r.add_passages()->set_passage_id(PassageId(text));
  }
  r.set_query(example.query);
  r.mutable_sampling()->set_temperature(0);  // greedy
  r.mutable_sampling()->set_max_new_tokens(max_new_tokens);
  r.mutable_block_options()->set_mode(mode);
  return r;
}

absl::StatusOr<ServicesOutcome> AskExample(client::RouterClient& router,
                                           const RagExample& example, v1::AttentionMode mode,
                                           int64_t max_new_tokens, absl::Duration timeout) {
  absl::StatusOr<client::Answer> answer =
      router.Ask(MakeRequest(example, mode, max_new_tokens), timeout, nullptr);
  if (!answer.ok()) return answer.status();
  ServicesOutcome out;
  out.generated = std::move(answer->text);
  out.tokens = std::move(answer->token_ids);
  out.summary = std::move(answer->summary);
  out.ended_at_eos = out.summary.finish_reason() == v1::FINISH_REASON_EOS;
  out.correct = IsCorrect(out.ended_at_eos, out.generated, example.answer);
  return out;
}

absl::StatusOr<ComparedExample> CompareExample(client::RouterClient& router,
                                               engine::Engine& engine, const RagExample& example,
                                               v1::AttentionMode mode, int64_t max_new_tokens) {
  ComparedExample c;
  absl::StatusOr<ServicesOutcome> services = AskExample(router, example, mode, max_new_tokens);
  if (!services.ok()) return services.status();
  c.services = *std::move(services);
  absl::StatusOr<ExampleOutcome> local =
      AnswerExample(engine, example, EngineOptions(mode), max_new_tokens);
  if (!local.ok()) return local.status();
  c.engine = *std::move(local);
  c.agree = c.services.tokens == c.engine.tokens &&
            c.services.ended_at_eos == c.engine.ended_at_eos;
  return c;
}

void ModeResult::Add(const ComparedExample& c) {
  ++accuracy.total;
  accuracy.correct += c.services.correct;
  agreements += c.agree;
  ttft_ms.push_back(c.services.summary.ttft_ms());
  cache_hits += c.services.summary.cache_hits();
  cache_misses += c.services.summary.cache_misses();
}

double ModeResult::MedianTtftMs() const {
  if (ttft_ms.empty()) return 0;
  std::vector<double> v = ttft_ms;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string RenderServicesTable(const std::vector<ModeResult>& results) {
  std::string out =
      "| mode | exact match | same answer as in-process engine | median TTFT ms | "
      "cache hits / misses |\n"
      "| --- | ---: | ---: | ---: | ---: |\n";
  for (const ModeResult& r : results) {
    absl::StrAppend(&out, absl::StrFormat("| %s | %s | %d/%d | %.1f | %d / %d |\n", r.mode,
                                          FormatAccuracy(r.accuracy), r.agreements,
                                          r.accuracy.total, r.MedianTtftMs(), r.cache_hits,
                                          r.cache_misses));
  }
  return out;
}

}  // namespace blockserve::eval
