// demo: caches a handful of passages as blocks and answers one question with
// Block-Attention and with full prefill, printing the text, the tokens reused vs
// computed, and the median TTFT of each.
//
// By default it uses the shipped block-fine-tuned model (models/blockserve-tiny-rag) on
// the first question of samples/questions.txt, whose expected answer it checks. With
// --random_model it writes a larger random-weight model and asks over longer generic
// passages instead (noise answers, a wider TTFT gap).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "engine/memory.h"
#include "engine/engine.h"
#include "engine/generate.h"
#include "engine/prompt.h"
#include "engine/tiny_model.h"
#include "engine/utf8.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, model_dir, "models/blockserve-tiny-rag",
          "model folder (relative paths: from the repository root)");
ABSL_FLAG(std::string, samples_dir, "samples",
          "passages.jsonl and questions.txt; the first question is asked");
ABSL_FLAG(bool, random_model, false,
          "write a random-weight model (4 layers, hidden 256) to a temporary folder and ask "
          "over longer generic passages instead of the shipped model and the samples");
ABSL_FLAG(int, repeats, 7, "timed repetitions of each prefill (the median is printed)");
ABSL_FLAG(int, max_new_tokens, 16, "tokens to generate");
ABSL_FLAG(int, passage_copies, 4,
          "with --random_model: each generic passage is repeated this many times");

namespace be = blockserve::engine;

namespace {

// --random_model's generic passages and question.
const char* const kPassages[] = {
    "The river Elbe rises in the Krkonose mountains and flows through Dresden and Hamburg "
    "before it reaches the North Sea.",
    "Block attention encodes every retrieved passage as its own block, so the key and value "
    "states of a passage are computed once and reused by every later question.",
    "The capital of France is Paris, the capital of Italy is Rome and the capital of Spain "
    "is Madrid.",
    "Water boils at one hundred degrees Celsius at sea level and at a lower temperature on "
    "a high mountain.",
    "The report was written by the team in the year 2024 and it describes how the first "
    "computer programs were written.",
};
const char kQuestion[] = "Question: Which river flows through Dresden? Answer:";

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Relative paths are taken from the repository root under `bazel run`.
std::string RepoPath(const std::string& path) {
  const char* root = std::getenv("BUILD_WORKSPACE_DIRECTORY");
  if (root == nullptr || path.empty() || path[0] == '/') return path;
  return absl::StrCat(root, "/", path);
}

// What is asked: system prompt, passages, query, and the expected answer if known.
struct Request {
  std::string system;
  std::vector<std::string> passages;
  std::string query;
  std::string expected;
};

Request GenericRequest() {
  Request r{.query = kQuestion};
  for (const char* p : kPassages) {
    std::string text;
    for (int i = 0; i < absl::GetFlag(FLAGS_passage_copies); ++i) absl::StrAppend(&text, p, " ");
    r.passages.push_back(text);
  }
  return r;
}

// The first question of samples/questions.txt ("ids | query | expected answer" lines;
// "system: TEXT" sets the system prompt) over its passages from passages.jsonl.
absl::StatusOr<Request> SampleRequest(const std::string& dir) {
  std::map<std::string, std::string> text_of;
  std::ifstream passages(dir + "/passages.jsonl");
  if (!passages) return absl::NotFoundError(absl::StrCat("cannot read ", dir, "/passages.jsonl"));
  for (std::string line; std::getline(passages, line);) {
    if (line.empty()) continue;
    nlohmann::json row = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!row.is_object() || !row["id"].is_string() || !row["text"].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(dir, "/passages.jsonl: bad row: ", line));
    }
    text_of[row["id"].get<std::string>()] = row["text"].get<std::string>();
  }
  std::ifstream questions(dir + "/questions.txt");
  if (!questions) return absl::NotFoundError(absl::StrCat("cannot read ", dir, "/questions.txt"));
  Request r;
  for (std::string line; std::getline(questions, line);) {
    absl::string_view rest = absl::StripAsciiWhitespace(line);
    if (rest.empty() || rest[0] == '#') continue;
    if (absl::ConsumePrefix(&rest, "system:")) {
      r.system = std::string(absl::StripAsciiWhitespace(rest));
      continue;
    }
    std::vector<std::string> fields = absl::StrSplit(line, '|');
    if (fields.size() < 2) return absl::InvalidArgumentError("questions.txt: bad line: " + line);
    for (absl::string_view id : absl::StrSplit(fields[0], ',', absl::SkipWhitespace())) {
      auto it = text_of.find(std::string(absl::StripAsciiWhitespace(id)));
      if (it == text_of.end()) {
        return absl::NotFoundError(absl::StrCat("questions.txt: unknown passage id ", std::string(id)));
      }
      r.passages.push_back(it->second);
    }
    r.query = std::string(absl::StripAsciiWhitespace(fields[1]));
    if (fields.size() > 2) r.expected = std::string(absl::StripAsciiWhitespace(fields[2]));
    return r;
  }
  return absl::InvalidArgumentError(dir + "/questions.txt has no question");
}

absl::StatusOr<std::string> PrepareModel() {
  if (!absl::GetFlag(FLAGS_random_model)) {
    std::string dir = RepoPath(absl::GetFlag(FLAGS_model_dir));
    if (!std::filesystem::exists(dir + "/config.json")) {
      return absl::NotFoundError(absl::StrCat("no model in ", dir,
                                              " (pass --model_dir, or --random_model)"));
    }
    return dir;
  }
  std::string dir = (std::filesystem::temp_directory_path() / "blockserve-demo-model").string();
  be::TinyModelOptions o;  // small but not trivial: 4 layers, hidden 256, GQA 8/2
  o.hidden_size = 256;
  o.intermediate_size = 768;
  o.num_layers = 4;
  o.num_heads = 8;
  o.num_kv_heads = 2;
  std::cout << "Writing a random-weight model (seed " << o.seed << ") to " << dir << "\n";
  if (absl::Status s = be::WriteTinyModel(dir, o); !s.ok()) return s;
  return dir;
}

// Median TTFT (prefill + first sample) of `repeats` greedy one-token generations.
absl::StatusOr<double> MedianTtft(be::Engine& engine, const std::vector<be::BlockInput>& blocks,
                                  const std::vector<int32_t>& query, const be::PrefillOptions& opt) {
  std::vector<double> ms;
  for (int i = 0; i < absl::GetFlag(FLAGS_repeats); ++i) {
    absl::StatusOr<be::Generation> g = be::Generate(engine, blocks, query, opt, {}, {.max_new_tokens = 1});
    if (!g.ok()) return g.status();
    ms.push_back(g->ttft_ms);
  }
  return Median(ms);
}

int Run() {
  absl::StatusOr<std::string> dir = PrepareModel();
  if (!dir.ok()) return std::cerr << "demo: " << dir.status() << "\n", 1;
  absl::StatusOr<std::unique_ptr<be::Engine>> loaded = be::Engine::Load(*dir);
  if (!loaded.ok()) return std::cerr << "demo: " << loaded.status() << "\n", 1;
  be::Engine& engine = **loaded;
  const bool random_model = absl::GetFlag(FLAGS_random_model);
  absl::StatusOr<Request> request =
      random_model ? GenericRequest() : SampleRequest(RepoPath(absl::GetFlag(FLAGS_samples_dir)));
  if (!request.ok()) return std::cerr << "demo: " << request.status() << "\n", 1;
  const be::ModelConfig& c = engine.config();
  std::cout << absl::StrFormat("Model: %s, %d layers, hidden %d, %d heads / %d KV heads, vocab %d\n",
                               c.model_type, c.num_hidden_layers, c.hidden_size,
                               c.num_attention_heads, c.num_key_value_heads, c.vocab_size);

  // Ingest: every passage is encoded alone at position 0 and kept as a cached block.
  // The system block (engine/prompt.h) is cached the same way.
  std::vector<std::vector<int32_t>> passage_tokens;
  std::vector<be::KvCache> cache;
  if (auto system = be::SystemBlockTokens(engine.tokenizer(), request->system); !system.empty()) {
    passage_tokens.push_back(std::move(system));
  }
  for (const std::string& text : request->passages) {
    passage_tokens.push_back(be::PassageBlockTokens(engine.tokenizer(), text));
  }
  for (const std::vector<int32_t>& tokens : passage_tokens) {
    absl::StatusOr<be::KvCache> kv = engine.EncodeBlock(tokens);
    if (!kv.ok()) return std::cerr << "demo: " << kv.status() << "\n", 1;
    cache.push_back(*std::move(kv));
  }
  std::vector<be::BlockInput> blocks;
  int64_t passage_total = 0;
  for (size_t i = 0; i < cache.size(); ++i) {
    blocks.push_back({passage_tokens[i], &cache[i]});
    passage_total += passage_tokens[i].size();
  }
  const std::vector<int32_t> query = be::QueryBlockTokens(engine.tokenizer(), request->query);
  std::cout << absl::StrFormat(
      "Prompt: %d blocks (system + %d passages, %d tokens, cached) + query (%d tokens)\n",
      blocks.size(), request->passages.size(), passage_total, query.size());
  for (const std::string& p : request->passages) {
    std::cout << "  passage: " << absl::StripTrailingAsciiWhitespace(p) << "\n";
  }
  std::cout << "Query: " << request->query << "\n";
  if (!request->expected.empty()) std::cout << "Expected answer: " << request->expected << "\n";
  std::cout << "\n";

  const be::StopRules stop{.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens)};
  double ttft_ms[2] = {0, 0};
  for (be::AttentionMode mode : {be::AttentionMode::kBlock, be::AttentionMode::kFull}) {
    const be::PrefillOptions opt{.mode = mode};
    absl::StatusOr<be::Generation> g = be::Generate(engine, blocks, query, opt, {}, stop);
    if (!g.ok()) return std::cerr << "demo: " << g.status() << "\n", 1;
    absl::StatusOr<double> ttft = MedianTtft(engine, blocks, query, opt);
    if (!ttft.ok()) return std::cerr << "demo: " << ttft.status() << "\n", 1;
    ttft_ms[mode == be::AttentionMode::kBlock ? 0 : 1] = *ttft;
    const char* name = mode == be::AttentionMode::kBlock ? "block-attention" : "full prefill";
    std::cout << absl::StrFormat("[%s]\n  answer (%d tokens, %s): %s", name, g->tokens.size(),
                                 be::FinishReasonName(g->finish),
                                 be::SanitizeUtf8(g->text, /*printable=*/true));
    if (!request->expected.empty()) {
      std::cout << (absl::StripAsciiWhitespace(g->text) == request->expected ? "  (correct)"
                                                                              : "  (WRONG)");
    }
    std::cout << "\n";
    std::cout << absl::StrFormat(
        "  tokens reused %d, computed %d | FLOPs to first token %.3g (full prefill %.3g, %.1f%% less)\n"
        "  TTFT median of %d: %.2f ms\n\n",
        g->stats.tokens_reused, g->stats.tokens_computed, g->stats.flops_to_first_token,
        g->stats.flops_full_prefill,
        100 * (1 - g->stats.flops_to_first_token / g->stats.flops_full_prefill),
        absl::GetFlag(FLAGS_repeats), *ttft);
  }
  std::cout << absl::StrFormat(
      "TTFT block-attention %.2f ms vs full prefill %.2f ms: %.1f%% lower (%.1fx faster)\n\n",
      ttft_ms[0], ttft_ms[1], 100 * (1 - ttft_ms[0] / ttft_ms[1]), ttft_ms[1] / ttft_ms[0]);
  if (random_model) {
    std::cout << "Note: the weights are random, so the answer text is noise; the timing and\n"
                 "reuse figures are what this demo shows.\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Answers one RAG question with Block-Attention and with full prefill on a small\n"
      "model, printing the answer, tokens reused vs computed and TTFT.\n"
      "Default: the shipped model models/blockserve-tiny-rag on samples/questions.txt's first\n"
      "question; --random_model: a random-weight model over longer generic passages.");
  absl::ParseCommandLine(argc, argv);
  blockserve::KeepFreedMemoryForReuse();
  return Run();
}
