#include "kv_store/codec.h"

#include <algorithm>
#include <cmath>
#include <ostream>
#include <cstring>
#include <string>
#include <vector>

#include "engine/dtype.h"
#include "gtest/gtest.h"
#include "kv_store/hash.h"

namespace blockserve::kv_store {
namespace {

using engine::DType;
using engine::KvCache;
using engine::KvShape;

constexpr KvShape kShape{.num_layers = 3, .num_kv_heads = 2, .head_dim = 8};
constexpr uint64_t kFingerprint = 0xfeedfacecafebeefULL;

CodecOptions Options(DType dtype) {
  return CodecOptions{.model_fingerprint = kFingerprint, .shape = kShape, .dtype = dtype};
}

// Values spanning several binades, both signs, and a few exact zeros.
KvCache MakeKv(int num_tokens, int64_t start_position = 0) {
  KvCache kv(kShape);
  std::vector<int32_t> tokens(num_tokens);
  for (int i = 0; i < num_tokens; ++i) tokens[i] = 1000 + 37 * i;
  kv.Append(tokens);
  kv.set_start_position(start_position);
  const int64_t n = num_tokens * kShape.row();
  for (int64_t l = 0; l < kShape.num_layers; ++l) {
    for (int64_t i = 0; i < n; ++i) {
      kv.k(l)[i] = i % 11 == 0 ? 0.0f : std::sin(0.37f * i + l) * std::pow(2.0f, (i % 9) - 4);
      kv.v(l)[i] = std::cos(0.11f * i - l) * 3.5f;
    }
  }
  return kv;
}

// Largest relative error of rounding to the dtype (half an ulp), with slack.
float Tolerance(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return 0;
    case DType::kF16:
      return 1.0f / 1024;
    case DType::kBF16:
      return 1.0f / 128;
  }
  return 0;
}

void ExpectSameKv(const KvCache& got, const KvCache& want, DType dtype) {
  ASSERT_EQ(got.shape(), want.shape());
  ASSERT_EQ(got.tokens(), want.tokens());
  EXPECT_EQ(got.start_position(), want.start_position());
  const int64_t n = want.num_tokens() * want.shape().row();
  const float tol = Tolerance(dtype);
  for (int64_t l = 0; l < want.shape().num_layers; ++l) {
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_LE(std::abs(got.k(l)[i] - want.k(l)[i]), tol * std::abs(want.k(l)[i]))
          << "K layer " << l << " element " << i;
      ASSERT_LE(std::abs(got.v(l)[i] - want.v(l)[i]), tol * std::abs(want.v(l)[i]))
          << "V layer " << l << " element " << i;
    }
  }
}

class CodecRoundTripTest : public testing::TestWithParam<DType> {};

TEST_P(CodecRoundTripTest, DecodeReturnsWhatWasEncodedWithinDtypePrecision) {
  const KvCache kv = MakeKv(17, /*start_position=*/5);
  const std::string value = EncodeBlockValue(kv, Options(GetParam()));
  EXPECT_EQ(value.size(), EncodedValueBytes(kShape, 17, GetParam()));
  absl::StatusOr<KvCache> back = DecodeBlockValue(value, Options(GetParam()));
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameKv(*back, kv, GetParam());
}

TEST_P(CodecRoundTripTest, EmptyBlockRoundTrips) {
  const std::string value = EncodeBlockValue(MakeKv(0), Options(GetParam()));
  EXPECT_EQ(value.size(), kValueHeaderBytes);
  absl::StatusOr<KvCache> back = DecodeBlockValue(value, Options(GetParam()));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->num_tokens(), 0);
}

INSTANTIATE_TEST_SUITE_P(AllDtypes, CodecRoundTripTest,
                         testing::Values(DType::kF32, DType::kF16, DType::kBF16),
                         [](const testing::TestParamInfo<DType>& info) {
                           return std::string(engine::DTypeName(info.param));
                         });

TEST(CodecTest, F32IsBitExact) {
  const KvCache kv = MakeKv(9);
  absl::StatusOr<KvCache> back =
      DecodeBlockValue(EncodeBlockValue(kv, Options(DType::kF32)), Options(DType::kF32));
  ASSERT_TRUE(back.ok()) << back.status();
  for (int64_t l = 0; l < kShape.num_layers; ++l) {
    EXPECT_EQ(std::memcmp(back->k(l), kv.k(l), kv.bytes() / kShape.num_layers / 2), 0);
    EXPECT_EQ(std::memcmp(back->v(l), kv.v(l), kv.bytes() / kShape.num_layers / 2), 0);
  }
}

// The engine's bf16 KV (the services' default) goes into a bf16 value and comes back
// bit for bit with cache_dtype bf16: the store path is a copy. An fp32 cache gets the
// same value widened exactly, and an f32 value decodes into a bf16 cache rounded.
TEST(CodecTest, Bf16CacheRoundTripsBitForBitThroughABf16Value) {
  const KvCache f32 = MakeKv(9, 3);
  KvCache bf16(kShape, DType::kBF16);
  bf16.AppendCopy(f32);
  bf16.set_start_position(3);
  CodecOptions o = Options(DType::kBF16);
  o.cache_dtype = DType::kBF16;
  const std::string value = EncodeBlockValue(bf16, o);
  absl::StatusOr<KvCache> back = DecodeBlockValue(value, o);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->dtype(), DType::kBF16);
  EXPECT_EQ(back->tokens(), bf16.tokens());
  EXPECT_EQ(back->start_position(), 3);
  const size_t bytes = bf16.bytes() / kShape.num_layers / 2;
  for (int64_t l = 0; l < kShape.num_layers; ++l) {
    EXPECT_EQ(std::memcmp(back->k_data(l), bf16.k_data(l), bytes), 0) << l;
    EXPECT_EQ(std::memcmp(back->v_data(l), bf16.v_data(l), bytes), 0) << l;
  }
  absl::StatusOr<KvCache> wide = DecodeBlockValue(value, Options(DType::kBF16));
  ASSERT_TRUE(wide.ok()) << wide.status();
  ASSERT_EQ(wide->dtype(), DType::kF32);
  for (int64_t i = 0; i < 9 * kShape.row(); ++i) {
    EXPECT_EQ(wide->k(1)[i], engine::BF16ToF32(bf16.k_bf16(1)[i]));
  }
  absl::StatusOr<KvCache> rounded = DecodeBlockValue(EncodeBlockValue(f32, Options(DType::kF32)), o);
  ASSERT_TRUE(rounded.ok()) << rounded.status();
  for (int64_t l = 0; l < kShape.num_layers; ++l) {
    EXPECT_EQ(std::memcmp(rounded->k_data(l), bf16.k_data(l), bytes), 0) << l;
  }
}

TEST(CodecTest, DecodesTheDtypeInTheHeaderNotTheOptions) {
  const KvCache kv = MakeKv(4);
  const std::string value = EncodeBlockValue(kv, Options(DType::kF16));
  absl::StatusOr<KvCache> back = DecodeBlockValue(value, Options(DType::kBF16));
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameKv(*back, kv, DType::kF16);
}

TEST(CodecTest, HeaderFieldsAreLittleEndianAtDocumentedOffsets) {
  const std::string v = EncodeBlockValue(MakeKv(3, 7), Options(DType::kBF16));
  auto u32 = [&](size_t at) { uint32_t x; std::memcpy(&x, v.data() + at, 4); return x; };
  auto u64 = [&](size_t at) { uint64_t x; std::memcpy(&x, v.data() + at, 8); return x; };
  EXPECT_EQ(v.substr(0, 4), "BSKV");
  EXPECT_EQ(v[4], 2);  // format version 2: XXH3 checksums
  EXPECT_EQ(v[5], 0);
  EXPECT_EQ(v[6], 2);  // BF16
  EXPECT_EQ(v[7], 0);
  EXPECT_EQ(u64(8), kFingerprint);
  EXPECT_EQ(u32(16), 3u);
  EXPECT_EQ(u32(20), 2u);
  EXPECT_EQ(u32(24), 8u);
  EXPECT_EQ(u32(28), 3u);
  EXPECT_EQ(u64(32), 7u);
  EXPECT_EQ(u64(40), v.size() - kValueHeaderBytes);
  EXPECT_EQ(u32(56), 1000u);  // first token id
  // The checksum is XXH3-64 of the header before it, then the payload.
  std::string hashed = v.substr(0, 48) + v.substr(kValueHeaderBytes);
  EXPECT_EQ(u64(48), Checksum64(hashed.data(), hashed.size()));
}

// One header corruption and the error it must produce.
struct Corruption {
  std::string name;
  size_t offset;
  std::vector<uint8_t> bytes;  // written at `offset`
  absl::StatusCode code;
  std::string message;  // substring of the error
};

void PrintTo(const Corruption& c, std::ostream* os) { *os << c.name; }

class CodecCorruptionTest : public testing::TestWithParam<Corruption> {};

TEST_P(CodecCorruptionTest, IsRejectedWithAMessageNamingTheField) {
  const Corruption& c = GetParam();
  std::string value = EncodeBlockValue(MakeKv(5), Options(DType::kBF16));
  std::memcpy(value.data() + c.offset, c.bytes.data(), c.bytes.size());
  absl::StatusOr<KvCache> got = DecodeBlockValue(value, Options(DType::kBF16));
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), c.code) << got.status();
  EXPECT_NE(got.status().message().find(c.message), std::string_view::npos) << got.status();
}

INSTANTIATE_TEST_SUITE_P(
    EachHeaderField, CodecCorruptionTest,
    testing::Values(
        Corruption{"Magic", 0, {'B', 'S', 'K', 'W'}, absl::StatusCode::kDataLoss,
                   "bad magic: expected \"BSKV\", found \"BSKW\""},
        // A format-1 value (the old checksum) is another version, not a checksum failure.
        Corruption{"Version", 4, {1, 0}, absl::StatusCode::kInvalidArgument,
                   "unknown format version: expected 2, found 1"},
        Corruption{"Dtype", 6, {9}, absl::StatusCode::kDataLoss, "unknown dtype code"},
        Corruption{"Reserved", 7, {1}, absl::StatusCode::kDataLoss, "reserved byte"},
        Corruption{"Fingerprint", 8, {0}, absl::StatusCode::kInvalidArgument,
                   "written by another model: model fingerprint expected 0xfeedfacecafebeef, "
                   "found 0xfeedfacecafebe00"},
        Corruption{"NumLayers", 16, {4}, absl::StatusCode::kInvalidArgument,
                   "num_layers expected 3, found 4"},
        Corruption{"NumKvHeads", 20, {1}, absl::StatusCode::kInvalidArgument,
                   "num_kv_heads expected 2, found 1"},
        Corruption{"HeadDim", 24, {16}, absl::StatusCode::kInvalidArgument,
                   "head_dim expected 8, found 16"},
        Corruption{"TokenCount", 28, {6}, absl::StatusCode::kDataLoss,
                   "disagrees with token count 6"},
        Corruption{"TokenCountHuge", 28, {0xff, 0xff, 0xff, 0xff}, absl::StatusCode::kDataLoss,
                   "disagrees with token count 4294967295"},
        Corruption{"StartPosition", 32, {1}, absl::StatusCode::kDataLoss, "checksum mismatch"},
        Corruption{"PayloadLength", 40, {1}, absl::StatusCode::kDataLoss,
                   "payload length 769 disagrees with token count 5: expected 980 bytes"},
        Corruption{"PayloadLengthHuge", 40, {0, 0, 0, 0, 0, 0, 0, 0x80},
                   absl::StatusCode::kDataLoss, "disagrees with token count 5"},
        Corruption{"Checksum", 48, {0x55}, absl::StatusCode::kDataLoss, "checksum mismatch"},
        Corruption{"TokenId", 56, {0x42}, absl::StatusCode::kDataLoss, "checksum mismatch"},
        Corruption{"KvPayload", 200, {0x42, 0x42}, absl::StatusCode::kDataLoss,
                   "checksum mismatch"}),
    [](const testing::TestParamInfo<Corruption>& info) { return info.param.name; });

TEST(CodecTest, ShapeMismatchWithExpectedIsRejected) {
  const std::string value = EncodeBlockValue(MakeKv(2), Options(DType::kF32));
  CodecOptions other = Options(DType::kF32);
  other.shape.head_dim = 16;
  absl::StatusOr<KvCache> got = DecodeBlockValue(value, other);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(got.status().message().find("head_dim expected 16, found 8"), std::string_view::npos)
      << got.status();
}

TEST(CodecTest, EveryTruncationIsRejectedAsDataLoss) {
  const std::string value = EncodeBlockValue(MakeKv(5), Options(DType::kBF16));
  for (size_t len = 0; len < value.size(); ++len) {
    absl::StatusOr<KvCache> got =
        DecodeBlockValue(std::string_view(value).substr(0, len), Options(DType::kBF16));
    ASSERT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << len << ": " << got.status();
    ASSERT_NE(got.status().message().find("truncated"), std::string_view::npos)
        << len << ": " << got.status();
  }
}

TEST(CodecTest, TrailingGarbageIsRejected) {
  std::string value = EncodeBlockValue(MakeKv(5), Options(DType::kBF16));
  value += "xyz";
  absl::StatusOr<KvCache> got = DecodeBlockValue(value, Options(DType::kBF16));
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(got.status().message().find("trailing bytes"), std::string_view::npos)
      << got.status();
  EXPECT_NE(got.status().message().find("3 extra"), std::string_view::npos) << got.status();
}

TEST(CodecTest, EverySingleBitFlipIsRejectedAndNeverCrashes) {
  const std::string value = EncodeBlockValue(MakeKv(2), Options(DType::kF16));
  for (size_t i = 0; i < value.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = value;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      ASSERT_FALSE(DecodeBlockValue(bad, Options(DType::kF16)).ok()) << i << ":" << bit;
    }
  }
}

TEST(CodecTest, ArbitraryBytesNeverCrash) {
  // A header that passes every field check but claims a payload it does not have.
  std::string value = EncodeBlockValue(MakeKv(1), Options(DType::kF32));
  uint32_t seed = 1;
  for (int round = 0; round < 2000; ++round) {
    std::string junk = value;
    for (int j = 0; j < 4; ++j) {
      seed = seed * 1664525u + 1013904223u;
      junk[seed % junk.size()] = static_cast<char>(seed >> 24);
    }
    junk.resize(seed % (value.size() + 16));
    (void)DecodeBlockValue(junk, Options(DType::kF32));
  }
}

// A block bigger than several decode chunks (kDecodeChunkBytes), so that the chunked
// convert-then-hash loop runs many times and over chunk and array boundaries.
constexpr KvShape kBigShape{.num_layers = 4, .num_kv_heads = 4, .head_dim = 64};

KvCache MakeBigKv(int num_tokens) {
  KvCache kv(kBigShape);
  std::vector<int32_t> tokens(num_tokens);
  for (int i = 0; i < num_tokens; ++i) tokens[i] = 7 * i + 3;
  kv.Append(tokens);
  const int64_t n = num_tokens * kBigShape.row();
  for (int64_t l = 0; l < kBigShape.num_layers; ++l) {
    for (int64_t i = 0; i < n; ++i) {
      kv.k(l)[i] = std::sin(0.013f * i + l);
      kv.v(l)[i] = std::cos(0.029f * i - l) * 2;
    }
  }
  return kv;
}

CodecOptions BigOptions(DType dtype) {
  return CodecOptions{.model_fingerprint = kFingerprint, .shape = kBigShape, .dtype = dtype};
}

TEST(CodecTest, AFlippedByteInAnyChunkIsDataLoss) {
  const std::string value = EncodeBlockValue(MakeBigKv(300), BigOptions(DType::kBF16));
  ASSERT_GT(value.size(), 4 * kDecodeChunkBytes);
  // Every byte of the tokens and a stride through the K/V, including each chunk's first
  // and last byte; a flip anywhere after the header fields must fail the checksum.
  std::vector<size_t> offsets;
  for (size_t at = kValueHeaderBytes; at < kValueHeaderBytes + 4 * 300; at += 23) offsets.push_back(at);
  for (size_t at = kValueHeaderBytes; at < value.size(); at += 16381) offsets.push_back(at);
  for (size_t c = kDecodeChunkBytes; c < value.size(); c += kDecodeChunkBytes) {
    offsets.push_back(c - 1);
    offsets.push_back(c);
  }
  offsets.push_back(value.size() - 1);
  for (size_t at : offsets) {
    std::string bad = value;
    bad[at] = static_cast<char>(bad[at] ^ 0x10);
    absl::StatusOr<KvCache> got = DecodeBlockValue(bad, BigOptions(DType::kBF16));
    ASSERT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << "byte " << at;
    ASSERT_NE(got.status().message().find("checksum mismatch"), std::string_view::npos)
        << "byte " << at << ": " << got.status();
  }
}

// Decodes `value` through ValueDecoder, fed in pieces of `piece` bytes.
absl::Status DecodeInPieces(std::string_view value, const CodecOptions& o, size_t piece,
                            KvDestination dest) {
  absl::StatusOr<ValueHeader> h = ParseValueHeader(value, value.size(), o);
  if (!h.ok()) return h.status();
  absl::StatusOr<ValueDecoder> d = ValueDecoder::Create(*h, o.shape, std::move(dest));
  if (!d.ok()) return d.status();
  for (size_t at = 0; at < value.size(); at += piece) {
    d->Consume(value.data() + at, std::min(piece, value.size() - at));
  }
  return d->Finish();
}

class ValueDecoderTest : public testing::TestWithParam<DType> {};

TEST_P(ValueDecoderTest, AnyPieceSizeDecodesLikeTheWholeValue) {
  const KvCache kv = MakeBigKv(40);
  const std::string value = EncodeBlockValue(kv, BigOptions(GetParam()));
  absl::StatusOr<KvCache> whole = DecodeBlockValue(value, BigOptions(GetParam()));
  ASSERT_TRUE(whole.ok()) << whole.status();
  // Odd sizes put piece boundaries inside elements; 16 KiB is a shared-memory page.
  for (size_t piece : {size_t{3}, size_t{57}, size_t{4097}, size_t{16} << 10,
                       kDecodeChunkBytes + 1}) {
    KvCache out(kBigShape);
    out.Append(kv.tokens());
    ASSERT_TRUE(DecodeInPieces(value, BigOptions(GetParam()), piece, CacheDestination(out)).ok())
        << piece;
    for (int64_t l = 0; l < kBigShape.num_layers; ++l) {
      const size_t bytes = 40 * kBigShape.row() * sizeof(float);
      ASSERT_EQ(std::memcmp(out.k(l), whole->k(l), bytes), 0) << "piece " << piece;
      ASSERT_EQ(std::memcmp(out.v(l), whole->v(l), bytes), 0) << "piece " << piece;
    }
  }
}

TEST_P(ValueDecoderTest, AFlippedByteInAnyPieceIsCaught) {
  const std::string value = EncodeBlockValue(MakeBigKv(40), BigOptions(GetParam()));
  for (size_t at = kValueHeaderBytes; at < value.size(); at += 4999) {
    std::string bad = value;
    bad[at] = static_cast<char>(bad[at] ^ 1);
    KvCache out(kBigShape);
    out.Append(std::vector<int32_t>(40));
    const absl::Status s = DecodeInPieces(bad, BigOptions(GetParam()), 16 << 10, CacheDestination(out));
    ASSERT_EQ(s.code(), absl::StatusCode::kDataLoss) << "byte " << at << ": " << s;
  }
}

INSTANTIATE_TEST_SUITE_P(AllDtypes, ValueDecoderTest,
                         testing::Values(DType::kF32, DType::kF16, DType::kBF16),
                         [](const testing::TestParamInfo<DType>& info) {
                           return std::string(engine::DTypeName(info.param));
                         });

// The streaming decode a chunked Redis get uses: a prefix, then the rest in pieces.
TEST(BlockValueStreamTest, APrefixThenPiecesDecodesLikeTheWholeValue) {
  const KvCache kv = MakeBigKv(40);
  const std::string value = EncodeBlockValue(kv, BigOptions(DType::kBF16));
  absl::StatusOr<KvCache> whole = DecodeBlockValue(value, BigOptions(DType::kBF16));
  ASSERT_TRUE(whole.ok()) << whole.status();
  const size_t prefix = kValueHeaderBytes + 4 * 40 + 7;  // ends inside an element
  for (size_t piece : {size_t{5}, size_t{4096}, value.size()}) {
    absl::StatusOr<std::unique_ptr<BlockValueStream>> stream =
        BlockValueStream::Begin(std::string_view(value).substr(0, prefix), value.size(),
                                BigOptions(DType::kBF16));
    ASSERT_TRUE(stream.ok()) << stream.status();
    for (size_t at = prefix; at < value.size(); at += piece) {
      (*stream)->Consume(value.data() + at, std::min(piece, value.size() - at));
    }
    absl::StatusOr<KvCache> got = (*stream)->Finish();
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->tokens(), kv.tokens());
    for (int64_t l = 0; l < kBigShape.num_layers; ++l) {
      const size_t bytes = 40 * kBigShape.row() * sizeof(float);
      ASSERT_EQ(std::memcmp(got->k(l), whole->k(l), bytes), 0) << "piece " << piece;
      ASSERT_EQ(std::memcmp(got->v(l), whole->v(l), bytes), 0) << "piece " << piece;
    }
  }
}

TEST(BlockValueStreamTest, RefusesAPrefixWithoutTheTokenIdsAndCatchesALaterFlip) {
  const std::string value = EncodeBlockValue(MakeBigKv(40), BigOptions(DType::kF32));
  absl::StatusOr<std::unique_ptr<BlockValueStream>> short_prefix = BlockValueStream::Begin(
      std::string_view(value).substr(0, kValueHeaderBytes + 4 * 39), value.size(),
      BigOptions(DType::kF32));
  EXPECT_EQ(short_prefix.status().code(), absl::StatusCode::kOutOfRange) << short_prefix.status();
  // A header of another model fails at Begin, before any payload is read.
  CodecOptions other = BigOptions(DType::kF32);
  other.model_fingerprint ^= 1;
  EXPECT_EQ(BlockValueStream::Begin(value, value.size(), other).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::string bad = value;
  bad[value.size() - 3] ^= 0x20;
  absl::StatusOr<std::unique_ptr<BlockValueStream>> stream =
      BlockValueStream::Begin(std::string_view(bad).substr(0, 4096), bad.size(),
                              BigOptions(DType::kF32));
  ASSERT_TRUE(stream.ok()) << stream.status();
  (*stream)->Consume(bad.data() + 4096, bad.size() - 4096);
  EXPECT_EQ((*stream)->Finish().status().code(), absl::StatusCode::kDataLoss);
}

TEST(ValueDecoderTest, MissingOrExtraBytesAreDataLoss) {
  const std::string value = EncodeBlockValue(MakeBigKv(3), BigOptions(DType::kBF16));
  absl::StatusOr<ValueHeader> h = ParseValueHeader(value, value.size(), BigOptions(DType::kBF16));
  ASSERT_TRUE(h.ok()) << h.status();
  KvCache out(kBigShape);
  out.Append(std::vector<int32_t>(3));
  absl::StatusOr<ValueDecoder> short_one = ValueDecoder::Create(*h, kBigShape, CacheDestination(out));
  ASSERT_TRUE(short_one.ok());
  short_one->Consume(value.data(), value.size() - 1);
  EXPECT_NE(short_one->Finish().message().find("truncated"), std::string_view::npos);
  absl::StatusOr<ValueDecoder> long_one = ValueDecoder::Create(*h, kBigShape, CacheDestination(out));
  ASSERT_TRUE(long_one.ok());
  long_one->Consume(value.data(), value.size());
  long_one->Consume("x", 1);
  EXPECT_NE(long_one->Finish().message().find("trailing bytes"), std::string_view::npos);
}

TEST(ValueDecoderTest, StoredBf16IntoABf16DestinationIsAPlainCopy) {
  const std::string value = EncodeBlockValue(MakeBigKv(40), BigOptions(DType::kBF16));
  const size_t elements = 40 * kBigShape.row();
  std::vector<std::vector<uint16_t>> k(kBigShape.num_layers, std::vector<uint16_t>(elements));
  std::vector<std::vector<uint16_t>> v(kBigShape.num_layers, std::vector<uint16_t>(elements));
  KvDestination dest{.dtype = DType::kBF16};
  for (int64_t l = 0; l < kBigShape.num_layers; ++l) {
    dest.k.push_back(k[l].data());
    dest.v.push_back(v[l].data());
  }
  ASSERT_TRUE(DecodeInPieces(value, BigOptions(DType::kBF16), 16 << 10, dest).ok());
  const char* arrays = value.data() + kValueHeaderBytes + 4 * 40;
  for (int64_t l = 0; l < kBigShape.num_layers; ++l) {
    EXPECT_EQ(std::memcmp(k[l].data(), arrays + (2 * l) * elements * 2, elements * 2), 0) << l;
    EXPECT_EQ(std::memcmp(v[l].data(), arrays + (2 * l + 1) * elements * 2, elements * 2), 0) << l;
  }
}

// A value past kBypassCacheMinBytes copies with streaming stores: the same bytes, in
// pieces of any size, and a flipped byte is still caught.
TEST(ValueDecoderTest, ALargeSameDtypeValueCopiesExactly) {
  const int tokens = 1100;  // 8.6 MiB of f32
  const KvCache kv = MakeBigKv(tokens);
  const std::string value = EncodeBlockValue(kv, BigOptions(DType::kF32));
  ASSERT_GE(value.size(), kBypassCacheMinBytes);
  for (size_t piece : {size_t{4097}, kDecodeChunkBytes + 1, value.size()}) {
    KvCache out(kBigShape);
    out.AppendUninitialized(kv.tokens());
    ASSERT_TRUE(DecodeInPieces(value, BigOptions(DType::kF32), piece, CacheDestination(out)).ok())
        << piece;
    const size_t bytes = tokens * kBigShape.row() * sizeof(float);
    for (int64_t l = 0; l < kBigShape.num_layers; ++l) {
      ASSERT_EQ(std::memcmp(out.k(l), kv.k(l), bytes), 0) << "piece " << piece;
      ASSERT_EQ(std::memcmp(out.v(l), kv.v(l), bytes), 0) << "piece " << piece;
    }
  }
  std::string bad = value;
  bad[value.size() / 2 + 5] ^= 0x04;
  KvCache out(kBigShape);
  out.AppendUninitialized(kv.tokens());
  EXPECT_EQ(DecodeInPieces(bad, BigOptions(DType::kF32), 16 << 10, CacheDestination(out)).code(),
            absl::StatusCode::kDataLoss);
}

// Split into pieces of `piece` bytes.
std::vector<ValuePiece> Pieces(std::string_view value, size_t piece) {
  std::vector<ValuePiece> pieces;
  for (size_t at = 0; at < value.size(); at += piece) {
    pieces.push_back({value.data() + at, std::min(piece, value.size() - at)});
  }
  return pieces;
}

// Conversion on this thread, hashing on another: the same bytes as the original in any
// dtype and piece size, and a flip or a missing piece is still DATA_LOSS.
TEST(ConsumeInParallelTest, DecodesExactlyAndCatchesFlipsAndMissingPieces) {
  const int tokens = 1100;  // 8.6 MiB of f32, past kParallelHashMinBytes
  const KvCache kv = MakeBigKv(tokens);
  for (DType stored : {DType::kF32, DType::kBF16}) {
    const std::string value = EncodeBlockValue(kv, BigOptions(stored));
    absl::StatusOr<KvCache> whole = DecodeBlockValue(value, BigOptions(stored));
    ASSERT_TRUE(whole.ok()) << whole.status();
    const absl::StatusOr<ValueHeader> h = ParseValueHeader(value, value.size(), BigOptions(stored));
    ASSERT_TRUE(h.ok()) << h.status();
    for (size_t piece : {size_t{16} << 10, size_t{4097}, size_t{1} << 20}) {
      KvCache out(kBigShape);
      out.AppendUninitialized(kv.tokens());
      absl::StatusOr<ValueDecoder> d = ValueDecoder::Create(*h, kBigShape, CacheDestination(out));
      ASSERT_TRUE(d.ok()) << d.status();
      ConsumeInParallel(*d, Pieces(value, piece));
      ASSERT_TRUE(d->Finish().ok()) << DTypeName(stored) << " piece " << piece;
      const size_t bytes = tokens * kBigShape.row() * sizeof(float);
      for (int64_t l = 0; l < kBigShape.num_layers; ++l) {
        ASSERT_EQ(std::memcmp(out.k(l), whole->k(l), bytes), 0) << "piece " << piece;
        ASSERT_EQ(std::memcmp(out.v(l), whole->v(l), bytes), 0) << "piece " << piece;
      }
    }
    std::string bad = value;
    bad[value.size() - 100] ^= 0x40;
    KvCache out(kBigShape);
    out.AppendUninitialized(kv.tokens());
    absl::StatusOr<ValueDecoder> d = ValueDecoder::Create(*h, kBigShape, CacheDestination(out));
    ASSERT_TRUE(d.ok());
    ConsumeInParallel(*d, Pieces(bad, 16 << 10));
    EXPECT_EQ(d->Finish().code(), absl::StatusCode::kDataLoss);
    std::vector<ValuePiece> missing = Pieces(value, 16 << 10);
    missing.pop_back();
    absl::StatusOr<ValueDecoder> short_one =
        ValueDecoder::Create(*h, kBigShape, CacheDestination(out));
    ASSERT_TRUE(short_one.ok());
    ConsumeInParallel(*short_one, missing);
    const absl::Status s = short_one->Finish();
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
    EXPECT_NE(s.message().find("truncated"), std::string_view::npos) << s;
  }
}

// The two halves must both see every byte: one fed short is truncated.
TEST(ValueDecoderTest, HalvesFedDifferentlyAreDataLoss) {
  const std::string value = EncodeBlockValue(MakeBigKv(3), BigOptions(DType::kF32));
  absl::StatusOr<ValueHeader> h = ParseValueHeader(value, value.size(), BigOptions(DType::kF32));
  ASSERT_TRUE(h.ok()) << h.status();
  KvCache out(kBigShape);
  out.Append(std::vector<int32_t>(3));
  absl::StatusOr<ValueDecoder> d = ValueDecoder::Create(*h, kBigShape, CacheDestination(out));
  ASSERT_TRUE(d.ok());
  d->ConvertOnly(value.data(), value.size());
  d->HashOnly(value.data(), value.size() - 1);
  const absl::Status s = d->Finish();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("truncated"), std::string_view::npos) << s;
}

TEST(ValueDecoderTest, RefusesADestinationThatDoesNotFit) {
  const std::string value = EncodeBlockValue(MakeBigKv(2), BigOptions(DType::kBF16));
  absl::StatusOr<ValueHeader> h = ParseValueHeader(value, value.size(), BigOptions(DType::kBF16));
  ASSERT_TRUE(h.ok());
  KvDestination too_few{.dtype = DType::kF32, .k = {nullptr}, .v = {nullptr}};
  EXPECT_EQ(ValueDecoder::Create(*h, kBigShape, too_few).status().code(),
            absl::StatusCode::kInvalidArgument);
  KvDestination f16{.dtype = DType::kF16};
  EXPECT_EQ(ValueDecoder::Create(*h, kBigShape, f16).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace blockserve::kv_store
