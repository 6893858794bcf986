#include "contract/request_contract.h"

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "contract/testing/bad_requests.h"

namespace blockserve::contract {
namespace {

using ::testing::HasSubstr;
using testing::BadRequestCase;
using testing::BadRequestCases;
using testing::kValidPassages;
using testing::ValidGenerateRequest;

struct CaseUnderLimits {
  Limits limits;
  BadRequestCase c;
};

// gtest prints a failing parameter with this, instead of its bytes.
void PrintTo(const CaseUnderLimits& p, std::ostream* os) { *os << p.c.name; }

std::vector<CaseUnderLimits> CasesUnder(const Limits& limits) {
  std::vector<CaseUnderLimits> out;
  for (BadRequestCase& c : BadRequestCases(limits)) out.push_back({limits, std::move(c)});
  return out;
}

std::string Message(const absl::Status& status) { return std::string(status.message()); }

class RequestContractCaseTest : public ::testing::TestWithParam<CaseUnderLimits> {};

// The heart of the contract: one input, one answer, from either entry point and after
// the router's translation of a GenerateRequest into a PrefillRequest.
TEST_P(RequestContractCaseTest, SameCodeFromEveryEntryPoint) {
  const auto& [limits, c] = GetParam();
  const v1::PrefillRequest prefill = c.Prefill();
  EXPECT_EQ(ValidatePrefillRequest(prefill, limits).code(), c.code) << prefill.DebugString();
  const std::optional<v1::GenerateRequest> generate = c.Generate();
  if (!generate) return;
  EXPECT_EQ(ValidateGenerateRequest(*generate, limits).code(), c.code)
      << generate->DebugString();
  EXPECT_EQ(ValidatePrefillRequest(ToPrefillRequest(*generate), limits).code(), c.code);
}

// A case that left the request unchanged would prove nothing.
TEST_P(RequestContractCaseTest, CaseChangesTheValidRequest) {
  const BadRequestCase& c = GetParam().c;
  if (c.name == "valid") GTEST_SKIP() << "the unchanged request itself";
  EXPECT_NE(c.Prefill().DebugString(), ToPrefillRequest(ValidGenerateRequest()).DebugString());
}

TEST_P(RequestContractCaseTest, ErrorsSayWhatWasExpected) {
  const auto& [limits, c] = GetParam();
  const absl::Status status = ValidatePrefillRequest(c.Prefill(), limits);
  if (status.ok()) GTEST_SKIP() << "a valid case";
  EXPECT_THAT(Message(status), HasSubstr("; expected "));
}

std::string CaseName(const ::testing::TestParamInfo<CaseUnderLimits>& info) {
  return info.param.c.name;
}

INSTANTIATE_TEST_SUITE_P(DefaultLimits, RequestContractCaseTest,
                         ::testing::ValuesIn(CasesUnder(Limits())), CaseName);
// The limit cases follow the configured limits, not the defaults.
INSTANTIATE_TEST_SUITE_P(TightLimits, RequestContractCaseTest,
                         ::testing::ValuesIn(CasesUnder(
                             {.max_passages = kValidPassages, .max_new_tokens_limit = 8})),
                         CaseName);

// The two answers the services used to disagree on (issue 13).
void ExpectInvalidFromBoth(const v1::GenerateRequest& r, const std::string& message) {
  const absl::Status generate = ValidateGenerateRequest(r, Limits());
  EXPECT_EQ(generate.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(generate), HasSubstr(message));
  EXPECT_EQ(ValidatePrefillRequest(ToPrefillRequest(r), Limits()).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RequestContractTest, FullModeGlobalBlocksOverPassagesIsInvalidEverywhere) {
  v1::GenerateRequest r = ValidGenerateRequest();
  r.mutable_block_options()->set_mode(v1::ATTENTION_MODE_FULL);
  r.mutable_block_options()->set_global_blocks(9);
  ExpectInvalidFromBoth(r, "block_options.global_blocks is 9");
}

TEST(RequestContractTest, EmptyPassageIdIsInvalidNotUnknown) {
  v1::GenerateRequest r = ValidGenerateRequest();
  r.mutable_passages(3)->set_passage_id("");
  ExpectInvalidFromBoth(r, "passages[3].passage_id is empty");
}

TEST(RequestContractTest, MessagesNameTheFieldAndWhatWasFound) {
  v1::GenerateRequest r = ValidGenerateRequest();
  r.mutable_sampling()->set_temperature(101);
  EXPECT_THAT(Message(ValidateGenerateRequest(r, Limits())),
              HasSubstr("sampling.temperature is 101"));
  r = ValidGenerateRequest();
  r.mutable_sampling()->add_stop("ok");
  r.mutable_sampling()->add_stop(std::string(kMaxStopStringBytes + 1, 's'));
  EXPECT_THAT(Message(ValidateGenerateRequest(r, Limits())),
              HasSubstr("sampling.stop[1] has 257 bytes; expected 1..256"));
  r = ValidGenerateRequest();
  r.mutable_passages(2)->mutable_token_ids()->add_ids(-4);
  EXPECT_THAT(Message(ValidateGenerateRequest(r, Limits())),
              HasSubstr("passages[2].token_ids[0] is -4"));
  r = ValidGenerateRequest();
  r.mutable_sampling()->set_max_new_tokens(11);
  EXPECT_THAT(Message(ValidateGenerateRequest(r, {.max_new_tokens_limit = 10})),
              HasSubstr("sampling.max_new_tokens is 11; expected at most 10"));
}

TEST(RequestContractTest, PassageIdRulesOfIngest) {
  EXPECT_TRUE(ValidatePassageId("").ok()) << "empty = an anonymous passage";
  EXPECT_TRUE(ValidatePassageId("tall-ember").ok());
  EXPECT_TRUE(ValidatePassageId("h\xc3\xa9ron").ok());
  EXPECT_TRUE(ValidatePassageId(std::string(kMaxPassageIdBytes, 'p')).ok());
  EXPECT_EQ(ValidatePassageId(std::string(kMaxPassageIdBytes + 1, 'p')).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidatePassageId("del\x7f").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidatePassageId("line\nbreak").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidatePassageId("\xc3\x28").code(), absl::StatusCode::kInvalidArgument);
}

TEST(RequestContractTest, IngestedPassagesAreBoundedBeforeTokenizing) {
  v1::Passage p;
  p.set_id("elbe");
  EXPECT_EQ(ValidatePassage(p).code(), absl::StatusCode::kInvalidArgument) << "no content";
  p.set_text(std::string(kMaxPassageTextBytes, 't'));
  EXPECT_TRUE(ValidatePassage(p).ok());
  p.set_text(std::string(kMaxPassageTextBytes + 1, 't'));
  EXPECT_EQ(ValidatePassage(p).code(), absl::StatusCode::kInvalidArgument);
  p.mutable_token_ids()->add_ids(-1);
  EXPECT_EQ(ValidatePassage(p).code(), absl::StatusCode::kInvalidArgument);
  p.mutable_token_ids()->set_ids(0, 7);
  EXPECT_TRUE(ValidatePassage(p).ok());
  p.set_id("tab	id");
  EXPECT_EQ(ValidatePassage(p).code(), absl::StatusCode::kInvalidArgument);
}

TEST(RequestContractTest, UnsetSamplingAndOptionsAreValid) {
  v1::GenerateRequest r;
  r.set_query("q");
  EXPECT_TRUE(ValidateGenerateRequest(r, Limits()).ok());
  EXPECT_TRUE(ValidatePrefillRequest(ToPrefillRequest(r), Limits()).ok());
}

TEST(RequestContractTest, ToPrefillRequestCopiesTheSharedFieldsOnly) {
  v1::GenerateRequest g = ValidGenerateRequest();
  g.set_request_id("req-1");
  g.set_system_prompt("Be brief.");
  g.mutable_block_options()->set_global_blocks(2);
  const v1::PrefillRequest p = ToPrefillRequest(g);
  EXPECT_EQ(p.request_id(), "req-1");
  EXPECT_EQ(p.system_prompt(), "Be brief.");
  EXPECT_EQ(p.query(), g.query());
  ASSERT_EQ(p.passages_size(), g.passages_size());
  EXPECT_EQ(p.passages(4).text(), g.passages(4).text());
  EXPECT_EQ(p.sampling().max_new_tokens(), 4u);
  EXPECT_EQ(p.block_options().global_blocks(), 2u);
  EXPECT_FALSE(p.has_decoder());
  EXPECT_FALSE(ToPrefillRequest(v1::GenerateRequest()).has_sampling());
}

}  // namespace
}  // namespace blockserve::contract
