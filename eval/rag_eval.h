// The accuracy experiment of the Block-Attention paper (arXiv 2409.15355, Table 1 and the
// "more blocks than seen in training" remark) on BlockServe's synthetic RAG task.
//
// An example is a JSONL row written by training/train.py:
//   {"kind": "city"|...|"employer_city", "system": "...", "passages": ["...", ...],
//    "query": "Question: ... Answer:", "answer": " Varnholm", "gold": [i, ...]}
// It is laid out as a request exactly as engine/prompt.h says (system block, one block
// per passage, the query last), answered greedily through engine::Generate, and scored
// by exact match of the generated text with the answer (surrounding spaces ignored).
#ifndef BLOCKSERVE_EVAL_RAG_EVAL_H_
#define BLOCKSERVE_EVAL_RAG_EVAL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"

namespace blockserve::eval {

struct RagExample {
  std::string kind;
  std::string system;
  std::vector<std::string> passages;
  std::string query;
  std::string answer;
  // Optional: the answer the same question has for every subject of the prompt (each
  // person's value of the asked kind; for two-hop, each company card's city).
  std::vector<std::string> candidates;
};

// Parses one JSONL row; InvalidArgument naming the missing or mistyped field.
absl::StatusOr<RagExample> ParseRagExample(std::string_view json_line);

// Reads every non-empty line of `path`; errors carry "path:line: ".
absl::StatusOr<std::vector<RagExample>> LoadRagExamples(const std::string& path);

// Exact match after trimming ASCII whitespace from both ends of both strings.
bool AnswerMatches(std::string_view generated, std::string_view gold);

// The score of one answer: correct when generation ended at EOS (not at the token
// limit) and the text matches the gold answer (AnswerMatches).
bool IsCorrect(bool ended_at_eos, std::string_view generated, std::string_view gold);

// A path given on the command line: relative ones are taken from the repository root
// under `bazel run` (BUILD_WORKSPACE_DIRECTORY), from the working directory otherwise.
std::string RepoPath(const std::string& path);

struct ExampleOutcome {
  std::string generated;        // the generated text, EOS excluded
  std::vector<int32_t> tokens;  // the generated ids, EOS excluded
  bool ended_at_eos = false;    // false: stopped at max_new_tokens
  bool correct = false;
  int64_t prompt_tokens = 0;
};

// Answers one example greedily (at most `max_new_tokens` tokens, stopping at EOS).
absl::StatusOr<ExampleOutcome> AnswerExample(engine::Engine& engine, const RagExample& example,
                                             const engine::PrefillOptions& options,
                                             int64_t max_new_tokens = 16);

struct Accuracy {
  int64_t correct = 0;
  int64_t total = 0;
  double mean_prompt_tokens = 0;
  double percent() const { return total == 0 ? 0 : 100.0 * correct / total; }
};

// Runs every example through AnswerExample; fails on the first engine error. With
// `correct`, also records each example's outcome there (one entry per example).
absl::StatusOr<Accuracy> Evaluate(engine::Engine& engine, const std::vector<RagExample>& examples,
                                  const engine::PrefillOptions& options,
                                  std::vector<bool>* correct = nullptr);

// The expected exact match of answering each example with one of its `candidates` drawn
// uniformly: what knowing the kind of answer without finding the right passage scores.
// nullopt when some example has no candidates.
std::optional<double> RandomCandidatePercent(const std::vector<RagExample>& examples);

// Accuracy grouped by the number of candidates (for single-hop questions, the persons of
// the prompt), next to a random candidate's score, as a Markdown table. A model that finds
// the right passage keeps its accuracy as the count grows; one that only knows the kind
// of answer falls as 1/count. `correct[i]` is example i's outcome; examples without
// candidates are left out.
std::string RenderByCandidateCount(const std::vector<RagExample>& examples,
                                   const std::vector<bool>& correct);

// One row of a results table: which model, how it attends, and its accuracy per column.
struct TableRow {
  std::string model;
  std::string attention;  // "full" or "block"
  std::string reencode;   // "yes", "no" or "-" (full attention)
  std::string global_blocks;
  std::vector<Accuracy> cells;
};

// "xx.x% (c/n)", as in the tables.
std::string FormatAccuracy(const Accuracy& accuracy);

// A Markdown table: the four describing columns, then one "xx.x% (c/n)" column each.
std::string RenderTable(const std::vector<std::string>& result_columns,
                        const std::vector<TableRow>& rows);

}  // namespace blockserve::eval

#endif  // BLOCKSERVE_EVAL_RAG_EVAL_H_
