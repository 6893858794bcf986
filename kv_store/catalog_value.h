// The stored form of a catalog entry (PassageCatalog) in stores that keep it as an
// opaque value (Redis): the entry names its own passage id, so an entry copied or
// pointed elsewhere (another id's value under this id, a bare key, garbage) is detected
// when read and treated as absent, never followed to another passage's block.
#ifndef BLOCKSERVE_KV_STORE_CATALOG_VALUE_H_
#define BLOCKSERVE_KV_STORE_CATALOG_VALUE_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "kv_store/block_key.h"

namespace blockserve::kv_store {

// "BSCAT001" | 16 key bytes | u32 id length | id bytes | u64 hash of all before it,
// little-endian.
std::string EncodeCatalogValue(std::string_view passage_id, const BlockKey& key);

// The key of an entry EncodeCatalogValue wrote for `passage_id`. InvalidArgument (saying
// what is wrong) for anything else: wrong magic or size, a failed checksum, or an entry
// that names another passage id.
absl::StatusOr<BlockKey> DecodeCatalogValue(std::string_view value, std::string_view passage_id);

}  // namespace blockserve::kv_store

#endif  // BLOCKSERVE_KV_STORE_CATALOG_VALUE_H_
