// prompt_tokens: prints, as JSON, the token ids ttft_bench (bench/ttft/ttft_bench.cc)
// builds its prompts from, so llama.cpp is timed on exactly the same ids:
//   {"passage_tokens": 150, "query_tokens": 50, "query": [...],
//    "rows": [{"length": 512, "tokens": 500, "passages": 3, "context": [...]}, ...]}
// where a row's full prompt is context (its passages, concatenated) followed by query.
//
// ttft_bench draws them from one std::mt19937_64 seeded with 1: the query first, then for
// each --lengths entry in order its passages, uniformly in [0, vocab). This mirrors that
// sequence (same seed, same distribution, same order), so it must be given the same
// --lengths, --passage_tokens and --query_tokens as the ttft_bench run it pairs with. If
// ttft_bench's draw changes, this must change with it (a --dump_prompts flag in ttft_bench
// would remove the duplication; bench/peer/README.md says so).
#include <iostream>
#include <random>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/model_config.h"

ABSL_FLAG(std::string, model, "", "model folder (its config.json gives vocab_size)");
ABSL_FLAG(std::string, lengths, "512,2048,8192,32768", "ttft_bench's --lengths");
ABSL_FLAG(int, passage_tokens, 150, "ttft_bench's --passage_tokens");
ABSL_FLAG(int, query_tokens, 50, "ttft_bench's --query_tokens");

namespace {

// As ttft_bench's RandomTokens.
std::vector<int32_t> RandomTokens(std::mt19937_64& rng, int64_t n, int64_t vocab) {
  std::uniform_int_distribution<int32_t> d(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> t(n);
  for (int32_t& x : t) x = d(rng);
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Prints ttft_bench's prompt token ids as JSON.\n"
      "Usage: prompt_tokens --model DIR [--lengths 512,...] [--passage_tokens 150] [--query_tokens 50]");
  absl::ParseCommandLine(argc, argv);
  absl::StatusOr<blockserve::engine::ModelConfig> config =
      blockserve::engine::ModelConfig::FromFile(absl::GetFlag(FLAGS_model) + "/config.json");
  if (!config.ok()) return std::cerr << "prompt_tokens: " << config.status() << "\n", 1;
  const int64_t p_len = absl::GetFlag(FLAGS_passage_tokens), q_len = absl::GetFlag(FLAGS_query_tokens);
  std::mt19937_64 rng(1);
  const std::vector<int32_t> query = RandomTokens(rng, q_len, config->vocab_size);
  std::cout << "{\"passage_tokens\": " << p_len << ", \"query_tokens\": " << q_len
            << ", \"query\": [" << absl::StrJoin(query, ",") << "], \"rows\": [";
  const char* sep = "";
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_lengths), ',')) {
    int64_t len;
    if (!absl::SimpleAtoi(s, &len) || len <= q_len) {
      std::cerr << "prompt_tokens: bad --lengths entry '" << s << "'\n";
      return 2;
    }
    const int64_t k = (len - q_len) / p_len;  // ttft_bench's PassageCount
    std::vector<int32_t> context;
    for (int64_t i = 0; i < k; ++i) {
      const std::vector<int32_t> p = RandomTokens(rng, p_len, config->vocab_size);
      context.insert(context.end(), p.begin(), p.end());
    }
    std::cout << sep << "\n{\"length\": " << len << ", \"tokens\": " << k * p_len + q_len
              << ", \"passages\": " << k << ", \"context\": [" << absl::StrJoin(context, ",") << "]}";
    sep = ",";
  }
  std::cout << "]}\n";
  return 0;
}
