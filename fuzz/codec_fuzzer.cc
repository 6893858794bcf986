// Fuzz target: the KV block value codec (kv_store/codec.h), what every store decodes
// from bytes it did not write itself (Redis values, shared memory other processes map).
//
// Each input is decoded twice: as it is, and with its checksum field recomputed over the
// mutated bytes. Random mutations almost never keep a 64-bit checksum right, so without
// the second pass nothing after the checksum check (the payload walk, the dtype
// conversion) would ever see a mutated header.
//
// Invariants on success: the KV has the expected shape and the header's token count, and
// encoding it again in the value's dtype gives a value of the same size that decodes to
// the same tokens, start position and elements (bitwise, any NaN matching any NaN: a
// float → F16/BF16 → float trip may quiet a NaN).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/dtype.h"
#include "engine/kv_cache.h"
#include "fuzz/fuzz_check.h"
#include "kv_store/codec.h"
#include "kv_store/hash.h"

namespace blockserve::kv_store {
namespace {

// Small, so that a fuzzed value can hold whole blocks: 2 layers x 2 heads x 4 dims.
constexpr engine::KvShape kShape{.num_layers = 2, .num_kv_heads = 2, .head_dim = 4};
constexpr uint64_t kFingerprint = 0x0123456789abcdefULL;
constexpr size_t kDTypeAt = 6;
constexpr size_t kTokenCountAt = 28;
constexpr size_t kChecksumAt = 48;

bool SameFloat(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return std::memcmp(&a, &b, sizeof(float)) == 0;
}

void CheckDecoded(std::string_view value, const engine::KvCache& kv, const CodecOptions& o) {
  uint32_t n;
  std::memcpy(&n, value.data() + kTokenCountAt, sizeof(n));
  FUZZ_CHECK(kv.shape() == kShape);
  FUZZ_CHECK(kv.num_tokens() == static_cast<int64_t>(n));

  const uint8_t code = static_cast<uint8_t>(value[kDTypeAt]);
  CodecOptions again = o;
  again.dtype = code == 0 ? engine::DType::kF32
                          : code == 1 ? engine::DType::kF16 : engine::DType::kBF16;
  const std::string encoded = EncodeBlockValue(kv, again);
  FUZZ_CHECK(encoded.size() == value.size());
  FUZZ_CHECK(encoded.size() == EncodedValueBytes(kShape, kv.num_tokens(), again.dtype));
  absl::StatusOr<engine::KvCache> back = DecodeBlockValue(encoded, o);
  FUZZ_CHECK(back.ok());
  FUZZ_CHECK(back->tokens() == kv.tokens());
  FUZZ_CHECK(back->start_position() == kv.start_position());
  const int64_t floats = kv.num_tokens() * kShape.row();
  for (int64_t l = 0; l < kShape.num_layers; ++l) {
    for (int64_t i = 0; i < floats; ++i) {
      FUZZ_CHECK(SameFloat(back->k(l)[i], kv.k(l)[i]));
      FUZZ_CHECK(SameFloat(back->v(l)[i], kv.v(l)[i]));
    }
  }
}

void DecodeOnce(std::string_view value) {
  const CodecOptions o{.model_fingerprint = kFingerprint, .shape = kShape};
  absl::StatusOr<engine::KvCache> kv = DecodeBlockValue(value, o);
  if (kv.ok()) {
    CheckDecoded(value, *kv, o);
  } else {
    // The documented error contract: damaged bytes or a value this caller cannot use.
    FUZZ_CHECK(absl::IsDataLoss(kv.status()) || absl::IsInvalidArgument(kv.status()));
  }
}

}  // namespace
}  // namespace blockserve::kv_store

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace blockserve::kv_store;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  DecodeOnce(input);
  if (size >= kValueHeaderBytes) {
    std::string fixed(input);
    // Format 2's checksum: XXH3-64 of the header before it, then the payload.
    ChecksumStream stream;
    stream.Update(fixed.data(), kChecksumAt);
    stream.Update(fixed.data() + kValueHeaderBytes, size - kValueHeaderBytes);
    const uint64_t sum = stream.Digest();
    std::memcpy(fixed.data() + kChecksumAt, &sum, sizeof(sum));
    DecodeOnce(fixed);
  }
  return 0;
}
