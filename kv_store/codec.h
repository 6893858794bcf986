// The block value format: how one block's KV (engine::KvCache at position 0) is laid
// out as bytes in any store. Every backend stores exactly these bytes.
//
// A value is a fixed 56-byte little-endian header followed by the payload:
//
//   offset size field
//        0    4 magic "BSKV"
//        4    2 format version (kCodecVersion)
//        6    1 dtype of K/V in the payload: 0 = F32, 1 = F16, 2 = BF16
//        7    1 reserved, 0
//        8    8 model fingerprint
//       16    4 num_layers
//       20    4 num_kv_heads
//       24    4 head_dim
//       28    4 token count n
//       32    8 start_position (0 for cached blocks; carried as written)
//       40    8 payload length = 4n + 2 * num_layers * n * num_kv_heads * head_dim * dtype size
//       48    8 checksum: Checksum64 over header bytes [0, 48) then the payload
//       56      payload: n token ids (int32), then per layer K then V, each
//               [token][kv_head][head_dim] in the stored dtype
//
// The checksum covers the header too, so a flipped bit anywhere (start_position
// included) is caught. Decoding checks every field and names what it expected and found:
// DATA_LOSS for damaged or foreign bytes (short, bad magic, unknown dtype, lengths that
// disagree, trailing bytes, checksum), INVALID_ARGUMENT for a well-formed value the
// caller cannot use (another format version, another model, another shape).
#ifndef BLOCKSERVE_KV_STORE_CODEC_H_
#define BLOCKSERVE_KV_STORE_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/dtype.h"
#include "engine/kv_cache.h"

namespace blockserve::kv_store {

inline constexpr uint16_t kCodecVersion = 1;
inline constexpr size_t kValueHeaderBytes = 56;

struct CodecOptions {
  uint64_t model_fingerprint = 0;
  engine::KvShape shape;
  engine::DType dtype = engine::DType::kBF16;  // what Encode writes
  // What Decode returns: the engine's KV dtype (engine::CheckKvDType). A value stored in
  // the same dtype decodes by copying; otherwise it is converted.
  engine::DType cache_dtype = engine::DType::kF32;
};

// Size in bytes of the value EncodeBlockValue writes for `num_tokens` tokens.
size_t EncodedValueBytes(const engine::KvShape& shape, int64_t num_tokens, engine::DType dtype);

// Encodes `kv` with `o.model_fingerprint` and `o.dtype`. The header records kv.shape();
// callers keep it equal to o.shape (stores reject a Put whose shape differs), and a
// value of another shape fails DecodeBlockValue's shape check rather than decoding.
std::string EncodeBlockValue(const engine::KvCache& kv, const CodecOptions& o);

// Validates `value` against `expected` (fingerprint and shape; the stored dtype is read
// from the header, any supported one decodes) and returns its KV in
// expected.cache_dtype.
absl::StatusOr<engine::KvCache> DecodeBlockValue(std::string_view value,
                                                 const CodecOptions& expected);

}  // namespace blockserve::kv_store

#endif  // BLOCKSERVE_KV_STORE_CODEC_H_
