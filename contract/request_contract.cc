#include "contract/request_contract.h"

#include <cmath>
#include <string>
#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "engine/utf8.h"

namespace blockserve::contract {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view found, absl::string_view expected) {
  return absl::InvalidArgumentError(absl::StrCat(field, " ", found, "; expected ", expected));
}

// `field` has `count` `unit`s (entries, bytes) where at most `max` are allowed; `flag`
// names the server flag that sets a configured limit (empty for a fixed one).
absl::Status AtMost(absl::string_view field, int64_t count, absl::string_view unit, int64_t max,
                    absl::string_view flag = "") {
  if (count <= max) return absl::OkStatus();
  return Invalid(field, absl::StrCat("has ", count, " ", unit),
                 absl::StrCat("at most ", max, flag.empty() ? "" : absl::StrCat(" (", flag, ")")));
}

// engine::IsValidUtf8 takes a std::string_view, which this Abseil build does not alias.
absl::Status ValidateUtf8(absl::string_view text, absl::string_view field) {
  if (engine::IsValidUtf8(std::string_view(text.data(), text.size()))) return absl::OkStatus();
  return Invalid(field, "is not valid UTF-8", "valid UTF-8");
}

// `field` names the id in messages: Passage.id on ingest, passages[i].passage_id in a
// prompt.
absl::Status ValidatePassageIdField(absl::string_view id, absl::string_view field) {
  if (absl::Status s = AtMost(field, id.size(), "bytes", kMaxPassageIdBytes); !s.ok()) return s;
  if (absl::Status s = ValidateUtf8(id, field); !s.ok()) return s;
  for (char c : id) {
    if (absl::ascii_iscntrl(static_cast<unsigned char>(c))) {
      return Invalid(field, absl::StrCat("contains control character 0x",
                                         absl::Hex(static_cast<unsigned char>(c))),
                     "no control characters");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateStopStrings(const v1::SamplingParams& s) {
  if (absl::Status st = AtMost("sampling.stop", s.stop_size(), "strings", kMaxStopStrings);
      !st.ok()) {
    return st;
  }
  for (int i = 0; i < s.stop_size(); ++i) {
    const std::string field = absl::StrCat("sampling.stop[", i, "]");
    const std::string& stop = s.stop(i);
    if (stop.empty() || stop.size() > kMaxStopStringBytes) {
      return Invalid(field, absl::StrCat("has ", stop.size(), " bytes"),
                     absl::StrCat("1..", kMaxStopStringBytes));
    }
    if (absl::Status st = ValidateUtf8(stop, field); !st.ok()) return st;
  }
  return absl::OkStatus();
}

absl::Status ValidateStopTokenIds(const v1::SamplingParams& s) {
  if (absl::Status st =
          AtMost("sampling.stop_token_ids", s.stop_token_ids_size(), "ids", kMaxStopTokenIds);
      !st.ok()) {
    return st;
  }
  for (int i = 0; i < s.stop_token_ids_size(); ++i) {
    if (s.stop_token_ids(i) < 0) {
      return Invalid(absl::StrCat("sampling.stop_token_ids[", i, "]"),
                     absl::StrCat("is ", s.stop_token_ids(i)), "a token id >= 0");
    }
  }
  return absl::OkStatus();
}

// GenerateRequest and PrefillRequest share fields 1..6 under the same names and rules,
// so one body checks both and the router and the prefill cannot drift apart.
template <typename Request>
absl::Status ValidatePrompt(const Request& r, const Limits& limits) {
  if (absl::Status s = ValidateRequestId(r.request_id()); !s.ok()) return s;
  if (absl::Status s = ValidateSystemPrompt(r.system_prompt()); !s.ok()) return s;
  if (absl::Status s = ValidateQuery(r.query()); !s.ok()) return s;
  if (absl::Status s =
          AtMost("passages", r.passages_size(), "entries", limits.max_passages, "--max_passages");
      !s.ok()) {
    return s;
  }
  for (int i = 0; i < r.passages_size(); ++i) {
    if (absl::Status s = ValidatePassageRef(r.passages(i), i); !s.ok()) return s;
  }
  if (absl::Status s = ValidateBlockOptions(r.block_options(), r.passages_size()); !s.ok()) {
    return s;
  }
  return ValidateSampling(r.sampling(), limits.max_new_tokens_limit);
}

// 1..kMaxPassageTokenIds ids, each >= 0 (the vocabulary is the model's to check).
absl::Status ValidateTokenIds(const v1::TokenIds& ids, absl::string_view field) {
  if (ids.ids().empty()) return Invalid(field, "is empty", "at least one token id");
  if (absl::Status s = AtMost(field, ids.ids_size(), "ids", kMaxPassageTokenIds); !s.ok()) {
    return s;
  }
  for (int i = 0; i < ids.ids_size(); ++i) {
    if (ids.ids(i) < 0) {
      return Invalid(absl::StrCat(field, "[", i, "]"), absl::StrCat("is ", ids.ids(i)),
                     "a token id >= 0");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateRequestId(absl::string_view request_id) {
  if (absl::Status s = AtMost("request_id", request_id.size(), "bytes", kMaxRequestIdBytes);
      !s.ok()) {
    return s;
  }
  for (char c : request_id) {
    if (!absl::ascii_isprint(static_cast<unsigned char>(c))) {
      return Invalid("request_id",
                     absl::StrCat("contains byte 0x", absl::Hex(static_cast<unsigned char>(c))),
                     "printable ASCII");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidatePassageId(absl::string_view id) { return ValidatePassageIdField(id, "id"); }

absl::Status ValidateQuery(absl::string_view query) {
  if (query.empty()) return Invalid("query", "is empty", "non-empty UTF-8 text");
  if (absl::Status s = AtMost("query", query.size(), "bytes", kMaxQueryBytes); !s.ok()) return s;
  return ValidateUtf8(query, "query");
}

absl::Status ValidateSystemPrompt(absl::string_view system_prompt) {
  if (absl::Status s =
          AtMost("system_prompt", system_prompt.size(), "bytes", kMaxSystemPromptBytes);
      !s.ok()) {
    return s;
  }
  return ValidateUtf8(system_prompt, "system_prompt");
}

absl::Status ValidatePassageText(absl::string_view text, absl::string_view field) {
  if (text.empty()) return Invalid(field, "is empty", "non-empty UTF-8 text");
  if (absl::Status s = AtMost(field, text.size(), "bytes", kMaxPassageTextBytes); !s.ok()) {
    return s;
  }
  return ValidateUtf8(text, field);
}

absl::Status ValidatePassage(const v1::Passage& passage) {
  if (absl::Status s = ValidatePassageId(passage.id()); !s.ok()) return s;
  switch (passage.content_case()) {
    case v1::Passage::kText:
      return ValidatePassageText(passage.text(), "text");
    case v1::Passage::kTokenIds:
      return ValidateTokenIds(passage.token_ids(), "token_ids");
    case v1::Passage::CONTENT_NOT_SET:
      break;
  }
  return Invalid("content", "is not set", "text or token_ids");
}

absl::Status ValidatePassageRef(const v1::PassageRef& ref, int index) {
  const std::string field = absl::StrCat("passages[", index, "]");
  switch (ref.passage_case()) {
    case v1::PassageRef::kPassageId:
      if (ref.passage_id().empty()) {
        return Invalid(absl::StrCat(field, ".passage_id"), "is empty",
                       "the id of an ingested passage (anonymous passages have no id)");
      }
      return ValidatePassageIdField(ref.passage_id(), absl::StrCat(field, ".passage_id"));
    case v1::PassageRef::kText:
      return ValidatePassageText(ref.text(), absl::StrCat(field, ".text"));
    case v1::PassageRef::kTokenIds:
      return ValidateTokenIds(ref.token_ids(), absl::StrCat(field, ".token_ids"));
    case v1::PassageRef::PASSAGE_NOT_SET:
      break;
  }
  return Invalid(field, "is unset", "one of passage_id, text or token_ids");
}

absl::Status ValidateBlockOptions(const v1::BlockOptions& options, int num_passages) {
  if (!v1::AttentionMode_IsValid(options.mode())) {
    return Invalid("block_options.mode", absl::StrCat("is ", options.mode()),
                   "a known AttentionMode");
  }
  if (!v1::CachePolicy_IsValid(options.cache_policy())) {
    return Invalid("block_options.cache_policy", absl::StrCat("is ", options.cache_policy()),
                   "a known CachePolicy");
  }
  if (!v1::KvLoadFailurePolicy_IsValid(options.kv_load_failure_policy())) {
    return Invalid("block_options.kv_load_failure_policy",
                   absl::StrCat("is ", options.kv_load_failure_policy()),
                   "a known KvLoadFailurePolicy");
  }
  if (options.global_blocks() > static_cast<uint32_t>(num_passages)) {
    return Invalid("block_options.global_blocks", absl::StrCat("is ", options.global_blocks()),
                   absl::StrCat("at most the number of passages, ", num_passages,
                                " (in every attention mode)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateSamplingValues(const v1::SamplingParams& s) {
  if (!std::isfinite(s.temperature()) || s.temperature() < 0 ||
      s.temperature() > kMaxTemperature) {
    return Invalid("sampling.temperature", absl::StrCat("is ", s.temperature()),
                   absl::StrCat("0 (greedy) or finite in (0, ", kMaxTemperature, "]"));
  }
  if (!std::isfinite(s.top_p()) || s.top_p() < 0 || s.top_p() > 1) {
    return Invalid("sampling.top_p", absl::StrCat("is ", s.top_p()), "0 (unset) or in (0, 1]");
  }
  if (s.top_k() < 0) {
    return Invalid("sampling.top_k", absl::StrCat("is ", s.top_k()), ">= 0 (0 = disabled)");
  }
  return absl::OkStatus();
}

absl::Status ValidateStopFields(const v1::SamplingParams& s, int64_t max_new_tokens_limit) {
  if (s.max_new_tokens() > max_new_tokens_limit) {
    return Invalid("sampling.max_new_tokens", absl::StrCat("is ", s.max_new_tokens()),
                   absl::StrCat("at most ", max_new_tokens_limit,
                                " (--max_new_tokens_limit; 0 = the server's default)"));
  }
  if (absl::Status st = ValidateStopStrings(s); !st.ok()) return st;
  return ValidateStopTokenIds(s);
}

absl::Status ValidateSampling(const v1::SamplingParams& s, int64_t max_new_tokens_limit) {
  if (absl::Status st = ValidateSamplingValues(s); !st.ok()) return st;
  return ValidateStopFields(s, max_new_tokens_limit);
}

absl::Status ValidateGenerateRequest(const v1::GenerateRequest& request, const Limits& limits) {
  return ValidatePrompt(request, limits);
}

absl::Status ValidatePrefillRequest(const v1::PrefillRequest& request, const Limits& limits) {
  if (absl::Status s = ValidatePrompt(request, limits); !s.ok()) return s;
  if (!v1::HandoffTransport_IsValid(request.decoder().transport())) {
    return Invalid("decoder.transport", absl::StrCat("is ", request.decoder().transport()),
                   "a known HandoffTransport");
  }
  return absl::OkStatus();
}

v1::PrefillRequest ToPrefillRequest(const v1::GenerateRequest& request) {
  v1::PrefillRequest r;
  r.set_request_id(request.request_id());
  r.set_system_prompt(request.system_prompt());
  *r.mutable_passages() = request.passages();
  r.set_query(request.query());
  if (request.has_sampling()) *r.mutable_sampling() = request.sampling();
  if (request.has_block_options()) *r.mutable_block_options() = request.block_options();
  return r;
}

}  // namespace blockserve::contract
