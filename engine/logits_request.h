// The debugging request format of the `logits` tool:
//   {"blocks": [[ids...], ..., [query ids...]], "mode": "block" | "full",
//    "global_blocks": n (optional, default 0)}
// The last list is the query block; the others are passages.
#ifndef BLOCKSERVE_ENGINE_LOGITS_REQUEST_H_
#define BLOCKSERVE_ENGINE_LOGITS_REQUEST_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"

namespace blockserve::engine {

struct LogitsRequest {
  std::vector<std::vector<int32_t>> passages;
  std::vector<int32_t> query;
  PrefillOptions options;
};

// InvalidArgument, naming the offending field, for anything but the format above.
absl::StatusOr<LogitsRequest> ParseLogitsRequest(std::string_view json_text);

// Runs the request (passages encoded fresh, as a cache miss would) and returns
// {"logits_last": [...]} with every float printed exactly (round-trip precision).
absl::StatusOr<std::string> RunLogitsRequest(Engine& engine, const LogitsRequest& request);

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_LOGITS_REQUEST_H_
