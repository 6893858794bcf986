#include "engine/backend.h"

#include "absl/strings/str_cat.h"

namespace blockserve::engine {
namespace {

absl::Status CheckItem(const Backend& backend, absl::Span<const ForwardItem> earlier,
                       const ForwardItem& item) {
  const ModelConfig& c = backend.config();
  if (item.tokens.empty()) return absl::InvalidArgumentError("forward item has no tokens");
  if (item.cache == nullptr) return absl::InvalidArgumentError("forward item has no cache");
  // Two items appending to one cache would each see a past without the other's rows.
  for (const ForwardItem& e : earlier) {
    if (e.cache == item.cache) {
      return absl::InvalidArgumentError("two forward items share one KV cache");
    }
  }
  const KvShape want{c.num_hidden_layers, c.num_key_value_heads, c.head_dim};
  if (!(item.cache->shape() == want)) {
    return absl::InvalidArgumentError("KV cache shape does not match the model");
  }
  if (!backend.SupportsKvDType(item.cache->dtype())) {
    return absl::InvalidArgumentError(absl::StrCat("the ", std::string(backend.name()),
                                                   " backend does not hold ",
                                                   std::string(DTypeName(item.cache->dtype())),
                                                   " KV"));
  }
  for (int32_t t : item.tokens) {
    if (t < 0 || t >= c.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", t, " is outside the vocabulary [0, ", c.vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Backend::Forward(absl::Span<const ForwardItem> batch,
                              std::vector<std::vector<float>>* logits) {
  // Every item is checked before any runs, so a bad item leaves all caches untouched.
  for (size_t b = 0; b < batch.size(); ++b) {
    if (absl::Status s = CheckItem(*this, batch.subspan(0, b), batch[b]); !s.ok()) return s;
  }
  if (batch.empty()) {
    logits->clear();
    return absl::OkStatus();
  }
  return DoForward(batch, logits);
}

}  // namespace blockserve::engine
