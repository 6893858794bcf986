// BlockKey: 128 bits = two independent 64-bit lanes of Hash64 (kv_store/hash.h) over
// the token ids as little-endian int32, each lane seeded from the model fingerprint
// with its own constant. Lane 0 fills bytes[0..8), lane 1 bytes[8..16), little-endian.
// The token count is hashed too (Hash64 mixes the length), so [1, 2] and [1, 2, 0]
// differ. Changing this function changes every key: stored blocks become unreachable
// (misses, not wrong answers), so treat it as part of the on-disk format.
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kv_store/block_key.h"
#include "kv_store/hash.h"

namespace blockserve::kv_store {
namespace {

constexpr uint64_t kLane0Seed = 0x626c6f636b6b6579ULL;  // "blockkey"
constexpr uint64_t kLane1Seed = 0x73657276652d6b31ULL;  // "serve-k1"

// Derives a lane seed from the fingerprint so that fingerprints that differ in any bit
// give unrelated lanes (a plain XOR would let fingerprint bits cancel seed bits).
uint64_t LaneSeed(uint64_t fingerprint, uint64_t lane_constant) {
  const uint64_t words[2] = {fingerprint, lane_constant};
  return Hash64(words, sizeof(words), lane_constant);
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string BlockKey::Hex() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(32, '0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 0xf];
  }
  return out;
}

absl::StatusOr<BlockKey> BlockKey::FromHex(std::string_view hex) {
  if (hex.size() != 32) {
    return absl::InvalidArgumentError(
        absl::StrCat("block key: expected 32 hex digits, found ", hex.size(), " characters"));
  }
  BlockKey key;
  for (size_t i = 0; i < hex.size(); ++i) {
    const int d = HexDigit(hex[i]);
    if (d < 0) {
      return absl::InvalidArgumentError(absl::StrCat("block key: character ", i, " ('",
                                                     std::string(1, hex[i]),
                                                     "') is not a hex digit"));
    }
    key.bytes[i / 2] = static_cast<uint8_t>(i % 2 == 0 ? d << 4 : key.bytes[i / 2] | d);
  }
  return key;
}

BlockKey MakeBlockKey(uint64_t model_fingerprint, absl::Span<const int32_t> tokens) {
  const size_t n = tokens.size() * sizeof(int32_t);
  const uint64_t lane0 = Hash64(tokens.data(), n, LaneSeed(model_fingerprint, kLane0Seed));
  const uint64_t lane1 = Hash64(tokens.data(), n, LaneSeed(model_fingerprint, kLane1Seed));
  BlockKey key;
  std::memcpy(key.bytes.data(), &lane0, 8);
  std::memcpy(key.bytes.data() + 8, &lane1, 8);
  return key;
}

}  // namespace blockserve::kv_store
