#include "kv_store/catalog_value.h"

#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kv_store/hash.h"

namespace blockserve::kv_store {
namespace {

constexpr char kMagic[8] = {'B', 'S', 'C', 'A', 'T', '0', '0', '1'};
constexpr size_t kHeaderBytes = sizeof(kMagic) + 16 + sizeof(uint32_t);
constexpr uint64_t kChecksumSeed = 0x6361742d63686b73ULL;  // "cat-chks"

}  // namespace

std::string EncodeCatalogValue(std::string_view passage_id, const BlockKey& key) {
  const uint32_t id_len = static_cast<uint32_t>(passage_id.size());
  std::string value(kMagic, sizeof(kMagic));
  value.append(reinterpret_cast<const char*>(key.bytes.data()), key.bytes.size());
  value.append(reinterpret_cast<const char*>(&id_len), sizeof(id_len));
  value.append(passage_id);
  const uint64_t check = Hash64(value.data(), value.size(), kChecksumSeed);
  value.append(reinterpret_cast<const char*>(&check), sizeof(check));
  return value;
}

absl::StatusOr<BlockKey> DecodeCatalogValue(std::string_view value, std::string_view passage_id) {
  if (value.size() < kHeaderBytes + sizeof(uint64_t) ||
      std::memcmp(value.data(), kMagic, sizeof(kMagic)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "not a catalog entry (", value.size(), " bytes without the BSCAT001 magic)"));
  }
  uint32_t id_len;
  std::memcpy(&id_len, value.data() + sizeof(kMagic) + 16, sizeof(id_len));
  const size_t body = kHeaderBytes + id_len;
  if (value.size() != body + sizeof(uint64_t)) {
    return absl::InvalidArgumentError(absl::StrCat("catalog entry of ", value.size(),
                                                   " bytes, expected ", body + sizeof(uint64_t)));
  }
  uint64_t check;
  std::memcpy(&check, value.data() + body, sizeof(check));
  if (check != Hash64(value.data(), body, kChecksumSeed)) {
    return absl::InvalidArgumentError("catalog entry fails its checksum");
  }
  if (value.substr(kHeaderBytes, id_len) != passage_id) {
    return absl::InvalidArgumentError(
        absl::StrCat("catalog entry names passage \"",
                     std::string(value.substr(kHeaderBytes, id_len)), "\", not \"",
                     std::string(passage_id), "\""));
  }
  BlockKey key;
  std::memcpy(key.bytes.data(), value.data() + sizeof(kMagic), key.bytes.size());
  return key;
}

}  // namespace blockserve::kv_store
