#include "engine/prompt.h"

#include <gtest/gtest.h>

#include "engine/bpe_trainer.h"

namespace blockserve::engine {
namespace {

// The first special token, if any, is the BOS (tokenizer_config.json's add_bos_token);
// with `add_eos`, <|end_of_text|> is an EOS added after a text (add_eos_token).
Tokenizer MakeTokenizer(std::vector<std::string> specials, bool add_eos = false) {
  SpecialTokenConfig special;
  special.has_tokenizer_config = true;
  if (!specials.empty() && specials[0] == "<|begin_of_text|>") {
    special.bos_token = specials[0];
    special.add_bos_token = true;
  }
  if (add_eos) {
    special.eos_token = "<|end_of_text|>";
    special.add_eos_token = true;
  }
  return *Tokenizer::FromJson(*TrainByteLevelBpeJson("the cat sat on the mat", 10, specials),
                              special);
}

TEST(PromptTest, SystemBlockStartsWithBosWhenTheTokenizerHasOne) {
  Tokenizer t = MakeTokenizer({"<|begin_of_text|>", "<|end_of_text|>"});
  std::vector<int32_t> s = SystemBlockTokens(t, "the cat");
  ASSERT_FALSE(s.empty());
  EXPECT_EQ(s[0], *t.bos_id());
  EXPECT_EQ(std::vector<int32_t>(s.begin() + 1, s.end()), t.Encode("the cat"));
  EXPECT_EQ(SystemBlockTokens(t, ""), std::vector<int32_t>{*t.bos_id()});
}

TEST(PromptTest, WithoutBosAnEmptySystemPromptIsNoBlock) {
  Tokenizer t = MakeTokenizer({"<|end_of_text|>"});
  EXPECT_TRUE(SystemBlockTokens(t, "").empty());
  EXPECT_EQ(SystemBlockTokens(t, "the mat"), t.Encode("the mat"));
}

TEST(PromptTest, PassagesAndQueriesAreTokenizedExactlyAsGiven) {
  Tokenizer t = MakeTokenizer({"<|begin_of_text|>"});
  EXPECT_EQ(PassageBlockTokens(t, "the cat sat"), t.Encode("the cat sat"));
  EXPECT_EQ(QueryBlockTokens(t, " on the mat?"), t.Encode(" on the mat?"));
}

TEST(PromptTest, TrailingSpecialTokensCloseTheQueryBlock) {
  const Tokenizer t = MakeTokenizer({"<|begin_of_text|>", "<|end_of_text|>"}, /*add_eos=*/true);
  ASSERT_TRUE(t.eos_id().has_value());
  std::vector<int32_t> query = t.Encode(" on the mat?");
  query.push_back(*t.eos_id());
  EXPECT_EQ(QueryBlockTokens(t, " on the mat?"), query);
  EXPECT_EQ(PassageBlockTokens(t, "the cat sat"), t.Encode("the cat sat"));
  // System block + query block: what Encode(prompt, true) gives the whole prompt.
  std::vector<int32_t> prompt = SystemBlockTokens(t, "the cat");
  query = QueryBlockTokens(t, " sat");
  prompt.insert(prompt.end(), query.begin(), query.end());
  EXPECT_EQ(prompt, t.Encode("the cat sat", /*add_special_tokens=*/true));
}

}  // namespace
}  // namespace blockserve::engine
