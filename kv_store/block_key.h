// BlockKey: the content key of a block of KV, hash(model fingerprint, token ids), 128
// bits. The same passage ingested twice (for the same model) is stored once, and
// different models never share an entry. Key derivation per key space (model, and later
// tenant namespace) lives in blocks/key_space.h; this is the hash itself, part of the
// stored format (block_key.cc says how it is computed).
#ifndef BLOCKSERVE_KV_STORE_BLOCK_KEY_H_
#define BLOCKSERVE_KV_STORE_BLOCK_KEY_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace blockserve::kv_store {

struct BlockKey {
  std::array<uint8_t, 16> bytes{};
  std::string Hex() const;  // 32 lowercase hex digits
  // InvalidArgument unless `hex` is 32 hex digits (either case).
  static absl::StatusOr<BlockKey> FromHex(std::string_view hex);
  bool operator==(const BlockKey&) const = default;
};

BlockKey MakeBlockKey(uint64_t model_fingerprint, absl::Span<const int32_t> tokens);

}  // namespace blockserve::kv_store

#endif  // BLOCKSERVE_KV_STORE_BLOCK_KEY_H_
