#include "eval/rag_eval.h"

#include <filesystem>
#include <fstream>

#include "engine/prompt.h"
#include "engine/tiny_model.h"
#include "gtest/gtest.h"

namespace blockserve::eval {
namespace {

constexpr char kRow[] =
    R"({"kind": "city", "system": "Answer.", "passages": ["In 1873, Zor Quenn was born in )"
    R"(Varnholm.\n", "The company Trel Labs is based in Oskport.\n"], )"
    R"("query": "Question: Where was Zor Quenn born? Answer:", "answer": " Varnholm", "gold": [0]})";

std::string TempPath(const std::string& name) {
  return (std::filesystem::path(::testing::TempDir()) / name).string();
}

TEST(ParseRagExample, ReadsEveryField) {
  absl::StatusOr<RagExample> ex = ParseRagExample(kRow);
  ASSERT_TRUE(ex.ok()) << ex.status();
  EXPECT_EQ(ex->kind, "city");
  EXPECT_EQ(ex->system, "Answer.");
  ASSERT_EQ(ex->passages.size(), 2u);
  EXPECT_EQ(ex->passages[1], "The company Trel Labs is based in Oskport.\n");
  EXPECT_EQ(ex->query, "Question: Where was Zor Quenn born? Answer:");
  EXPECT_EQ(ex->answer, " Varnholm");
}

TEST(ParseRagExample, NamesTheMissingField) {
  absl::StatusOr<RagExample> ex =
      ParseRagExample(R"({"kind": "city", "system": "", "query": "q", "answer": "a"})");
  ASSERT_FALSE(ex.ok());
  EXPECT_NE(ex.status().message().find("passages"), std::string::npos) << ex.status();
}

TEST(LoadRagExamples, ReportsTheLineOfABadRow) {
  const std::string path = TempPath("bad.jsonl");
  std::ofstream(path) << kRow << "\n\n{\"kind\": 3}\n";
  absl::StatusOr<std::vector<RagExample>> set = LoadRagExamples(path);
  ASSERT_FALSE(set.ok());
  EXPECT_NE(set.status().message().find("bad.jsonl:3:"), std::string::npos) << set.status();
}

TEST(ParseRagExample, ReadsOptionalCandidatesAndRejectsNonStrings) {
  std::string row = kRow;
  row.insert(row.size() - 1, R"(, "candidates": [" Oskport", " Varnholm"])");
  absl::StatusOr<RagExample> ex = ParseRagExample(row);
  ASSERT_TRUE(ex.ok()) << ex.status();
  EXPECT_EQ(ex->candidates, (std::vector<std::string>{" Oskport", " Varnholm"}));
  EXPECT_TRUE(ParseRagExample(kRow)->candidates.empty());

  std::string bad = kRow;
  bad.insert(bad.size() - 1, R"(, "candidates": [3])");
  EXPECT_FALSE(ParseRagExample(bad).ok());
}

TEST(RandomCandidatePercent, AveragesOneOverCandidatesWhenTheAnswerIsAmongThem) {
  RagExample two{.answer = " Varnholm", .candidates = {" Oskport", " Varnholm"}};
  RagExample four{.answer = "Trel Labs", .candidates = {" A", " B", " C", " Trel Labs "}};
  RagExample absent{.answer = " Varnholm", .candidates = {" Oskport"}};
  std::optional<double> p = RandomCandidatePercent({two, four, absent});
  ASSERT_TRUE(p.has_value());
  EXPECT_NEAR(*p, 100.0 * (0.5 + 0.25 + 0.0) / 3, 1e-9);
  EXPECT_FALSE(RandomCandidatePercent({two, RagExample{.answer = " x"}}).has_value());
  EXPECT_FALSE(RandomCandidatePercent({}).has_value());
}

TEST(RenderByCandidateCount, GroupsByCandidatesNextToARandomPick) {
  RagExample two{.answer = " A", .candidates = {" A", " B"}};
  RagExample three{.answer = " A", .candidates = {" A", " B", " C"}};
  RagExample none{.answer = " A"};
  EXPECT_EQ(RenderByCandidateCount({two, three, two, none, three}, {true, false, true, true, true}),
            "| candidates | accuracy | a random candidate |\n"
            "| ---: | ---: | ---: |\n"
            "| 2 | 100.0% (2/2) | 50.0% |\n"
            "| 3 | 50.0% (1/2) | 33.3% |\n");
}

TEST(AnswerMatches, IgnoresSurroundingWhitespaceOnly) {
  EXPECT_TRUE(AnswerMatches(" Varnholm", "Varnholm"));
  EXPECT_TRUE(AnswerMatches("Trel Labs\n", " Trel Labs"));
  EXPECT_FALSE(AnswerMatches(" Varnholm.", " Varnholm"));
  EXPECT_FALSE(AnswerMatches(" varnholm", " Varnholm"));
}

TEST(RenderTable, PrintsPercentAndCounts) {
  Accuracy a{.correct = 3, .total = 4};
  const std::string table =
      RenderTable({"single-hop"}, {TableRow{"m", "block", "yes", "0", {a}}});
  EXPECT_EQ(table,
            "| model | attention | positions re-encoded | global blocks | single-hop |\n"
            "| --- | --- | --- | --- | ---: |\n"
            "| m | block | yes | 0 | 75.0% (3/4) |\n");
}

TEST(AnswerExample, LaysOutThePromptAsEnginePromptSays) {
  const std::string dir = TempPath("tiny_model");
  ASSERT_TRUE(engine::WriteTinyModel(dir, engine::TinyModelOptions{}).ok());
  absl::StatusOr<std::unique_ptr<engine::Engine>> e = engine::Engine::Load(dir);
  ASSERT_TRUE(e.ok()) << e.status();
  absl::StatusOr<RagExample> ex = ParseRagExample(kRow);
  ASSERT_TRUE(ex.ok());
  const engine::Tokenizer& tok = (*e)->tokenizer();
  const size_t expected = engine::SystemBlockTokens(tok, ex->system).size() +
                          engine::PassageBlockTokens(tok, ex->passages[0]).size() +
                          engine::PassageBlockTokens(tok, ex->passages[1]).size() +
                          engine::QueryBlockTokens(tok, ex->query).size();

  absl::StatusOr<ExampleOutcome> out = AnswerExample(**e, *ex, engine::PrefillOptions{}, 4);

  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->prompt_tokens, static_cast<int64_t>(expected));
}

}  // namespace
}  // namespace blockserve::eval
