// A table of requests with the status code the request contract
// (contract/request_contract.h) gives each, for tests that check every entry point
// answers alike: the contract's own functions, and the router and the prefill over
// gRPC. Each case mutates a valid GenerateRequest and a valid PrefillRequest the same
// way; a few cases sit on a limit and are valid (code OK).
#ifndef BLOCKSERVE_CONTRACT_TESTING_BAD_REQUESTS_H_
#define BLOCKSERVE_CONTRACT_TESTING_BAD_REQUESTS_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "contract/request_contract.h"
#include "proto/blockserve.pb.h"

namespace blockserve::contract::testing {

// Passages in ValidGenerateRequest.
inline constexpr int kValidPassages = 5;

// A valid request: kValidPassages short inline-text passages (no catalog needed), a
// short query, greedy sampling of 4 tokens. Valid under any Limits with max_passages
// >= kValidPassages and max_new_tokens_limit >= 4, and short enough for any model with
// a context of 512 tokens.
v1::GenerateRequest ValidGenerateRequest();

struct BadRequestCase {
  // Unique, usable as a gtest parameter name: [A-Za-z0-9_].
  std::string name;
  // What the contract answers; kOk for the valid boundary cases.
  absl::StatusCode code = absl::StatusCode::kOk;
  // The mutation, once per request type. mutate_generate is empty for a field only a
  // PrefillRequest has (decoder.transport).
  std::function<void(v1::GenerateRequest&)> mutate_generate;
  std::function<void(v1::PrefillRequest&)> mutate_prefill;

  // ValidGenerateRequest() mutated; nullopt when the case has no GenerateRequest form.
  std::optional<v1::GenerateRequest> Generate() const;
  // ToPrefillRequest(ValidGenerateRequest()) mutated.
  v1::PrefillRequest Prefill() const;
};

// Every case, with the limit cases (passage count, max_new_tokens) built for `limits`.
// `limits` must accept ValidGenerateRequest(). The valid cases use no passage_id (they
// need no catalog); valid_sampling_at_limits asks for max_new_tokens_limit tokens, so
// a test that runs it through a decoder should expect it to end at the context length.
std::vector<BadRequestCase> BadRequestCases(const Limits& limits);

}  // namespace blockserve::contract::testing

#endif  // BLOCKSERVE_CONTRACT_TESTING_BAD_REQUESTS_H_
