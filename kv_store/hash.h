// Fast non-cryptographic hashing for the KV store: content keys and value checksums.
//
// Both are built on one 64-bit multiply-rotate hash that consumes 8 bytes per step in
// four independent lanes (32 bytes per iteration), so a multi-MB value is hashed at
// memory speed. Bytes are read as little-endian 64-bit words; results are the same on
// every little-endian host (the only kind we build for). Not collision-resistant against
// an adversary: keys and checksums guard against accidents (bit flips, truncation,
// distinct passages), not against someone crafting collisions.
#ifndef BLOCKSERVE_KV_STORE_HASH_H_
#define BLOCKSERVE_KV_STORE_HASH_H_

#include <cstddef>
#include <cstdint>

namespace blockserve::kv_store {

// 64-bit hash of `n` bytes at `data`. Different seeds give unrelated functions.
uint64_t Hash64(const void* data, size_t n, uint64_t seed);

// Checksum of a value's bytes; `seed` lets a caller chain several ranges
// (Checksum64(b, nb, Checksum64(a, na)) covers a then b).
uint64_t Checksum64(const void* data, size_t n, uint64_t seed = 0);

}  // namespace blockserve::kv_store

#endif  // BLOCKSERVE_KV_STORE_HASH_H_
