// Element types of model weights and conversions between them and fp32.
//
// Only the three floating-point types BlockServe computes with are supported:
// F32, F16 (IEEE 754 binary16) and BF16 (bfloat16). Names follow the
// safetensors format ("F32", "F16", "BF16").

#ifndef BLOCKSERVE_ENGINE_DTYPE_H_
#define BLOCKSERVE_ENGINE_DTYPE_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"

namespace blockserve::engine {

enum class DType { kF32, kF16, kBF16 };

// Size of one element in bytes: 4 for kF32, 2 for kF16 and kBF16.
size_t DTypeSize(DType dtype);

// The safetensors name: "F32", "F16" or "BF16".
std::string_view DTypeName(DType dtype);

// Parses a safetensors dtype name (case-sensitive). Returns InvalidArgument
// for names of other safetensors types (e.g. "I64", "F64") and for unknown
// names; the message names the string found.
absl::StatusOr<DType> ParseDType(std::string_view name);

// Exact conversion of an IEEE binary16 bit pattern to fp32 (subnormals,
// infinities and NaNs included; NaN payloads are kept).
float F16ToF32(uint16_t bits);

// fp32 -> binary16, rounding to nearest, ties to even. Values too large
// overflow to +-inf, values too small underflow to subnormals or +-0, and
// NaN stays a (quiet) NaN with its sign and top payload bits.
uint16_t F32ToF16(float value);

// Exact conversion of a bfloat16 bit pattern to fp32.
float BF16ToF32(uint16_t bits);

// fp32 -> bfloat16, rounding to nearest, ties to even. NaN stays a (quiet)
// NaN; values that round past the largest finite bf16 become +-inf.
uint16_t F32ToBF16(float value);

// Converts `n` elements of type `dtype` at `src` to fp32 at `dst`. `src` is
// read as little-endian and need not be aligned. `src` and `dst` must not
// overlap. With `n` 0 either may be null (an empty vector's data()).
void ConvertToF32(DType dtype, const void* src, size_t n, float* dst);

// Converts `n` fp32 values at `src` to elements of type `dtype` at `dst`
// (little-endian, any alignment). `src` and `dst` must not overlap; with `n`
// 0 either may be null.
void ConvertFromF32(DType dtype, const float* src, size_t n, void* dst);

// Converts `n` elements of type `from` at `src` to type `to` at `dst`: one copy when
// the types are equal, otherwise through fp32 (rounding to nearest, ties to even, as
// ConvertFromF32). Same alignment and overlap rules as above.
void ConvertDType(DType from, const void* src, size_t n, DType to, void* dst);

// memcpy of `bytes` bytes with streaming (non-temporal) stores where the CPU has them
// (x86-64: SSE2's): the destination's lines are written to memory without first being
// read into the cache. For a destination larger than the cache that is not read again
// right away (a multi-MB KV block decoded from a store), that saves a third of the
// memory traffic; for anything that fits in the cache it is slower than memcpy. Other
// CPUs: memcpy. No alignment needed; `src` and `dst` must not overlap; with `bytes` 0
// either may be null.
//
// Streaming stores are weakly ordered: the copying thread reads its own copy back in
// order, but before the destination is handed to another thread (or freed) call
// StreamingStoreFence once. The fence is not in the copy itself because a fence per
// 16 KiB piece cost a tenth of a decode's speed (one pass of copy + XXH3 over 19.4 MB:
// 12.6 GB/s with a fence per piece, 14.0 without, memcpy 15.3).
void CopyBypassingCache(void* dst, const void* src, size_t bytes);

// Orders every streaming store this thread made before the stores after it (x86-64:
// SFENCE; elsewhere nothing).
void StreamingStoreFence();

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_DTYPE_H_
