// The pieces of rag_services.h that need no running services: passage ids, the request
// an example becomes, and the table.
#include "eval/rag_services.h"

#include "gtest/gtest.h"

namespace blockserve::eval {
namespace {

RagExample Example() {
  return RagExample{"city", "Answer the question using the passages.",
                    {"About A: born in X.\n", "About B: born in Y.\n"},
                    "Question: Where was A born? Answer:", " X"};
}

TEST(PassageIdTest, DependsOnlyOnTheText) {
  EXPECT_EQ(PassageId("About A"), PassageId(std::string("About ") + "A"));
  EXPECT_NE(PassageId("About A"), PassageId("About B"));
  EXPECT_EQ(PassageId(""), "p-cbf29ce484222325");  // the FNV-1a offset basis
  EXPECT_EQ(PassageId("About A").size(), 18u);
}

TEST(PassagesOfTest, DistinctPassagesInFirstSeenOrder) {
  RagExample second = Example();
  second.passages = {"About C.\n", "About A: born in X.\n"};
  const std::vector<v1::Passage> p = PassagesOf({Example(), second});
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[0].text(), "About A: born in X.\n");
  EXPECT_EQ(p[0].id(), PassageId(p[0].text()));
  EXPECT_EQ(p[1].text(), "About B: born in Y.\n");
  EXPECT_EQ(p[2].text(), "About C.\n");
}

TEST(MakeRequestTest, GreedyWithSystemPassagesAndQuery) {
  const v1::GenerateRequest r = MakeRequest(Example(), v1::ATTENTION_MODE_FULL, 16);
  EXPECT_EQ(r.system_prompt(), "Answer the question using the passages.");
  ASSERT_EQ(r.passages_size(), 2);
  EXPECT_EQ(r.passages(0).passage_id(), PassageId("About A: born in X.\n"));
  EXPECT_EQ(r.passages(1).passage_id(), PassageId("About B: born in Y.\n"));
  EXPECT_EQ(r.query(), "Question: Where was A born? Answer:");
  EXPECT_EQ(r.sampling().temperature(), 0);
  EXPECT_EQ(r.sampling().max_new_tokens(), 16u);
  EXPECT_FALSE(r.sampling().ignore_eos());
  EXPECT_EQ(r.block_options().mode(), v1::ATTENTION_MODE_FULL);
  EXPECT_EQ(EngineOptions(v1::ATTENTION_MODE_FULL).mode, engine::AttentionMode::kFull);
  EXPECT_EQ(EngineOptions(v1::ATTENTION_MODE_BLOCK).mode, engine::AttentionMode::kBlock);
}

TEST(ModeResultTest, CountsAndRendersOneRowPerMode) {
  ModeResult r;
  r.mode = ModeName(v1::ATTENTION_MODE_BLOCK);
  for (double ttft : {5.0, 1.0, 3.0, 9.0}) {
    ComparedExample c;
    c.services.correct = ttft < 4;
    c.agree = ttft != 9.0;
    c.services.summary.set_ttft_ms(ttft);
    c.services.summary.set_cache_hits(3);
    r.Add(c);
  }
  EXPECT_EQ(r.MedianTtftMs(), 4.0);
  EXPECT_EQ(RenderServicesTable({r}),
            "| mode | exact match | same answer as in-process engine | median TTFT ms | "
            "cache hits / misses |\n"
            "| --- | ---: | ---: | ---: | ---: |\n"
            "| block | 50.0% (2/4) | 3/4 | 4.0 | 12 / 0 |\n");
}

}  // namespace
}  // namespace blockserve::eval
