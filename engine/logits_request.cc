#include "engine/logits_request.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "engine/json_nesting.h"

namespace blockserve::engine {
namespace {

absl::StatusOr<std::vector<int32_t>> ParseIds(const nlohmann::json& list, size_t index) {
  if (!list.is_array() || list.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("blocks[", index, "] must be a non-empty list of token ids"));
  }
  std::vector<int32_t> ids;
  for (const nlohmann::json& id : list) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
      return absl::InvalidArgumentError(
          absl::StrCat("blocks[", index, "] holds ", id.dump(), "; expected token ids >= 0"));
    }
    ids.push_back(id.get<int32_t>());
  }
  return ids;
}

}  // namespace

absl::StatusOr<LogitsRequest> ParseLogitsRequest(std::string_view json_text) {
  // Before parsing: the error messages' dump() of a bad id recurses.
  if (absl::Status s = CheckJsonNesting(json_text); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("request: ", s.message()));
  }
  nlohmann::json j = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("request is not a JSON object");
  }
  if (!j.contains("blocks") || !j["blocks"].is_array() || j["blocks"].empty()) {
    return absl::InvalidArgumentError("request needs \"blocks\": a non-empty list of id lists");
  }
  LogitsRequest r;
  const nlohmann::json& blocks = j["blocks"];
  for (size_t i = 0; i < blocks.size(); ++i) {
    absl::StatusOr<std::vector<int32_t>> ids = ParseIds(blocks[i], i);
    if (!ids.ok()) return ids.status();
    if (i + 1 == blocks.size()) {
      r.query = *std::move(ids);
    } else {
      r.passages.push_back(*std::move(ids));
    }
  }
  // json::value() throws on a present value of another type; check the type first.
  if (j.contains("mode") && !j["mode"].is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("\"mode\" must be \"block\" or \"full\", got ",
                                                   j["mode"].dump()));
  }
  const std::string mode = j.value("mode", std::string("block"));
  if (mode != "block" && mode != "full") {
    return absl::InvalidArgumentError(
        absl::StrCat("\"mode\" must be \"block\" or \"full\", got \"", mode, "\""));
  }
  r.options.mode = mode == "full" ? AttentionMode::kFull : AttentionMode::kBlock;
  if (j.contains("global_blocks")) {
    if (!j["global_blocks"].is_number_integer()) {
      return absl::InvalidArgumentError("\"global_blocks\" must be an integer");
    }
    r.options.global_blocks = j["global_blocks"].get<int64_t>();
    if (r.options.global_blocks < 0) {
      return absl::InvalidArgumentError("\"global_blocks\" must be >= 0");
    }
  }
  return r;
}

absl::StatusOr<std::string> RunLogitsRequest(Engine& engine, const LogitsRequest& request) {
  std::vector<BlockInput> blocks;
  for (const std::vector<int32_t>& p : request.passages) blocks.push_back({p, nullptr});
  absl::StatusOr<PrefillResult> r = engine.PrefillLast(blocks, request.query, request.options);
  if (!r.ok()) return r.status();
  nlohmann::json out;
  out["logits_last"] = r->logits_last;
  return out.dump();
}

}  // namespace blockserve::engine
