// Hashing for the KV store: content keys (Hash64, our own) and value checksums (XXH3).
//
// Hash64 is a 64-bit multiply-rotate hash that consumes 8 bytes per step in four
// independent lanes. It names stored blocks (block_key.cc), catalog slots and small
// values' check words, so it must never change: changing it would orphan every stored
// block. Bytes are read as little-endian 64-bit words; results are the same on every
// little-endian host (the only kind we build for).
//
// Value checksums (the block codec, format 2 on) are XXH3-64 from xxHash (Debian's
// libxxhash): it runs at several times Hash64's speed on multi-MB values, and its
// streaming state lets a decoder hash each chunk right after copying it, while the
// chunk is still in cache (ChecksumStream).
//
// Neither is collision-resistant against an adversary: keys and checksums guard against
// accidents (bit flips, truncation, distinct passages), not against crafted collisions.
#ifndef BLOCKSERVE_KV_STORE_HASH_H_
#define BLOCKSERVE_KV_STORE_HASH_H_

#include <cstddef>
#include <cstdint>

namespace blockserve::kv_store {

// 64-bit hash of `n` bytes at `data`. Different seeds give unrelated functions.
uint64_t Hash64(const void* data, size_t n, uint64_t seed);

// XXH3-64 (seed 0) of `n` bytes at `data`: a value checksum in one call.
uint64_t Checksum64(const void* data, size_t n);

// XXH3-64 of a byte sequence given in pieces: Update(a), Update(b) then Digest() equals
// Checksum64 of a followed by b, however the bytes are split.
class ChecksumStream {
 public:
  ChecksumStream();
  ~ChecksumStream();
  ChecksumStream(const ChecksumStream&) = delete;
  ChecksumStream& operator=(const ChecksumStream&) = delete;

  void Update(const void* data, size_t n);
  uint64_t Digest() const;

 private:
  void* state_;  // XXH3_state_t, kept out of this header
};

}  // namespace blockserve::kv_store

#endif  // BLOCKSERVE_KV_STORE_HASH_H_
