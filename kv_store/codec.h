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
//       48    8 checksum: XXH3-64 (hash.h Checksum64) of header bytes [0, 48) followed
//                 by the payload
//       56      payload: n token ids (int32), then per layer K then V, each
//               [token][kv_head][head_dim] in the stored dtype
//
// The checksum covers the header too, so a flipped bit anywhere (start_position
// included) is caught. Decoding checks every field and names what it expected and found:
// DATA_LOSS for damaged or foreign bytes (short, bad magic, unknown dtype, lengths that
// disagree, trailing bytes, checksum), INVALID_ARGUMENT for a well-formed value the
// caller cannot use (another format version, another model, another shape).
//
// Format versions: 1 had the same layout with our own Hash64-based checksum; 2 (this
// one) checksums with XXH3. A version-1 value is refused as another version
// (INVALID_ARGUMENT, so stores treat it as a miss and the block is re-encoded), never
// misread as a checksum failure.
//
// Decoding is one pass over the value's bytes: each chunk of up to kDecodeChunkBytes is
// converted into its destination and then hashed while it is still in cache, and the
// checksum is compared at the end (ValueDecoder). A caller that gets a checksum error
// has written garbage into its destination and must throw the destination away; the
// stores do (the KvCache they were filling is never returned). A value of at least
// kBypassCacheMinBytes whose dtype is the destination's is copied with streaming stores
// (engine::CopyBypassingCache): a destination that size outgrows the cache anyway, and
// not reading its lines in first saves a third of the copy's memory traffic
// (bench/results/kv_store_bench.md, "shm" rows).
#ifndef BLOCKSERVE_KV_STORE_CODEC_H_
#define BLOCKSERVE_KV_STORE_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/dtype.h"
#include "engine/kv_cache.h"
#include "kv_store/hash.h"

namespace blockserve::kv_store {

inline constexpr uint16_t kCodecVersion = 2;
inline constexpr size_t kValueHeaderBytes = 56;
// Bytes converted then hashed at a time: small enough to stay in L2 between the two.
inline constexpr size_t kDecodeChunkBytes = 128 << 10;
// Values at least this large skip the cache on a same-dtype copy (above).
inline constexpr uint64_t kBypassCacheMinBytes = 8 << 20;

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

// What a value's header says, once ParseValueHeader has validated it.
struct ValueHeader {
  engine::DType dtype = engine::DType::kBF16;  // of K and V in the payload
  uint32_t num_tokens = 0;
  int64_t start_position = 0;
  uint64_t value_bytes = 0;  // header + payload: the whole value
  uint64_t checksum = 0;     // as stored; ValueDecoder::Finish compares it
  // Where the token ids start in the value, and where K/V start.
  static constexpr uint64_t tokens_at() { return kValueHeaderBytes; }
  uint64_t arrays_at() const { return kValueHeaderBytes + 4 * uint64_t{num_tokens}; }
};

// Checks the first kValueHeaderBytes of a value that is `value_size` bytes long: every
// check of DecodeBlockValue except the checksum (which needs the payload), with the
// same errors. `header` may be longer than the header; only its start is read.
absl::StatusOr<ValueHeader> ParseValueHeader(std::string_view header, uint64_t value_size,
                                             const CodecOptions& expected);

// Where a decode writes K and V: for each layer, num_tokens * num_kv_heads * head_dim
// elements of `dtype` at k[layer] and at v[layer] ([token][kv_head][head_dim], as
// engine::KvCache). F32 destinations get the stored values widened exactly (bf16, f16)
// or copied (f32); a BF16 destination gets stored bf16 copied as is, and f32/f16
// rounded to nearest even. F16 destinations are not supported.
struct KvDestination {
  engine::DType dtype = engine::DType::kF32;
  std::vector<void*> k, v;
};

// `kv`'s own arrays, in its dtype (it must already hold the block's rows:
// KvCache::Append or AppendUninitialized).
KvDestination CacheDestination(engine::KvCache& kv);

// Decodes a value given in order, in pieces of any size (shared-memory pages, network
// reads), into a destination, hashing the bytes as it goes. The header must have been
// validated by ParseValueHeader; the token ids are hashed but not copied (callers read
// them before choosing the destination).
class ValueDecoder {
 public:
  ValueDecoder(ValueDecoder&&) = default;
  ValueDecoder& operator=(ValueDecoder&&) = default;
  // Fences the streaming stores of a decode that was not finished.
  ~ValueDecoder();

  // InvalidArgument when `dest` does not fit `shape` or its dtype is unsupported.
  static absl::StatusOr<ValueDecoder> Create(const ValueHeader& header,
                                             const engine::KvShape& shape, KvDestination dest);

  // The next `n` bytes of the value (the first call starts at its offset 0, header
  // included). Bytes past the header's value size are counted and fail Finish.
  void Consume(const char* data, size_t n);

  // Consume in two halves that may run on two threads at once (ConsumeInParallel):
  // ConvertOnly writes the destination, HashOnly hashes; each must be given every byte
  // of the value, in order, and each half runs on one thread at a time. A decoder is
  // fed either through Consume or through these two, never both.
  void ConvertOnly(const char* data, size_t n);
  void HashOnly(const char* data, size_t n);

  // OK when exactly the value's bytes were consumed and they hash to its checksum;
  // DATA_LOSS otherwise (the destination then holds garbage). Either way the
  // destination's bytes are all written (streaming stores fenced) when it returns.
  absl::Status Finish();

 private:
  ValueDecoder(const ValueHeader& header, const engine::KvShape& shape, KvDestination dest);
  // Converts [data, data + n) of the K/V arrays, which start `at` bytes into them.
  void ConvertArrays(uint64_t at, const char* data, size_t n);

  ValueHeader header_;
  uint64_t array_bytes_ = 0;  // one layer's K (or V) in the stored dtype
  size_t src_size_ = 0, dst_size_ = 0;
  bool bypass_cache_ = false;  // a large same-dtype value: streaming-store copies
  bool unfenced_ = false;      // streaming stores since the last fence
  KvDestination dest_;
  uint64_t converted_ = 0, hashed_ = 0;  // bytes given to each half
  // An element split between two pieces (only when a piece boundary falls inside one).
  char partial_[4] = {};
  size_t partial_bytes_ = 0;
  std::unique_ptr<ChecksumStream> sum_;
};
// One piece of a value in memory.
struct ValuePiece {
  const char* data;
  size_t size;
};

// Feeds `pieces` (the whole value, in order) to `decoder`: this thread converts them
// while a second thread hashes each piece right after it is converted, so a large
// value's copy and checksum overlap on two cores instead of adding up on one (a 19.4 MB
// bf16 shared-memory get: bench/results/kv_store_bench.md). The pieces must stay valid
// until it returns. For values of at least kParallelHashMinBytes on machines with a
// second core; smaller ones are not worth a thread.
void ConsumeInParallel(ValueDecoder& decoder, absl::Span<const ValuePiece> pieces);
inline constexpr uint64_t kParallelHashMinBytes = 8 << 20;

// DecodeBlockValue for a value that arrives in order, in pieces (a chunked network read,
// so decoding overlaps the transfer): Begin with the value's first bytes, which must
// hold its header and token ids, Consume the rest in order, then Finish. The same checks
// and errors as DecodeBlockValue, which is this in one piece.
class BlockValueStream {
 public:
  // `prefix` is the value's first bytes (all consumed here); `value_size` the whole
  // value's length. OUT_OF_RANGE when the prefix ends before the token ids do.
  static absl::StatusOr<std::unique_ptr<BlockValueStream>> Begin(std::string_view prefix,
                                                                 uint64_t value_size,
                                                                 const CodecOptions& expected);
  void Consume(const char* data, size_t n) { decoder_.Consume(data, n); }
  absl::StatusOr<engine::KvCache> Finish();

 private:
  BlockValueStream(engine::KvCache kv, ValueDecoder decoder)
      : kv_(std::move(kv)), decoder_(std::move(decoder)) {}

  engine::KvCache kv_;  // moved in with its arrays, which decoder_ writes, in place
  ValueDecoder decoder_;
};


}  // namespace blockserve::kv_store

#endif  // BLOCKSERVE_KV_STORE_CODEC_H_
