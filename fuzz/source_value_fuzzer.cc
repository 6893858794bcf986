// Fuzz target: a block's stored source, its token ids (kv_store/source.h), which the
// shared-memory and Redis stores decode when a named passage's block must be computed
// again.
//
// The value is decoded as it is and again with its trailing checksum recomputed, so that
// mutations reach the count and size checks behind the checksum.
//
// Invariants: failures are InvalidArgument (the header's contract); decoded tokens
// encode back to exactly the same bytes.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "fuzz/fuzz_check.h"
#include "kv_store/hash.h"
#include "kv_store/source.h"

namespace blockserve::kv_store {
namespace {

// kv_store/source.cc's checksum seed ("src-chks"); see catalog_value_fuzzer.cc.
constexpr uint64_t kChecksumSeed = 0x7372632d63686b73ULL;

void DecodeOnce(std::string_view value) {
  absl::StatusOr<std::vector<int32_t>> tokens = DecodeSourceValue(value);
  if (!tokens.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(tokens.status()));
    return;
  }
  FUZZ_CHECK(EncodeSourceValue(*tokens) == value);
}

}  // namespace
}  // namespace blockserve::kv_store

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace blockserve::kv_store;
  const std::string_view value(reinterpret_cast<const char*>(data), size);
  DecodeOnce(value);
  if (size >= sizeof(uint64_t)) {
    std::string fixed(value);
    const size_t body = size - sizeof(uint64_t);
    const uint64_t check = Hash64(fixed.data(), body, kChecksumSeed);
    std::memcpy(fixed.data() + body, &check, sizeof(check));
    DecodeOnce(fixed);
  }
  return 0;
}
