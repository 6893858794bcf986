// The kv_chunks fuzz target's input format and the local model it assembles for, shared
// with the seed corpus generator (fuzz/make_corpus.cc) so the seeds are valid streams.
//
// A stream is a sequence of records: a little-endian u16 length, then that many bytes of
// a serialized KvChunk.
#ifndef BLOCKSERVE_FUZZ_KV_CHUNKS_STREAM_H_
#define BLOCKSERVE_FUZZ_KV_CHUNKS_STREAM_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/kv_cache.h"
#include "handoff/kv_chunks.h"
#include "proto/blockserve.pb.h"

namespace blockserve::fuzz {

// Small, so that fuzzed streams hold whole sequences: 2 layers x 2 kv heads x 4 dims.
inline constexpr engine::KvShape kKvChunksExpectShape{
    .num_layers = 2, .num_kv_heads = 2, .head_dim = 4};
inline constexpr uint64_t kKvChunksFingerprint = 0x0123456789abcdefULL;

inline handoff::SequenceAssembler::Expect KvChunksExpect() {
  return {.model_fingerprint_hex = handoff::FingerprintHex(kKvChunksFingerprint),
          .shape = kKvChunksExpectShape,
          .vocab_size = 64,
          .context_length = 32,
          .max_new_tokens = {}};
}

// Records until the input ends, a record is cut off, or a record does not parse.
inline std::vector<v1::KvChunk> ParseKvChunkStream(std::string_view input) {
  std::vector<v1::KvChunk> chunks;
  while (input.size() >= 2) {
    const size_t length = static_cast<uint8_t>(input[0]) | static_cast<uint8_t>(input[1]) << 8;
    input.remove_prefix(2);
    if (length > input.size()) break;
    v1::KvChunk chunk;
    if (!chunk.ParseFromArray(input.data(), static_cast<int>(length))) break;
    chunks.push_back(std::move(chunk));
    input.remove_prefix(length);
  }
  return chunks;
}

inline std::string KvChunkStream(const std::vector<v1::KvChunk>& chunks) {
  std::string out;
  for (const v1::KvChunk& chunk : chunks) {
    const std::string bytes = chunk.SerializeAsString();
    out.push_back(static_cast<char>(bytes.size() & 0xff));
    out.push_back(static_cast<char>(bytes.size() >> 8));
    out += bytes;
  }
  return out;
}

}  // namespace blockserve::fuzz

#endif  // BLOCKSERVE_FUZZ_KV_CHUNKS_STREAM_H_
