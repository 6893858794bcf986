// The stored form of a block's source (its token ids; see source_store.h), shared
// by the stores: a self-checking value, and the key a store that has one key space files
// it under.
#ifndef BLOCKSERVE_KV_STORE_SOURCE_H_
#define BLOCKSERVE_KV_STORE_SOURCE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kv_store/block_key.h"

namespace blockserve::kv_store {

// A key derived from `key` that no content key collides with in practice (a 128-bit
// hash of the key under a distinct tag).
BlockKey SourceKey(const BlockKey& key);

// "BSSRC001" | u32 count | u32 0 | count × i32 token | u64 hash of all before it,
// little-endian.
std::string EncodeSourceValue(absl::Span<const int32_t> tokens);
// InvalidArgument (saying what is wrong) for a value that is not one EncodeSourceValue
// wrote: wrong magic, size or checksum.
absl::StatusOr<std::vector<int32_t>> DecodeSourceValue(std::string_view value);

}  // namespace blockserve::kv_store

#endif  // BLOCKSERVE_KV_STORE_SOURCE_H_
