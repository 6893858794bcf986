#include "engine/dtype.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <string>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/simd.h"

namespace blockserve::engine {

static_assert(std::endian::native == std::endian::little,
              "BlockServe reads and writes little-endian weights in place");

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
      return 2;
  }
  return 0;
}

std::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
  }
  return "?";
}

absl::StatusOr<DType> ParseDType(std::string_view name) {
  if (name == "F32") return DType::kF32;
  if (name == "F16") return DType::kF16;
  if (name == "BF16") return DType::kBF16;
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported dtype \"", std::string(name),
                   "\": expected one of F32, F16, BF16"));
}

float F16ToF32(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  const uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in fp32.
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return sign ? -magnitude : magnitude;
  }
  uint32_t out;
  if (exponent == 0x1f) {
    out = sign | 0x7f800000u | (mantissa << 13);  // inf or NaN
  } else {
    out = sign | ((exponent - 15 + 127) << 23) | (mantissa << 13);
  }
  return std::bit_cast<float>(out);
}

namespace {

// Shifts `value` right by `shift` (1..31) bits, rounding to nearest even.
uint32_t ShiftRightRoundEven(uint32_t value, int shift) {
  const uint32_t kept = value >> shift;
  const uint32_t rest = value & ((1u << shift) - 1);
  const uint32_t half = 1u << (shift - 1);
  if (rest > half || (rest == half && (kept & 1u))) return kept + 1;
  return kept;
}

}  // namespace

uint16_t F32ToF16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs_bits = bits & 0x7fffffffu;
  const uint32_t mantissa = abs_bits & 0x7fffffu;
  if (abs_bits >= 0x7f800000u) {
    if (abs_bits == 0x7f800000u) return sign | 0x7c00u;  // inf
    return static_cast<uint16_t>(sign | 0x7e00u | (mantissa >> 13));  // NaN
  }
  const int exponent = static_cast<int>(abs_bits >> 23) - 127;
  if (exponent > 15) return sign | 0x7c00u;  // overflow
  if (exponent >= -14) {
    // Normal half. A carry out of the mantissa correctly bumps the exponent
    // (and turns 65520 and above into inf).
    const uint32_t unrounded =
        (static_cast<uint32_t>(exponent + 15) << 23) | mantissa;
    return static_cast<uint16_t>(sign | ShiftRightRoundEven(unrounded, 13));
  }
  if (exponent < -25) return sign;  // below half the smallest subnormal
  // Subnormal half: value = significand * 2^(exponent-23), result counts
  // units of 2^-24. A carry into 0x400 yields the smallest normal.
  const uint32_t significand = mantissa | 0x800000u;
  return static_cast<uint16_t>(
      sign | ShiftRightRoundEven(significand, -exponent - 1));
}

float BF16ToF32(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

uint16_t F32ToBF16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);  // quiet NaN
  }
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

namespace {

// Every f16 bit pattern's value: one table lookup per element beats the branchy scalar
// conversion by several times on multi-MB KV blocks (256 KiB, built on first use).
const float* F16Table() {
  static const float* table = [] {
    auto* t = new float[65536];
    for (uint32_t h = 0; h < 65536; ++h) t[h] = F16ToF32(static_cast<uint16_t>(h));
    return t;
  }();
  return table;
}

// F32ToBF16 for n values, eight at a time in vector registers: the same rounding to
// nearest even and the same quiet NaN, selected without a branch, then the tail.
BLOCKSERVE_MULTIVERSION void NarrowToBF16(const float* src, size_t n, uint8_t* dst) {
  typedef uint32_t U32x8 __attribute__((vector_size(32)));
  typedef uint16_t U16x8 __attribute__((vector_size(16)));
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    U32x8 bits;
    std::memcpy(&bits, src + i, sizeof bits);
    const U32x8 rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
    const U32x8 quiet_nan = (bits >> 16) | 0x0040u;
    const U32x8 out = (bits & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded;
    const U16x8 halves = __builtin_convertvector(out, U16x8);
    std::memcpy(dst + 2 * i, &halves, sizeof halves);
  }
  for (; i < n; ++i) {
    const uint16_t h = F32ToBF16(src[i]);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}

}  // namespace

void ConvertToF32(DType dtype, const void* src, size_t n, float* dst) {
  const auto* bytes = static_cast<const uint8_t*>(src);
  switch (dtype) {
    case DType::kF32:
      // memcpy's pointers must be non-null even for 0 bytes, and an empty block's
      // arrays are an empty vector's data(), null (found by fuzz/codec_fuzzer).
      if (n > 0) std::memcpy(dst, src, n * sizeof(float));
      return;
    case DType::kF16: {
      const float* table = F16Table();
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, bytes + 2 * i, 2);
        dst[i] = table[h];
      }
      return;
    }
    case DType::kBF16: {
      // bf16 is the top half of an f32: eight at a time with SSE2 (every x86-64 has
      // it), interleaving zero low halves; no per-element branch. Then the tail.
      size_t i = 0;
#if defined(__SSE2__)
      const __m128i zero = _mm_setzero_si128();
      for (; i + 8 <= n; i += 8) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(bytes + 2 * i));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm_unpacklo_epi16(zero, h));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i + 4), _mm_unpackhi_epi16(zero, h));
      }
#endif
      for (; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, bytes + 2 * i, 2);
        const uint32_t w = static_cast<uint32_t>(h) << 16;
        std::memcpy(dst + i, &w, 4);
      }
      return;
    }
  }
}

void ConvertFromF32(DType dtype, const float* src, size_t n, void* dst) {
  auto* bytes = static_cast<uint8_t*>(dst);
  switch (dtype) {
    case DType::kF32:
      if (n > 0) std::memcpy(dst, src, n * sizeof(float));  // as in ConvertToF32
      return;
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t h = F32ToF16(src[i]);
        std::memcpy(bytes + 2 * i, &h, 2);
      }
      return;
    case DType::kBF16:
      NarrowToBF16(src, n, bytes);
      return;
  }
}

void ConvertDType(DType from, const void* src, size_t n, DType to, void* dst) {
  if (from == to) {
    if (n > 0) std::memcpy(dst, src, n * DTypeSize(from));
    return;
  }
  // Through a small fp32 buffer that stays in L1, so a multi-MB block is read and
  // written once.
  constexpr size_t kChunk = 2048;
  float buf[kChunk];
  const auto* in = static_cast<const uint8_t*>(src);
  auto* out = static_cast<uint8_t*>(dst);
  for (size_t i = 0; i < n; i += kChunk) {
    const size_t c = std::min(kChunk, n - i);
    ConvertToF32(from, in + i * DTypeSize(from), c, buf);
    ConvertFromF32(to, buf, c, out + i * DTypeSize(to));
  }
}

void CopyBypassingCache(void* dst, const void* src, size_t bytes) {
#if defined(__SSE2__)
  auto* d = static_cast<char*>(dst);
  const auto* s = static_cast<const char*>(src);
  // Whole destination cache lines only: the partial lines at either end are copied with
  // ordinary stores. A line written partly by streaming stores and partly by ordinary
  // ones (a decode's pieces rarely end on a line boundary) costs a partial-line write to
  // memory plus a read for ownership: with pieces of 16 KiB that made a decode 20% slower.
  size_t i = std::min(bytes, (64 - reinterpret_cast<uintptr_t>(d) % 64) % 64);
  if (i > 0) std::memcpy(d, s, i);
  for (; i + 64 <= bytes; i += 64) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 16));
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 32));
    const __m128i e = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 48));
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i), a);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 16), b);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 32), c);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 48), e);
  }
  if (i < bytes) std::memcpy(d + i, s + i, bytes - i);
#else
  if (bytes > 0) std::memcpy(dst, src, bytes);
#endif
}

void StreamingStoreFence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

}  // namespace blockserve::engine
