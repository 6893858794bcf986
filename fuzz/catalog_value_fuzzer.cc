// Fuzz target: catalog entries (kv_store/catalog_value.h), read back from Redis where
// anyone with write access to the keyspace may have put anything.
//
// Input: one byte k, then k bytes of passage id, then the stored value (k is cut to what
// the input holds). The value is decoded for that id as it is, and again with its
// trailing checksum recomputed, so that mutations reach the id length and id checks
// behind the checksum.
//
// Invariants: failures are InvalidArgument (the header's contract); a decoded entry is
// exactly what EncodeCatalogValue writes for that id and key (one encoding per entry,
// so a value that decodes was written by the encoder, byte for byte).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "fuzz/fuzz_check.h"
#include "kv_store/block_key.h"
#include "kv_store/catalog_value.h"
#include "kv_store/hash.h"

namespace blockserve::kv_store {
namespace {

// kv_store/catalog_value.cc's checksum seed ("cat-chks"). Were it to change there, the
// fixed-checksum pass would only stop reaching past the checksum; nothing would fail.
constexpr uint64_t kChecksumSeed = 0x6361742d63686b73ULL;

void DecodeOnce(std::string_view value, std::string_view id) {
  absl::StatusOr<BlockKey> key = DecodeCatalogValue(value, id);
  if (!key.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(key.status()));
    return;
  }
  FUZZ_CHECK(EncodeCatalogValue(id, *key) == value);
}

}  // namespace
}  // namespace blockserve::kv_store

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace blockserve::kv_store;
  if (size == 0) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t id_len = std::min<size_t>(data[0], size - 1);
  const std::string_view id = input.substr(1, id_len);
  const std::string_view value = input.substr(1 + id_len);
  DecodeOnce(value, id);
  if (value.size() >= sizeof(uint64_t)) {
    std::string fixed(value);
    const size_t body = fixed.size() - sizeof(uint64_t);
    const uint64_t check = Hash64(fixed.data(), body, kChecksumSeed);
    std::memcpy(fixed.data() + body, &check, sizeof(check));
    DecodeOnce(fixed, id);
  }
  return 0;
}
