#include "engine/sequence_end.h"

#include <gtest/gtest.h>

#include <array>
#include <optional>

#include "engine/bpe_trainer.h"

namespace blockserve::engine {
namespace {

constexpr int64_t kRoomyContext = 1 << 20;
constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

// A byte-level tokenizer without merges: every byte is one token, so a test spells the
// token stream byte by byte. Its one special token is the EOS.
class SequenceEndTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::string> json = TrainByteLevelBpeJson("", 0, {"<|end_of_text|>"});
    ASSERT_TRUE(json.ok()) << json.status();
    SpecialTokenConfig special;
    special.eos_token = "<|end_of_text|>";
    absl::StatusOr<Tokenizer> tok = Tokenizer::FromJson(*json, special);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = new Tokenizer(*std::move(tok));
    for (int32_t id = 0; id < tokenizer_->vocab_size(); ++id) {
      const std::string bytes = *tokenizer_->TokenBytes(id);
      if (bytes.size() == 1 && !tokenizer_->IsSpecial(id)) {
        byte_ids_[static_cast<unsigned char>(bytes[0])] = id;
      }
    }
  }

  static int32_t Eos() { return *tokenizer_->eos_id(); }
  // The token of one byte.
  static int32_t Byte(char c) { return byte_ids_[static_cast<unsigned char>(c)]; }

  static SequenceEnd End(StopRules rules, int64_t prompt_length = 5,
                         int64_t context_length = kRoomyContext) {
    return SequenceEnd(*tokenizer_, {Eos()}, std::move(rules), prompt_length, context_length);
  }
  static StopRules Stops(std::vector<std::string> stop_strings) {
    return {.max_new_tokens = 100, .stop_strings = std::move(stop_strings)};
  }

  // Feeds one token per byte of `bytes` and returns the concatenated deltas; none may
  // finish.
  static std::string Feed(SequenceEnd& end, std::string_view bytes) {
    std::string text;
    for (char c : bytes) {
      SequenceEnd::Step step = end.Next(Byte(c));
      EXPECT_TRUE(step.keep);
      EXPECT_FALSE(step.finish.has_value()) << "at '" << c << "'";
      text += step.text_delta;
    }
    return text;
  }

  static Tokenizer* tokenizer_;
  static std::array<int32_t, 256> byte_ids_;
};

Tokenizer* SequenceEndTest::tokenizer_ = nullptr;
std::array<int32_t, 256> SequenceEndTest::byte_ids_ = {};

TEST_F(SequenceEndTest, EosEndsGenerationAndIsNotKept) {
  SequenceEnd end = End({.max_new_tokens = 100});
  EXPECT_EQ(Feed(end, "ab"), "ab");
  const SequenceEnd::Step step = end.Next(Eos());
  EXPECT_FALSE(step.keep);
  EXPECT_EQ(step.finish, FinishReason::kEos);
  EXPECT_EQ(step.text_delta, "");
}

TEST_F(SequenceEndTest, IgnoreEosMakesTheEosAnOrdinaryTokenWithoutText) {
  SequenceEnd end = End({.max_new_tokens = 100, .ignore_eos = true});
  const SequenceEnd::Step step = end.Next(Eos());
  EXPECT_TRUE(step.keep);
  EXPECT_FALSE(step.finish.has_value());
  EXPECT_EQ(step.text_delta, "");
}

TEST_F(SequenceEndTest, StopTokenIdEndsWithStopAndIsKeptWithoutItsText) {
  SequenceEnd end = End({.max_new_tokens = 100, .stop_token_ids = {Byte('x')}});
  EXPECT_EQ(Feed(end, "ab"), "ab");
  const SequenceEnd::Step step = end.Next(Byte('x'));
  EXPECT_TRUE(step.keep);
  EXPECT_EQ(step.finish, FinishReason::kStop);
  EXPECT_EQ(step.text_delta, "");
  EXPECT_EQ(end.text(), "ab");
}

TEST_F(SequenceEndTest, StopStringAcrossTokensEndsWithTheTextCutBeforeIt) {
  SequenceEnd end = End(Stops({"\n\n", "STOP"}));
  EXPECT_EQ(Feed(end, "one\n"), "one");  // the "\n" may start "\n\n": held back
  const SequenceEnd::Step step = end.Next(Byte('\n'));
  EXPECT_TRUE(step.keep);  // the token completing the match is output, its text is not
  EXPECT_EQ(step.finish, FinishReason::kStop);
  EXPECT_EQ(step.text_delta, "");
  EXPECT_EQ(end.text(), "one");
  EXPECT_EQ(end.Flush(), "");
}

TEST_F(SequenceEndTest, HeldBackPrefixOfAStopStringIsReleasedWhenItDoesNotComplete) {
  SequenceEnd end = End(Stops({"END"}));
  EXPECT_EQ(Feed(end, "hello EN"), "hello ");
  EXPECT_EQ(Feed(end, "x"), "ENx");  // "ENx" is not a stop after all
}

TEST_F(SequenceEndTest, IncompleteUtf8IsHeldUntilTheCharacterCompletes) {
  SequenceEnd end = End(Stops({}));
  EXPECT_EQ(Feed(end, "a\xC3"), "a");
  EXPECT_EQ(Feed(end, "\xA9!"), "\xC3\xA9!");  // é
}

TEST_F(SequenceEndTest, MaxNewTokensCountsTheFirstToken) {
  SequenceEnd end = End({.max_new_tokens = 3});
  EXPECT_EQ(Feed(end, "ab"), "ab");
  const SequenceEnd::Step step = end.Next(Byte('c'));
  EXPECT_TRUE(step.keep);
  EXPECT_EQ(step.finish, FinishReason::kLength);
  EXPECT_EQ(step.text_delta, "c");

  SequenceEnd one = End({.max_new_tokens = 1});  // the prefill's token alone
  EXPECT_EQ(one.Next(Byte('a')).finish, FinishReason::kLength);
}

TEST_F(SequenceEndTest, FillingTheContextEndsWithLength) {
  // Prompt + output = context: a 7-token prompt leaves room for 3 generated tokens.
  SequenceEnd end = End({.max_new_tokens = 100}, /*prompt_length=*/7, /*context_length=*/10);
  EXPECT_EQ(Feed(end, "ab"), "ab");
  EXPECT_EQ(end.Next(Byte('c')).finish, FinishReason::kLength);
}

TEST_F(SequenceEndTest, AFinishReleasesTheHeldBackText) {
  SequenceEnd end = End(Stops({"END"}));
  EXPECT_EQ(Feed(end, "aE"), "a");
  const SequenceEnd::Step step = end.Next(Eos());
  EXPECT_EQ(step.finish, FinishReason::kEos);
  EXPECT_EQ(step.text_delta, "E");
}

TEST_F(SequenceEndTest, FlushReleasesHeldTextAndReplacesBrokenBytes) {
  SequenceEnd end = End(Stops({"xyz"}));
  EXPECT_EQ(Feed(end, "ab\xE2\x82"), "ab");
  // "x" breaks the character (both bytes become U+FFFD) and may start "xyz".
  EXPECT_EQ(Feed(end, "x"), std::string(kReplacement) + kReplacement);
  EXPECT_EQ(end.Flush(), "x");
  EXPECT_EQ(end.Flush(), "");
}

// The first-token text contract: the prefill emits the first token's delta, the decoder
// replays the first token and emits the rest; together they are one SequenceEnd's text.
TEST_F(SequenceEndTest, ReplayingTheFirstTokenContinuesWithoutGapOrOverlap) {
  const StopRules rules = Stops({"END"});
  const std::string bytes = "Ex\xC3\xA9y";
  SequenceEnd whole = End(rules);
  const std::string expected = Feed(whole, bytes);

  SequenceEnd prefill = End(rules);
  const std::string first_token_text = prefill.Next(Byte(bytes[0])).text_delta;
  SequenceEnd decoder = End(rules);
  decoder.Next(Byte(bytes[0]));  // emitted by the prefill
  const std::string decoded = Feed(decoder, std::string_view(bytes).substr(1));
  EXPECT_EQ(first_token_text, "");  // "E" may start "END"
  EXPECT_EQ(first_token_text + decoded, expected);
  EXPECT_EQ(expected, "Ex\xC3\xA9y");
}

TEST_F(SequenceEndTest, TokenTextOfASpecialTokenIsEmpty) {
  EXPECT_EQ(*TokenText(*tokenizer_, Eos()), "");
  EXPECT_EQ(*TokenText(*tokenizer_, Byte('h')), "h");
  EXPECT_EQ(TokenText(*tokenizer_, tokenizer_->vocab_size()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(StopRules, MaxNewTokensMustBePositive) {
  EXPECT_TRUE(ValidateStopRules({.max_new_tokens = 1}).ok());
  EXPECT_EQ(ValidateStopRules({.max_new_tokens = 0}).code(), absl::StatusCode::kInvalidArgument);
}

TEST(TextStream, CutsAtTheEarliestStartingStopString) {
  TextStream ts({"cd", "bcde"});
  const TextStream::Update u = ts.Append("abcdef");
  EXPECT_TRUE(u.stopped);
  EXPECT_EQ(u.delta, "a");
}

}  // namespace
}  // namespace blockserve::engine
