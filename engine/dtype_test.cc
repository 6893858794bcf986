#include "engine/dtype.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace blockserve::engine {
namespace {

uint32_t Bits(float f) { return std::bit_cast<uint32_t>(f); }
float FromBits(uint32_t b) { return std::bit_cast<float>(b); }

TEST(DTypeTest, SizesAndNamesMatchSafetensors) {
  EXPECT_EQ(DTypeSize(DType::kF32), 4u);
  EXPECT_EQ(DTypeSize(DType::kF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kBF16), 2u);
  EXPECT_EQ(DTypeName(DType::kF32), "F32");
  EXPECT_EQ(DTypeName(DType::kF16), "F16");
  EXPECT_EQ(DTypeName(DType::kBF16), "BF16");
}

TEST(DTypeTest, ParseDTypeAcceptsTheThreeSupportedNames) {
  for (DType d : {DType::kF32, DType::kF16, DType::kBF16}) {
    auto parsed = ParseDType(DTypeName(d));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, d);
  }
}

TEST(DTypeTest, ParseDTypeRejectsOtherSafetensorsTypesNamingThem) {
  for (const char* name : {"I64", "F64", "U8", "f32", "", "BF16 "}) {
    auto parsed = ParseDType(name);
    ASSERT_FALSE(parsed.ok()) << name;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find(std::string("\"") + name + "\""),
              std::string::npos)
        << parsed.status();
  }
}

TEST(F16Test, ExactValuesConvertBothWays) {
  struct Case {
    float value;
    uint16_t bits;
  };
  const Case cases[] = {
      {0.0f, 0x0000},      {-0.0f, 0x8000},          {1.0f, 0x3c00},
      {-2.5f, 0xc100},     {65504.0f, 0x7bff},       {-65504.0f, 0xfbff},
      {0.5f, 0x3800},      {0x1p-14f, 0x0400},       // smallest normal
      {0x1p-24f, 0x0001},  // smallest subnormal
      {0x3ffp-24f, 0x03ff},  // largest subnormal
      {-0x1p-24f, 0x8001},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(F32ToF16(c.value), c.bits) << c.value;
    EXPECT_EQ(Bits(F16ToF32(c.bits)), Bits(c.value)) << c.bits;
  }
}

TEST(F16Test, InfinityAndOverflow) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(F32ToF16(inf), 0x7c00);
  EXPECT_EQ(F32ToF16(-inf), 0xfc00);
  EXPECT_EQ(F16ToF32(0x7c00), inf);
  EXPECT_EQ(F16ToF32(0xfc00), -inf);
  EXPECT_EQ(F32ToF16(1e10f), 0x7c00);
  EXPECT_EQ(F32ToF16(-1e10f), 0xfc00);
  // 65520 is exactly halfway between 65504 and 65536 (= inf): ties to even.
  EXPECT_EQ(F32ToF16(65520.0f), 0x7c00);
  EXPECT_EQ(F32ToF16(65519.0f), 0x7bff);
}

TEST(F16Test, NanStaysNan) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const uint16_t h = F32ToF16(nan);
  EXPECT_EQ(h & 0x7c00, 0x7c00);
  EXPECT_NE(h & 0x03ff, 0);
  EXPECT_TRUE(std::isnan(F16ToF32(h)));
  EXPECT_TRUE(std::isnan(F16ToF32(0x7e00)));
  EXPECT_TRUE(std::isnan(F16ToF32(0x7c01)));
  // A signalling fp32 NaN whose payload lies only in the low bits still
  // becomes a NaN, not an infinity.
  EXPECT_TRUE(std::isnan(F16ToF32(F32ToF16(FromBits(0x7f800001u)))));
  EXPECT_EQ(F32ToF16(-nan) & 0x8000, 0x8000);
}

TEST(F16Test, RoundsToNearestTiesToEven) {
  const float ulp = 0x1p-10f;  // spacing of f16 values in [1, 2)
  // Exactly halfway between 1 (even) and 1 + ulp: stays at 1.
  EXPECT_EQ(F32ToF16(1.0f + ulp / 2), 0x3c00);
  // Halfway between 1 + ulp (odd) and 1 + 2ulp: goes up to the even one.
  EXPECT_EQ(F32ToF16(1.0f + 1.5f * ulp), 0x3c02);
  // Just above / below halfway.
  EXPECT_EQ(F32ToF16(std::nextafter(1.0f + ulp / 2, 2.0f)), 0x3c01);
  EXPECT_EQ(F32ToF16(std::nextafter(1.0f + 1.5f * ulp, 0.0f)), 0x3c01);
  // Rounding up carries into the exponent.
  EXPECT_EQ(F32ToF16(2.0f - ulp / 4), 0x4000);
}

TEST(F16Test, SubnormalRoundingAndUnderflow) {
  // Half of the smallest subnormal is a tie between 0 (even) and 1 unit.
  EXPECT_EQ(F32ToF16(0x1p-25f), 0x0000);
  EXPECT_EQ(F32ToF16(-0x1p-25f), 0x8000);
  EXPECT_EQ(F32ToF16(std::nextafter(0x1p-25f, 1.0f)), 0x0001);
  // 1.5 units ties to 2 units, 2.5 units ties to 2 units.
  EXPECT_EQ(F32ToF16(1.5f * 0x1p-24f), 0x0002);
  EXPECT_EQ(F32ToF16(2.5f * 0x1p-24f), 0x0002);
  EXPECT_EQ(F32ToF16(1e-10f), 0x0000);
  EXPECT_EQ(F32ToF16(FromBits(0x00000001u)), 0x0000);  // fp32 subnormal
  // The largest subnormal plus half a unit rounds up into the smallest normal.
  EXPECT_EQ(F32ToF16(0x3ffp-24f + 0x1p-25f), 0x0400);
}

TEST(F16Test, EveryNonNanPatternRoundTripsThroughF32) {
  for (uint32_t b = 0; b <= 0xffff; ++b) {
    const uint16_t h = static_cast<uint16_t>(b);
    const bool is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x03ff) != 0;
    if (is_nan) {
      EXPECT_TRUE(std::isnan(F16ToF32(h))) << b;
      continue;
    }
    ASSERT_EQ(F32ToF16(F16ToF32(h)), h) << b;
  }
}

TEST(BF16Test, ExactValuesConvertBothWays) {
  struct Case {
    float value;
    uint16_t bits;
  };
  const Case cases[] = {
      {0.0f, 0x0000}, {-0.0f, 0x8000}, {1.0f, 0x3f80},
      {-2.5f, 0xc020}, {0x1p-133f, 0x0001},  // smallest subnormal
      {0x1p-126f, 0x0080},                    // smallest normal
  };
  for (const Case& c : cases) {
    EXPECT_EQ(F32ToBF16(c.value), c.bits) << c.value;
    EXPECT_EQ(Bits(BF16ToF32(c.bits)), Bits(c.value)) << c.bits;
  }
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(F32ToBF16(inf), 0x7f80);
  EXPECT_EQ(F32ToBF16(-inf), 0xff80);
  EXPECT_EQ(BF16ToF32(0x7f80), inf);
  EXPECT_EQ(BF16ToF32(0xff80), -inf);
}

TEST(BF16Test, RoundsToNearestTiesToEven) {
  // 1 + 2^-8 is halfway between 1 (even) and 1 + 2^-7: stays at 1.
  EXPECT_EQ(F32ToBF16(1.0f + 0x1p-8f), 0x3f80);
  // 1 + 3*2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: rounds up.
  EXPECT_EQ(F32ToBF16(1.0f + 3 * 0x1p-8f), 0x3f82);
  EXPECT_EQ(F32ToBF16(std::nextafter(1.0f + 0x1p-8f, 2.0f)), 0x3f81);
  // The largest finite float rounds past the largest bf16 to infinity.
  EXPECT_EQ(F32ToBF16(std::numeric_limits<float>::max()), 0x7f80);
}

TEST(BF16Test, NanStaysNanEvenWhenPayloadIsOnlyInLowBits) {
  EXPECT_TRUE(std::isnan(BF16ToF32(
      F32ToBF16(std::numeric_limits<float>::quiet_NaN()))));
  // Plain rounding of 0x7fffffff or 0x7f800001 would give inf or wrap.
  for (uint32_t b : {0x7f800001u, 0x7fffffffu, 0xff800001u, 0xffffffffu}) {
    const uint16_t h = F32ToBF16(FromBits(b));
    EXPECT_TRUE(std::isnan(BF16ToF32(h))) << std::hex << b;
    EXPECT_EQ(h >> 15, b >> 31);
  }
}

TEST(BF16Test, AllNonNanPatternsRoundTripThroughF32) {
  for (uint32_t b = 0; b <= 0xffff; ++b) {
    const uint16_t h = static_cast<uint16_t>(b);
    const bool is_nan = (h & 0x7f80) == 0x7f80 && (h & 0x007f) != 0;
    if (is_nan) {
      EXPECT_TRUE(std::isnan(BF16ToF32(F32ToBF16(BF16ToF32(h))))) << b;
      continue;
    }
    ASSERT_EQ(F32ToBF16(BF16ToF32(h)), h) << b;
  }
}

// Value of a non-NaN 16-bit pattern as a double, treating infinity as the
// next power of two past the largest finite value (which is where IEEE
// rounding places the overflow threshold).
double F16Value(uint16_t h) {
  if ((h & 0x7fff) == 0x7c00) return (h & 0x8000) ? -65536.0 : 65536.0;
  return F16ToF32(h);
}
double BF16Value(uint16_t h) {
  if ((h & 0x7fff) == 0x7f80) return std::ldexp((h & 0x8000) ? -1.0 : 1.0, 128);
  return BF16ToF32(h);
}

// Checks that `h` is a correctly rounded (nearest, ties to even) encoding of
// the finite value `x`, by comparing against both neighbouring patterns.
template <typename ValueFn>
void ExpectCorrectlyRounded(float x, uint16_t h, uint16_t inf_bits,
                            ValueFn value) {
  const double exact = x;
  const double err = std::fabs(value(h) - exact);
  const uint16_t magnitude = h & 0x7fff;
  ASSERT_LE(magnitude, inf_bits) << x;
  ASSERT_EQ(h >> 15, Bits(x) >> 31) << x;
  for (int delta : {-1, 1}) {
    const int neighbour = magnitude + delta;
    if (neighbour < 0 || neighbour > inf_bits) continue;
    const uint16_t n = static_cast<uint16_t>((h & 0x8000) | neighbour);
    const double neighbour_err = std::fabs(value(n) - exact);
    ASSERT_LE(err, neighbour_err) << x;
    if (err == neighbour_err) {
      ASSERT_EQ(h & 1, 0) << "tie not even: " << x;
    }
  }
}

TEST(F16Test, SampledFloatsAreCorrectlyRounded) {
  for (uint64_t b = 0; b <= 0xffffffffu; b += 4093) {
    const float x = FromBits(static_cast<uint32_t>(b));
    if (!std::isfinite(x)) continue;
    ExpectCorrectlyRounded(x, F32ToF16(x), 0x7c00, F16Value);
  }
}

TEST(BF16Test, SampledFloatsAreCorrectlyRounded) {
  for (uint64_t b = 0; b <= 0xffffffffu; b += 4093) {
    const float x = FromBits(static_cast<uint32_t>(b));
    if (!std::isfinite(x)) continue;
    ExpectCorrectlyRounded(x, F32ToBF16(x), 0x7f80, BF16Value);
  }
}

TEST(ConvertTest, BulkConversionMatchesScalarFunctionsAndIgnoresAlignment) {
  const std::vector<float> values = {1.0f, -2.5f, 3.14159f, 1e-6f, 65504.0f,
                                     -0.0f, 123456.0f};
  const size_t n = values.size();
  for (DType d : {DType::kF32, DType::kF16, DType::kBF16}) {
    // Offset by one byte to exercise unaligned access.
    std::vector<uint8_t> buffer(n * DTypeSize(d) + 1);
    ConvertFromF32(d, values.data(), n, buffer.data() + 1);
    std::vector<float> back(n);
    ConvertToF32(d, buffer.data() + 1, n, back.data());
    for (size_t i = 0; i < n; ++i) {
      float expected = values[i];
      if (d == DType::kF16) expected = F16ToF32(F32ToF16(values[i]));
      if (d == DType::kBF16) expected = BF16ToF32(F32ToBF16(values[i]));
      EXPECT_EQ(Bits(back[i]), Bits(expected)) << DTypeName(d) << " " << i;
    }
  }
  // Raw bytes are little-endian: 1.0 in f16 is 0x3c00 -> 00 3c.
  const float one = 1.0f;
  uint8_t raw[2];
  ConvertFromF32(DType::kF16, &one, 1, raw);
  EXPECT_EQ(raw[0], 0x00);
  EXPECT_EQ(raw[1], 0x3c);
}

// An empty block's K/V arrays are empty vectors, whose data() is null. memcpy with a null
// pointer is undefined even for 0 bytes (UBSan's nonnull-attribute check fails this test
// under --config=asan without the n > 0 guard; found by fuzz/codec_fuzzer).
TEST(ConvertTest, ZeroElementsWithNullPointersIsANoOp) {
  for (DType d : {DType::kF32, DType::kF16, DType::kBF16}) {
    std::vector<float> empty_floats;
    std::string empty_bytes;
    ConvertToF32(d, empty_bytes.data(), 0, empty_floats.data());
    ConvertFromF32(d, empty_floats.data(), 0, empty_bytes.data());
    ConvertToF32(d, nullptr, 0, nullptr);
    ConvertFromF32(d, nullptr, 0, nullptr);
    ConvertDType(d, nullptr, 0, d, nullptr);
    ConvertDType(d, nullptr, 0, DType::kF32, nullptr);
    EXPECT_TRUE(empty_floats.empty());
  }
}

// Between any two types: a copy when equal, otherwise what the fp32 functions give; long
// enough to cross ConvertDType's internal chunks.
TEST(ConvertTest, ConvertDTypeCopiesOrConvertsThroughF32) {
  const size_t n = 5000;
  std::vector<float> f(n);
  for (size_t i = 0; i < n; ++i) f[i] = std::ldexp(std::sin(0.37f * i), static_cast<int>(i % 40) - 20);
  for (DType from : {DType::kF32, DType::kF16, DType::kBF16}) {
    std::string src(n * DTypeSize(from), '\0');
    ConvertFromF32(from, f.data(), n, src.data());
    for (DType to : {DType::kF32, DType::kF16, DType::kBF16}) {
      std::string got(n * DTypeSize(to), '\0');
      ConvertDType(from, src.data(), n, to, got.data());
      std::vector<float> wide(n);
      ConvertToF32(from, src.data(), n, wide.data());
      std::string want(n * DTypeSize(to), '\0');
      ConvertFromF32(to, wide.data(), n, want.data());
      EXPECT_EQ(got, want) << DTypeName(from) << " -> " << DTypeName(to);
      if (from == to) EXPECT_EQ(got, src);
    }
  }
}

// Every length through the 64-, 16- and 1-byte steps, at every alignment of both ends:
// exactly memcpy's bytes, and nothing written before or after the destination.
TEST(CopyBypassingCacheTest, CopiesExactlyLikeMemcpyAtAnyAlignmentAndLength) {
  std::string src(400, '\0');
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<char>(i * 131 + 7);
  for (size_t src_off = 0; src_off < 17; ++src_off) {
    for (size_t dst_off = 0; dst_off < 17; ++dst_off) {
      for (size_t n = 0; n <= 300; n += (n < 140 ? 1 : 37)) {
        std::string want(350, '#'), got(350, '#');
        std::memcpy(want.data() + dst_off, src.data() + src_off, n);
        CopyBypassingCache(got.data() + dst_off, src.data() + src_off, n);
        ASSERT_EQ(got, want) << "src+" << src_off << " dst+" << dst_off << " n " << n;
      }
    }
  }
  CopyBypassingCache(nullptr, nullptr, 0);
}

TEST(ConvertTest, Bf16WideningMatchesTheScalarConversionForEveryBitPattern) {
  std::vector<uint16_t> all(65536 + 5);  // + 5: a tail after the SIMD loop
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint16_t>(i);
  std::vector<float> want(all.size()), got(all.size());
  for (size_t i = 0; i < all.size(); ++i) want[i] = BF16ToF32(all[i]);
  // From an odd address too: stored arrays need not be aligned.
  std::vector<char> shifted(2 * all.size() + 1);
  std::memcpy(shifted.data() + 1, all.data(), 2 * all.size());
  ConvertDType(DType::kBF16, shifted.data() + 1, all.size(), DType::kF32, got.data());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), 4 * all.size()), 0);
}

// The bulk bf16 narrowing works eight values at a time: every lane must round (ties to
// even, carries into the exponent, overflow to inf) and quiet NaNs as F32ToBF16 does.
TEST(ConvertTest, Bf16NarrowingMatchesTheScalarConversionOnSampledBitPatterns) {
  std::vector<float> values;
  for (uint32_t b : {0x3f808000u, 0x3f818000u, 0x7f7fffffu, 0x7f800000u, 0x7f800001u,
                     0xff800001u, 0x7fffffffu, 0x00008000u, 0x80018000u}) {
    values.push_back(FromBits(b));  // ties both ways, overflow, infinities, NaNs
  }
  for (uint64_t b = 0; b <= 0xffffffffu; b += 65521) {
    values.push_back(FromBits(static_cast<uint32_t>(b)));
  }
  values.resize(values.size() / 8 * 8 + 5);  // + 5: a tail after the vector loop
  std::vector<uint16_t> want(values.size());
  for (size_t i = 0; i < values.size(); ++i) want[i] = F32ToBF16(values[i]);
  std::vector<char> got(2 * values.size() + 1);  // from an odd address too
  ConvertFromF32(DType::kBF16, values.data(), values.size(), got.data() + 1);
  EXPECT_EQ(std::memcmp(got.data() + 1, want.data(), 2 * want.size()), 0);
}

TEST(ConvertTest, NarrowsAndConvertsBetweenHalfTypesThroughF32) {
  const std::vector<float> x = {1.0f, -2.5f, 3.140625f, 0.0f, 65504.0f};
  std::vector<uint16_t> f16(x.size()), bf16(x.size()), want(x.size());
  ConvertDType(DType::kF32, x.data(), x.size(), DType::kF16, f16.data());
  ConvertDType(DType::kF16, f16.data(), x.size(), DType::kBF16, bf16.data());
  ConvertFromF32(DType::kBF16, x.data(), x.size(), want.data());
  EXPECT_EQ(bf16, want);
}

}  // namespace
}  // namespace blockserve::engine
