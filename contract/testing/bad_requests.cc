#include "contract/testing/bad_requests.h"

#include <cmath>
#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"

namespace blockserve::contract::testing {
namespace {

constexpr absl::StatusCode kOk = absl::StatusCode::kOk;
constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

// A case on the fields both request types share (same names), so `mutate` is one
// generic lambda instantiated for each type.
template <typename Mutate>
BadRequestCase Shared(std::string name, absl::StatusCode code, Mutate mutate) {
  return {.name = std::move(name), .code = code, .mutate_generate = mutate,
          .mutate_prefill = mutate};
}

std::vector<BadRequestCase> ValidCases(const Limits& limits) {
  return {
      Shared("valid", kOk, [](auto&) {}),
      Shared("valid_global_blocks_equal_to_passages", kOk,
             [](auto& r) { r.mutable_block_options()->set_global_blocks(kValidPassages); }),
      Shared("valid_full_mode_global_blocks_equal_to_passages", kOk,
             [](auto& r) {
               r.mutable_block_options()->set_mode(v1::ATTENTION_MODE_FULL);
               r.mutable_block_options()->set_global_blocks(kValidPassages);
             }),
      Shared("valid_request_id_at_limit", kOk,
             [](auto& r) { r.set_request_id(std::string(kMaxRequestIdBytes, 'r')); }),
      Shared("valid_token_ids_passage", kOk,
             [](auto& r) { r.mutable_passages(0)->mutable_token_ids()->add_ids(1); }),
      Shared("valid_sampling_at_limits", kOk,
             [limits](auto& r) {
               v1::SamplingParams& s = *r.mutable_sampling();
               s.set_temperature(kMaxTemperature);
               s.set_top_p(1);
               s.set_top_k(1);
               s.set_max_new_tokens(static_cast<uint32_t>(limits.max_new_tokens_limit));
               for (size_t i = 0; i < kMaxStopStrings; ++i) {
                 s.add_stop(std::string(kMaxStopStringBytes, static_cast<char>('a' + i)));
               }
               for (size_t i = 0; i < kMaxStopTokenIds; ++i) s.add_stop_token_ids(i);
             }),
  };
}

std::vector<BadRequestCase> PromptCases(const Limits& limits) {
  return {
      Shared("request_id_too_long", kInvalid,
             [](auto& r) { r.set_request_id(std::string(kMaxRequestIdBytes + 1, 'r')); }),
      Shared("request_id_not_printable", kInvalid,
             [](auto& r) { r.set_request_id("tab\there"); }),
      Shared("request_id_not_ascii", kInvalid,
             [](auto& r) { r.set_request_id("caf\xc3\xa9"); }),
      Shared("system_prompt_invalid_utf8", kInvalid,
             [](auto& r) { r.set_system_prompt("\xc3\x28"); }),
      Shared("query_empty", kInvalid, [](auto& r) { r.clear_query(); }),
      Shared("query_invalid_utf8", kInvalid,
             [](auto& r) { r.set_query(std::string("what is \xff\xfe?", 12)); }),
      Shared("query_over_byte_limit", kInvalid,
             [](auto& r) { r.set_query(std::string(kMaxQueryBytes + 1, 'q')); }),
      Shared("system_prompt_over_byte_limit", kInvalid,
             [](auto& r) { r.set_system_prompt(std::string(kMaxSystemPromptBytes + 1, 's')); }),
      Shared("too_many_passages", kInvalid,
             [limits](auto& r) {
               while (r.passages_size() <= limits.max_passages) r.add_passages()->set_text("p");
             }),
  };
}

std::vector<BadRequestCase> PassageCases() {
  return {
      Shared("passage_unset", kInvalid, [](auto& r) { r.add_passages(); }),
      Shared("passage_id_empty", kInvalid,
             [](auto& r) { r.mutable_passages(3)->set_passage_id(""); }),
      Shared("passage_id_too_long", kInvalid,
             [](auto& r) {
               r.mutable_passages(3)->set_passage_id(std::string(kMaxPassageIdBytes + 1, 'p'));
             }),
      Shared("passage_id_control_character", kInvalid,
             [](auto& r) { r.mutable_passages(3)->set_passage_id("tab\tid"); }),
      Shared("passage_text_empty", kInvalid,
             [](auto& r) { r.mutable_passages(1)->set_text(""); }),
      Shared("passage_text_invalid_utf8", kInvalid,
             [](auto& r) { r.mutable_passages(1)->set_text("\xed\xa0\x80"); }),
      Shared("passage_token_ids_empty", kInvalid,
             [](auto& r) { r.mutable_passages(2)->mutable_token_ids(); }),
      Shared("passage_text_over_byte_limit", kInvalid,
             [](auto& r) { r.mutable_passages(1)->set_text(std::string(kMaxPassageTextBytes + 1, 't')); }),
      Shared("passage_token_ids_over_limit", kInvalid,
             [](auto& r) {
               v1::TokenIds& ids = *r.mutable_passages(2)->mutable_token_ids();
               for (size_t i = 0; i <= kMaxPassageTokenIds; ++i) ids.add_ids(1);
             }),
      Shared("passage_token_id_negative", kInvalid,
             [](auto& r) { r.mutable_passages(2)->mutable_token_ids()->add_ids(-1); }),
  };
}

std::vector<BadRequestCase> OptionCases() {
  BadRequestCase transport{
      .name = "transport_unknown",
      .code = kInvalid,
      .mutate_generate = nullptr,  // the router picks the transport, not the client
      .mutate_prefill =
          [](v1::PrefillRequest& r) {
            r.mutable_decoder()->set_transport(static_cast<v1::HandoffTransport>(5));
          },
  };
  return {
      Shared("mode_unknown", kInvalid,
             [](auto& r) {
               r.mutable_block_options()->set_mode(static_cast<v1::AttentionMode>(7));
             }),
      Shared("cache_policy_unknown", kInvalid,
             [](auto& r) {
               r.mutable_block_options()->set_cache_policy(static_cast<v1::CachePolicy>(9));
             }),
      Shared("full_mode_cache_policy_unknown", kInvalid,
             [](auto& r) {
               r.mutable_block_options()->set_mode(v1::ATTENTION_MODE_FULL);
               r.mutable_block_options()->set_cache_policy(static_cast<v1::CachePolicy>(9));
             }),
      Shared("kv_load_failure_policy_unknown", kInvalid,
             [](auto& r) {
               r.mutable_block_options()->set_kv_load_failure_policy(
                   static_cast<v1::KvLoadFailurePolicy>(5));
             }),
      Shared("global_blocks_over_passages", kInvalid,
             [](auto& r) { r.mutable_block_options()->set_global_blocks(kValidPassages + 1); }),
      Shared("full_mode_global_blocks_over_passages", kInvalid,
             [](auto& r) {
               r.mutable_block_options()->set_mode(v1::ATTENTION_MODE_FULL);
               r.mutable_block_options()->set_global_blocks(9);
             }),
      std::move(transport),
  };
}

std::vector<BadRequestCase> SamplingCases(const Limits& limits) {
  auto sampling = [](std::string name, auto mutate) {
    return Shared(std::move(name), kInvalid,
                  [mutate](auto& r) { mutate(*r.mutable_sampling()); });
  };
  return {
      sampling("temperature_over_max", [](v1::SamplingParams& s) { s.set_temperature(101); }),
      sampling("temperature_negative", [](v1::SamplingParams& s) { s.set_temperature(-1); }),
      sampling("temperature_nan", [](v1::SamplingParams& s) { s.set_temperature(NAN); }),
      sampling("temperature_infinite", [](v1::SamplingParams& s) { s.set_temperature(INFINITY); }),
      sampling("top_p_over_one", [](v1::SamplingParams& s) { s.set_top_p(1.5); }),
      sampling("top_p_negative", [](v1::SamplingParams& s) { s.set_top_p(-0.5); }),
      sampling("top_p_nan", [](v1::SamplingParams& s) { s.set_top_p(NAN); }),
      sampling("top_k_negative", [](v1::SamplingParams& s) { s.set_top_k(-1); }),
      sampling("too_many_stop_strings",
               [](v1::SamplingParams& s) {
                 for (size_t i = 0; i <= kMaxStopStrings; ++i) s.add_stop(absl::StrCat("s", i));
               }),
      sampling("stop_string_empty", [](v1::SamplingParams& s) { s.add_stop(""); }),
      sampling("stop_string_too_long",
               [](v1::SamplingParams& s) { s.add_stop(std::string(kMaxStopStringBytes + 1, 's')); }),
      sampling("stop_string_invalid_utf8", [](v1::SamplingParams& s) { s.add_stop("\xed\xa0\x80"); }),
      sampling("too_many_stop_token_ids",
               [](v1::SamplingParams& s) {
                 for (size_t i = 0; i <= kMaxStopTokenIds; ++i) s.add_stop_token_ids(i);
               }),
      sampling("stop_token_id_negative", [](v1::SamplingParams& s) { s.add_stop_token_ids(-1); }),
      sampling("max_new_tokens_over_limit",
               [limits](v1::SamplingParams& s) {
                 s.set_max_new_tokens(static_cast<uint32_t>(limits.max_new_tokens_limit + 1));
               }),
  };
}

}  // namespace

v1::GenerateRequest ValidGenerateRequest() {
  v1::GenerateRequest r;
  for (int i = 0; i < kValidPassages; ++i) {
    r.add_passages()->set_text(absl::StrCat("Passage ", i, ": the ferry left at dawn."));
  }
  r.set_query("When did the ferry leave?");
  r.mutable_sampling()->set_max_new_tokens(4);
  return r;
}

std::optional<v1::GenerateRequest> BadRequestCase::Generate() const {
  if (!mutate_generate) return std::nullopt;
  v1::GenerateRequest r = ValidGenerateRequest();
  mutate_generate(r);
  return r;
}

v1::PrefillRequest BadRequestCase::Prefill() const {
  v1::PrefillRequest r = ToPrefillRequest(ValidGenerateRequest());
  mutate_prefill(r);
  return r;
}

std::vector<BadRequestCase> BadRequestCases(const Limits& limits) {
  std::vector<BadRequestCase> cases = ValidCases(limits);
  for (std::vector<BadRequestCase> group :
       {PromptCases(limits), PassageCases(), OptionCases(), SamplingCases(limits)}) {
    for (BadRequestCase& c : group) cases.push_back(std::move(c));
  }
  return cases;
}

}  // namespace blockserve::contract::testing
