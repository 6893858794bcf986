// Fuzz target: loading a Hugging Face tokenizer.json (engine/tokenizer.h), the largest
// file format a model folder brings (vocab, merges, added tokens, pre-tokenizer regexes).
//
// The input is the JSON text. Invariants: a failure is InvalidArgument (FromJson's
// contract; Internal would mean an unexpected exception escaped); a loaded tokenizer
// encodes sample texts (fixed ones and the input's own first bytes, which holds the
// vocab's spellings) into ids that are all in [0, vocab_size) and decodable, puts BOS
// first when asked and it has one, and encodes the same text to the same ids twice (the
// second time through its piece cache).
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer.h"
#include "fuzz/fuzz_check.h"

namespace blockserve::engine {
namespace {

// Bounded, so a slow pre-tokenizer regex from the input costs little per run.
constexpr size_t kMaxSampleBytes = 256;

void CheckEncode(const Tokenizer& tokenizer, std::string_view text) {
  const std::vector<int32_t> ids = tokenizer.Encode(text);
  for (int32_t id : ids) {
    FUZZ_CHECK(id >= 0 && id < tokenizer.vocab_size());
    FUZZ_CHECK(tokenizer.TokenBytes(id).ok());
  }
  FUZZ_CHECK(tokenizer.Decode(ids).ok());
  FUZZ_CHECK(tokenizer.Decode(ids, /*skip_special=*/true).ok());
  FUZZ_CHECK(tokenizer.Encode(text) == ids);
  std::vector<int32_t> wrapped = tokenizer.special_prefix();
  wrapped.insert(wrapped.end(), ids.begin(), ids.end());
  wrapped.insert(wrapped.end(), tokenizer.special_suffix().begin(),
                 tokenizer.special_suffix().end());
  FUZZ_CHECK(tokenizer.Encode(text, /*add_special_tokens=*/true) == wrapped);
}

}  // namespace
}  // namespace blockserve::engine

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace blockserve::engine;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::FromJson(text);
  if (!tokenizer.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(tokenizer.status()));
    return 0;
  }
  FUZZ_CHECK(tokenizer->vocab_size() >= 0);
  for (std::optional<int32_t> id : {tokenizer->bos_id(), tokenizer->eos_id()}) {
    if (id.has_value()) FUZZ_CHECK(*id >= 0 && *id < tokenizer->vocab_size());
  }
  CheckEncode(*tokenizer, "");
  CheckEncode(*tokenizer, "Hello world! It's 2024: <s>caf\xc3\xa9 </s>\n\t  x\xff\xfe y");
  CheckEncode(*tokenizer, text.substr(0, kMaxSampleBytes));
  return 0;
}
