#include "kv_store/source.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "kv_store/hash.h"

namespace blockserve::kv_store {
namespace {

constexpr char kMagic[8] = {'B', 'S', 'S', 'R', 'C', '0', '0', '1'};
constexpr size_t kHeaderBytes = 16;  // magic, count, zero
constexpr uint64_t kSourceLane0 = 0x736f757263652d30ULL;  // "source-0"
constexpr uint64_t kSourceLane1 = 0x736f757263652d31ULL;  // "source-1"
constexpr uint64_t kChecksumSeed = 0x7372632d63686b73ULL;  // "src-chks"

}  // namespace

BlockKey SourceKey(const BlockKey& key) {
  BlockKey out;
  const uint64_t lanes[2] = {Hash64(key.bytes.data(), key.bytes.size(), kSourceLane0),
                             Hash64(key.bytes.data(), key.bytes.size(), kSourceLane1)};
  std::memcpy(out.bytes.data(), lanes, sizeof(lanes));
  return out;
}

std::string EncodeSourceValue(absl::Span<const int32_t> tokens) {
  const uint32_t header[2] = {static_cast<uint32_t>(tokens.size()), 0};
  std::string value(kMagic, sizeof(kMagic));
  value.append(reinterpret_cast<const char*>(header), sizeof(header));
  value.append(reinterpret_cast<const char*>(tokens.data()), tokens.size() * sizeof(int32_t));
  const uint64_t check = Hash64(value.data(), value.size(), kChecksumSeed);
  value.append(reinterpret_cast<const char*>(&check), sizeof(check));
  return value;
}

absl::StatusOr<std::vector<int32_t>> DecodeSourceValue(std::string_view value) {
  if (value.size() < kHeaderBytes + sizeof(uint64_t) ||
      std::memcmp(value.data(), kMagic, sizeof(kMagic)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "not a block source value (", value.size(), " bytes without the BSSRC001 magic)"));
  }
  uint32_t header[2];
  std::memcpy(header, value.data() + sizeof(kMagic), sizeof(header));
  const size_t body = kHeaderBytes + size_t{header[0]} * sizeof(int32_t);
  if (header[1] != 0 || value.size() != body + sizeof(uint64_t)) {
    return absl::InvalidArgumentError(absl::StrCat("block source value of ", value.size(),
                                                   " bytes, expected ", body + sizeof(uint64_t),
                                                   " for ", header[0], " tokens"));
  }
  uint64_t check;
  std::memcpy(&check, value.data() + body, sizeof(check));
  if (check != Hash64(value.data(), body, kChecksumSeed)) {
    return absl::InvalidArgumentError("block source value fails its checksum");
  }
  std::vector<int32_t> tokens(header[0]);
  // No memcpy for 0 tokens: an empty vector's data() is null, and memcpy's pointers must
  // be non-null even for 0 bytes (found by fuzz/source_value_fuzzer).
  if (!tokens.empty()) {
    std::memcpy(tokens.data(), value.data() + kHeaderBytes, tokens.size() * sizeof(int32_t));
  }
  return tokens;
}

}  // namespace blockserve::kv_store
