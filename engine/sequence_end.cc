#include "engine/sequence_end.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/utf8.h"

namespace blockserve::engine {
namespace {

bool Contains(const std::vector<int32_t>& ids, int32_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

}  // namespace

absl::Status ValidateStopRules(const StopRules& rules) {
  if (rules.max_new_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_new_tokens must be >= 1, got ", rules.max_new_tokens));
  }
  return absl::OkStatus();
}

std::string_view FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kEos:
      return "eos";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
  }
  return "unknown";
}

absl::StatusOr<std::string> TokenText(const Tokenizer& tokenizer, int32_t token) {
  if (token < 0 || token >= tokenizer.vocab_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("token id must be in [0, ", tokenizer.vocab_size(), "), got ", token));
  }
  if (tokenizer.IsSpecial(token)) return std::string();
  return tokenizer.TokenBytes(token);
}

// ─────────────────────────────── TextStream ───────────────────────────────

TextStream::TextStream(std::vector<std::string> stop_strings) : stops_(std::move(stop_strings)) {
  std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
  for (const std::string& s : stops_) longest_stop_ = std::max(longest_stop_, s.size());
}

TextStream::Update TextStream::Append(std::string_view bytes) {
  Update update;
  if (stopped_) return update;
  const size_t old_size = text_.size();
  text_.append(bytes);
  // Earlier appends matched no stop string, so a match must end in the new bytes.
  const size_t from = old_size >= longest_stop_ ? old_size - longest_stop_ + 1 : 0;
  size_t cut = std::string::npos;
  for (const std::string& s : stops_) cut = std::min(cut, text_.find(s, from));
  if (cut != std::string::npos) {
    text_.resize(cut);
    stopped_ = true;
    update.stopped = true;
    if (cut > emitted_) update.delta = SanitizeUtf8(std::string_view(text_).substr(emitted_));
    emitted_ = text_.size();
    return update;
  }
  // Hold back an incomplete character and any tail that may still become a stop string.
  size_t safe = CompleteUtf8Prefix(text_);
  const size_t tail_from = std::max(
      emitted_, text_.size() >= longest_stop_ ? text_.size() - longest_stop_ + 1 : size_t{0});
  for (size_t p = tail_from; p < safe; ++p) {
    const std::string_view tail = std::string_view(text_).substr(p);
    const bool may_start_stop =
        std::any_of(stops_.begin(), stops_.end(), [&](const std::string& s) {
          return s.size() > tail.size() && std::string_view(s).substr(0, tail.size()) == tail;
        });
    if (may_start_stop) {
      safe = p;
      break;
    }
  }
  if (safe > emitted_) {
    update.delta = SanitizeUtf8(std::string_view(text_).substr(emitted_, safe - emitted_));
    emitted_ = safe;
  }
  return update;
}

std::string TextStream::Flush() {
  if (emitted_ >= text_.size()) return "";
  std::string rest = SanitizeUtf8(std::string_view(text_).substr(emitted_));
  emitted_ = text_.size();
  return rest;
}

// ─────────────────────────────── SequenceEnd ───────────────────────────────

SequenceEnd::SequenceEnd(const Tokenizer& tokenizer, std::vector<int32_t> eos_ids,
                         StopRules rules, int64_t prompt_length, int64_t context_length)
    : tokenizer_(&tokenizer),
      eos_ids_(std::move(eos_ids)),
      rules_(std::move(rules)),
      // The k-th generated token sits at prompt_length + k - 1; its successor would need
      // position prompt_length + k, so the context is full once k = context - prompt.
      max_kept_(std::min(rules_.max_new_tokens, context_length - prompt_length)),
      text_(rules_.stop_strings) {}

SequenceEnd::Step SequenceEnd::Next(int32_t token) {
  Step step;
  if (!rules_.ignore_eos && Contains(eos_ids_, token)) {
    step.finish = FinishReason::kEos;
  } else {
    step.keep = true;
    kept_ += 1;
    if (Contains(rules_.stop_token_ids, token)) {
      step.finish = FinishReason::kStop;
    } else {
      TextStream::Update u = text_.Append(TokenText(*tokenizer_, token).value_or(""));
      step.text_delta = std::move(u.delta);
      if (u.stopped) {
        step.finish = FinishReason::kStop;
      } else if (kept_ >= max_kept_) {
        step.finish = FinishReason::kLength;
      }
    }
  }
  // At the end, text held back for a possible stop string or character is final.
  if (step.finish) step.text_delta += text_.Flush();
  return step;
}

}  // namespace blockserve::engine
