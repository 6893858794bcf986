#include "eval/rag_eval.h"

#include <cstdlib>
#include <fstream>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/generate.h"
#include "engine/prompt.h"
#include <nlohmann/json.hpp>

namespace blockserve::eval {
namespace {

absl::StatusOr<std::string> StringField(const nlohmann::json& row, const char* name) {
  auto it = row.find(name);
  if (it == row.end() || !it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("expected a string field \"", name, "\""));
  }
  return it->get<std::string>();
}

std::string_view Trim(std::string_view s) {
  const absl::string_view t = absl::StripAsciiWhitespace(absl::string_view(s.data(), s.size()));
  return std::string_view(t.data(), t.size());
}

}  // namespace

absl::StatusOr<RagExample> ParseRagExample(std::string_view json_line) {
  nlohmann::json row = nlohmann::json::parse(json_line, nullptr, /*allow_exceptions=*/false);
  if (row.is_discarded() || !row.is_object()) {
    return absl::InvalidArgumentError("expected a JSON object");
  }
  RagExample ex;
  for (auto [field, name] : {std::pair{&ex.kind, "kind"}, {&ex.system, "system"},
                             {&ex.query, "query"}, {&ex.answer, "answer"}}) {
    absl::StatusOr<std::string> value = StringField(row, name);
    if (!value.ok()) return value.status();
    *field = *std::move(value);
  }
  auto passages = row.find("passages");
  if (passages == row.end() || !passages->is_array()) {
    return absl::InvalidArgumentError("expected an array field \"passages\"");
  }
  for (const nlohmann::json& p : *passages) {
    if (!p.is_string()) return absl::InvalidArgumentError("\"passages\" must hold strings");
    ex.passages.push_back(p.get<std::string>());
  }
  if (auto candidates = row.find("candidates"); candidates != row.end()) {
    if (!candidates->is_array()) {
      return absl::InvalidArgumentError("\"candidates\" must be an array of strings");
    }
    for (const nlohmann::json& c : *candidates) {
      if (!c.is_string()) return absl::InvalidArgumentError("\"candidates\" must hold strings");
      ex.candidates.push_back(c.get<std::string>());
    }
  }
  return ex;
}

absl::StatusOr<std::vector<RagExample>> LoadRagExamples(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::vector<RagExample> examples;
  std::string line;
  for (int64_t line_no = 1; std::getline(in, line); ++line_no) {
    if (Trim(line).empty()) continue;
    absl::StatusOr<RagExample> ex = ParseRagExample(line);
    if (!ex.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_no, ": ", ex.status().message()));
    }
    examples.push_back(*std::move(ex));
  }
  return examples;
}

bool AnswerMatches(std::string_view generated, std::string_view gold) {
  return Trim(generated) == Trim(gold);
}

bool IsCorrect(bool ended_at_eos, std::string_view generated, std::string_view gold) {
  return ended_at_eos && AnswerMatches(generated, gold);
}

std::string RepoPath(const std::string& path) {
  const char* root = std::getenv("BUILD_WORKSPACE_DIRECTORY");
  if (root == nullptr || path.empty() || path[0] == '/') return path;
  return absl::StrCat(root, "/", path);
}

absl::StatusOr<ExampleOutcome> AnswerExample(engine::Engine& engine, const RagExample& example,
                                             const engine::PrefillOptions& options,
                                             int64_t max_new_tokens) {
  const engine::Tokenizer& tok = engine.tokenizer();
  std::vector<std::vector<int32_t>> block_tokens;
  std::vector<int32_t> system = engine::SystemBlockTokens(tok, example.system);
  if (!system.empty()) block_tokens.push_back(std::move(system));
  for (const std::string& p : example.passages) {
    block_tokens.push_back(engine::PassageBlockTokens(tok, p));
  }
  const std::vector<int32_t> query = engine::QueryBlockTokens(tok, example.query);
  std::vector<engine::BlockInput> blocks;
  ExampleOutcome out;
  for (const std::vector<int32_t>& b : block_tokens) {
    blocks.push_back(engine::BlockInput{b});
    out.prompt_tokens += b.size();
  }
  out.prompt_tokens += query.size();
  engine::StopRules stop;
  stop.max_new_tokens = max_new_tokens;
  absl::StatusOr<engine::Generation> g =
      engine::Generate(engine, blocks, query, options, engine::SamplingParams{}, stop);
  if (!g.ok()) return g.status();
  out.generated = g->text;
  out.tokens = g->tokens;
  out.ended_at_eos = g->finish == engine::FinishReason::kEos;
  out.correct = IsCorrect(out.ended_at_eos, g->text, example.answer);
  return out;
}

absl::StatusOr<Accuracy> Evaluate(engine::Engine& engine, const std::vector<RagExample>& examples,
                                  const engine::PrefillOptions& options,
                                  std::vector<bool>* correct) {
  Accuracy acc;
  int64_t prompt_tokens = 0;
  if (correct != nullptr) correct->clear();
  for (const RagExample& ex : examples) {
    absl::StatusOr<ExampleOutcome> outcome = AnswerExample(engine, ex, options);
    if (!outcome.ok()) return outcome.status();
    if (correct != nullptr) correct->push_back(outcome->correct);
    acc.correct += outcome->correct;
    ++acc.total;
    prompt_tokens += outcome->prompt_tokens;
  }
  if (acc.total > 0) acc.mean_prompt_tokens = static_cast<double>(prompt_tokens) / acc.total;
  return acc;
}

std::optional<double> RandomCandidatePercent(const std::vector<RagExample>& examples) {
  if (examples.empty()) return std::nullopt;
  double expected_correct = 0;
  for (const RagExample& ex : examples) {
    if (ex.candidates.empty()) return std::nullopt;
    for (const std::string& c : ex.candidates) {
      if (AnswerMatches(c, ex.answer)) expected_correct += 1.0 / ex.candidates.size();
    }
  }
  return 100.0 * expected_correct / examples.size();
}

std::string RenderByCandidateCount(const std::vector<RagExample>& examples,
                                   const std::vector<bool>& correct) {
  std::map<size_t, std::vector<RagExample>> by_count;  // candidates -> examples
  std::map<size_t, Accuracy> accuracy;
  for (size_t i = 0; i < examples.size() && i < correct.size(); ++i) {
    const size_t count = examples[i].candidates.size();
    if (count == 0) continue;
    by_count[count].push_back(examples[i]);
    accuracy[count].correct += correct[i];
    ++accuracy[count].total;
  }
  std::string out =
      "| candidates | accuracy | a random candidate |\n| ---: | ---: | ---: |\n";
  for (const auto& [count, group] : by_count) {
    absl::StrAppendFormat(&out, "| %d | %s | %.1f%% |\n", count,
                          FormatAccuracy(accuracy[count]), *RandomCandidatePercent(group));
  }
  return out;
}

std::string FormatAccuracy(const Accuracy& a) {
  return absl::StrFormat("%.1f%% (%d/%d)", a.percent(), a.correct, a.total);
}

std::string RenderTable(const std::vector<std::string>& result_columns,
                        const std::vector<TableRow>& rows) {
  std::string out = "| model | attention | positions re-encoded | global blocks |";
  std::string rule = "| --- | --- | --- | --- |";
  for (const std::string& c : result_columns) {
    absl::StrAppend(&out, " ", c, " |");
    absl::StrAppend(&rule, " ---: |");
  }
  absl::StrAppend(&out, "\n", rule, "\n");
  for (const TableRow& r : rows) {
    absl::StrAppend(&out, "| ", r.model, " | ", r.attention, " | ", r.reencode, " | ",
                    r.global_blocks, " |");
    for (const Accuracy& a : r.cells) absl::StrAppend(&out, " ", FormatAccuracy(a), " |");
    absl::StrAppend(&out, "\n");
  }
  return out;
}

}  // namespace blockserve::eval
