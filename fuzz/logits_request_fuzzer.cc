// Fuzz target: the `logits` tool's request (engine/logits_request.h), JSON from stdin.
// (The issue that asked for fuzzing found it aborting on "mode": 5, an uncaught
// nlohmann type error; that input is in the corpus.)
//
// Invariants: a failure is InvalidArgument (the header's contract); a parsed request has
// non-empty id lists of ids >= 0 and global_blocks >= 0, and writing it back as the
// same format parses to an equal request.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/logits_request.h"
#include "fuzz/fuzz_check.h"
#include "nlohmann/json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace blockserve::engine;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<LogitsRequest> request = ParseLogitsRequest(text);
  if (!request.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(request.status()));
    return 0;
  }
  FUZZ_CHECK(!request->query.empty());
  FUZZ_CHECK(request->options.global_blocks >= 0);
  nlohmann::json blocks = nlohmann::json::array();
  for (const std::vector<int32_t>& ids : request->passages) {
    FUZZ_CHECK(!ids.empty());
    for (int32_t id : ids) FUZZ_CHECK(id >= 0);
    blocks.push_back(ids);
  }
  for (int32_t id : request->query) FUZZ_CHECK(id >= 0);
  blocks.push_back(request->query);
  const nlohmann::json written = {
      {"blocks", blocks},
      {"mode", request->options.mode == AttentionMode::kFull ? "full" : "block"},
      {"global_blocks", request->options.global_blocks}};
  absl::StatusOr<LogitsRequest> again = ParseLogitsRequest(written.dump());
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->passages == request->passages);
  FUZZ_CHECK(again->query == request->query);
  FUZZ_CHECK(again->options.mode == request->options.mode);
  FUZZ_CHECK(again->options.global_blocks == request->options.global_blocks);
  return 0;
}
