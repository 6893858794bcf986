#include "kv_store/codec.h"

#include <algorithm>
#include <atomic>
#include <thread>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "kv_store/hash.h"

namespace blockserve::kv_store {
namespace {

constexpr char kMagic[4] = {'B', 'S', 'K', 'V'};

// Field offsets; see the table in codec.h.
constexpr size_t kVersionAt = 4;
constexpr size_t kDTypeAt = 6;
constexpr size_t kReservedAt = 7;
constexpr size_t kFingerprintAt = 8;
constexpr size_t kNumLayersAt = 16;
constexpr size_t kNumKvHeadsAt = 20;
constexpr size_t kHeadDimAt = 24;
constexpr size_t kTokenCountAt = 28;
constexpr size_t kStartPositionAt = 32;
constexpr size_t kPayloadLengthAt = 40;
constexpr size_t kChecksumAt = 48;
static_assert(kChecksumAt + 8 == kValueHeaderBytes);

// Wire codes are fixed here, independent of the enum's numbering.
uint8_t DTypeCode(engine::DType d) {
  switch (d) {
    case engine::DType::kF32:
      return 0;
    case engine::DType::kF16:
      return 1;
    case engine::DType::kBF16:
      return 2;
  }
  return 0xff;
}

bool DTypeFromCode(uint8_t code, engine::DType* d) {
  switch (code) {
    case 0:
      *d = engine::DType::kF32;
      return true;
    case 1:
      *d = engine::DType::kF16;
      return true;
    case 2:
      *d = engine::DType::kBF16;
      return true;
  }
  return false;
}

template <typename T>
void Put(char* base, size_t at, T v) {
  std::memcpy(base + at, &v, sizeof(T));
}

template <typename T>
T Get(std::string_view s, size_t at) {
  T v;
  std::memcpy(&v, s.data() + at, sizeof(T));
  return v;
}

// Payload bytes for n tokens, or false if it does not fit in 64 bits.
bool PayloadBytes(uint64_t layers, uint64_t heads, uint64_t dim, uint64_t n, size_t dsize,
                  uint64_t* out) {
  const unsigned __int128 kv = static_cast<unsigned __int128>(2) * layers * n * heads * dim;
  const unsigned __int128 total = kv * dsize + static_cast<unsigned __int128>(4) * n;
  if (total > UINT64_MAX) return false;
  *out = static_cast<uint64_t>(total);
  return true;
}

std::string HexU64(uint64_t v) { return absl::StrCat("0x", absl::Hex(v, absl::kZeroPad16)); }

absl::Status Loss(std::string_view what) {
  return absl::DataLossError(absl::StrCat("block value: ", std::string(what)));
}

absl::Status Mismatch(std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("block value: ", std::string(what)));
}

absl::Status CheckShapeField(std::string_view name, int64_t expected, uint32_t found) {
  if (expected == static_cast<int64_t>(found)) return absl::OkStatus();
  return Mismatch(absl::StrCat("shape mismatch: ", std::string(name), " expected ", expected,
                               ", found ", found));
}

}  // namespace

size_t EncodedValueBytes(const engine::KvShape& shape, int64_t num_tokens, engine::DType dtype) {
  return kValueHeaderBytes + 4 * num_tokens +
         2 * shape.num_layers * num_tokens * shape.row() * engine::DTypeSize(dtype);
}

std::string EncodeBlockValue(const engine::KvCache& kv, const CodecOptions& o) {
  const engine::KvShape& shape = kv.shape();
  const int64_t n = kv.num_tokens();
  const size_t total = EncodedValueBytes(shape, n, o.dtype);
  std::string out(total, '\0');
  char* b = out.data();
  std::memcpy(b, kMagic, 4);
  Put<uint16_t>(b, kVersionAt, kCodecVersion);
  Put<uint8_t>(b, kDTypeAt, DTypeCode(o.dtype));
  Put<uint8_t>(b, kReservedAt, 0);
  Put<uint64_t>(b, kFingerprintAt, o.model_fingerprint);
  Put<uint32_t>(b, kNumLayersAt, static_cast<uint32_t>(shape.num_layers));
  Put<uint32_t>(b, kNumKvHeadsAt, static_cast<uint32_t>(shape.num_kv_heads));
  Put<uint32_t>(b, kHeadDimAt, static_cast<uint32_t>(shape.head_dim));
  Put<uint32_t>(b, kTokenCountAt, static_cast<uint32_t>(n));
  Put<uint64_t>(b, kStartPositionAt, static_cast<uint64_t>(kv.start_position()));
  Put<uint64_t>(b, kPayloadLengthAt, total - kValueHeaderBytes);

  // Each array is hashed right after it is written, while it is still in cache.
  ChecksumStream sum;
  sum.Update(b, kChecksumAt);
  char* p = b + kValueHeaderBytes;
  if (n > 0) std::memcpy(p, kv.tokens().data(), 4 * n);
  sum.Update(p, 4 * n);
  p += 4 * n;
  const size_t floats = static_cast<size_t>(n * shape.row());
  const size_t array_bytes = floats * engine::DTypeSize(o.dtype);
  for (int64_t l = 0; l < shape.num_layers; ++l) {
    for (const void* array : {kv.k_data(l), kv.v_data(l)}) {
      // Chunk by chunk: convert from the cache's dtype, then hash the bytes while they
      // are in cache.
      const auto* src = static_cast<const char*>(array);
      for (size_t at = 0; at < floats; at += kDecodeChunkBytes / 4) {
        const size_t m = std::min(floats - at, kDecodeChunkBytes / 4);
        char* to = p + at * engine::DTypeSize(o.dtype);
        engine::ConvertDType(kv.dtype(), src + at * engine::DTypeSize(kv.dtype()), m, o.dtype,
                             to);
        sum.Update(to, m * engine::DTypeSize(o.dtype));
      }
      p += array_bytes;
    }
  }
  Put<uint64_t>(b, kChecksumAt, sum.Digest());
  return out;
}

absl::StatusOr<ValueHeader> ParseValueHeader(std::string_view value, uint64_t value_size,
                                             const CodecOptions& expected) {
  if (value_size < kValueHeaderBytes || value.size() < kValueHeaderBytes) {
    return Loss(absl::StrCat("truncated: ", value_size, " bytes is shorter than the ",
                             kValueHeaderBytes, "-byte header"));
  }
  if (std::memcmp(value.data(), kMagic, 4) != 0) {
    return Loss(absl::StrCat("bad magic: expected \"BSKV\", found \"",
                             absl::CHexEscape(std::string(value.substr(0, 4))), "\""));
  }
  const uint16_t version = Get<uint16_t>(value, kVersionAt);
  if (version != kCodecVersion) {
    return Mismatch(absl::StrCat("unknown format version: expected ", kCodecVersion,
                                 ", found ", version));
  }
  const uint8_t dtype_code = Get<uint8_t>(value, kDTypeAt);
  engine::DType dtype;
  if (!DTypeFromCode(dtype_code, &dtype)) {
    return Loss(absl::StrCat("unknown dtype code: expected 0 (F32), 1 (F16) or 2 (BF16), found ",
                             dtype_code));
  }
  const uint8_t reserved = Get<uint8_t>(value, kReservedAt);
  if (reserved != 0) {
    return Loss(absl::StrCat("reserved byte: expected 0, found ", reserved));
  }
  const uint64_t fingerprint = Get<uint64_t>(value, kFingerprintAt);
  if (fingerprint != expected.model_fingerprint) {
    return Mismatch(absl::StrCat("written by another model: model fingerprint expected ",
                                 HexU64(expected.model_fingerprint), ", found ",
                                 HexU64(fingerprint)));
  }
  const uint32_t layers = Get<uint32_t>(value, kNumLayersAt);
  const uint32_t heads = Get<uint32_t>(value, kNumKvHeadsAt);
  const uint32_t dim = Get<uint32_t>(value, kHeadDimAt);
  if (absl::Status s = CheckShapeField("num_layers", expected.shape.num_layers, layers); !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckShapeField("num_kv_heads", expected.shape.num_kv_heads, heads);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckShapeField("head_dim", expected.shape.head_dim, dim); !s.ok()) {
    return s;
  }
  const uint32_t n = Get<uint32_t>(value, kTokenCountAt);
  const uint64_t payload_length = Get<uint64_t>(value, kPayloadLengthAt);
  uint64_t want_payload = 0;
  if (!PayloadBytes(layers, heads, dim, n, engine::DTypeSize(dtype), &want_payload) ||
      payload_length != want_payload) {
    return Loss(absl::StrCat("payload length ", payload_length, " disagrees with token count ",
                             n, ": expected ", want_payload, " bytes for ", n, " tokens of ",
                             std::string(engine::DTypeName(dtype))));
  }
  const uint64_t found_payload = value_size - kValueHeaderBytes;
  if (found_payload < payload_length) {
    return Loss(absl::StrCat("truncated: expected ", payload_length, " payload bytes, found ",
                             found_payload));
  }
  if (found_payload > payload_length) {
    return Loss(absl::StrCat("trailing bytes: expected ", payload_length,
                             " payload bytes, found ", found_payload, " (",
                             found_payload - payload_length, " extra)"));
  }
  ValueHeader h;
  h.dtype = dtype;
  h.num_tokens = n;
  h.start_position = static_cast<int64_t>(Get<uint64_t>(value, kStartPositionAt));
  h.value_bytes = value_size;
  h.checksum = Get<uint64_t>(value, kChecksumAt);
  return h;
}

absl::StatusOr<ValueDecoder> ValueDecoder::Create(const ValueHeader& header,
                                                  const engine::KvShape& shape,
                                                  KvDestination dest) {
  if (dest.dtype == engine::DType::kF16) {
    return absl::InvalidArgumentError("block value: F16 destinations are not supported");
  }
  const size_t layers = static_cast<size_t>(shape.num_layers);
  if (dest.k.size() != layers || dest.v.size() != layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("block value: destination has ", dest.k.size(), " K and ", dest.v.size(),
                     " V arrays for ", layers, " layers"));
  }
  const bool empty = header.num_tokens == 0 || shape.row() == 0;
  for (size_t l = 0; l < layers && !empty; ++l) {
    if (dest.k[l] == nullptr || dest.v[l] == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("block value: destination layer ", l, " has a null array"));
    }
  }
  return ValueDecoder(header, shape, std::move(dest));
}

ValueDecoder::ValueDecoder(const ValueHeader& header, const engine::KvShape& shape,
                           KvDestination dest)
    : header_(header),
      src_size_(engine::DTypeSize(header.dtype)),
      dst_size_(engine::DTypeSize(dest.dtype)),
      bypass_cache_(header.dtype == dest.dtype && header.value_bytes >= kBypassCacheMinBytes),
      dest_(std::move(dest)),
      sum_(std::make_unique<ChecksumStream>()) {
  array_bytes_ = uint64_t{header.num_tokens} * static_cast<uint64_t>(shape.row()) * src_size_;
}

void ValueDecoder::Consume(const char* data, size_t n) {
  // Piece by piece in chunks: convert (the bytes come into cache), then hash them there.
  while (n > 0) {
    const size_t m = std::min(n, kDecodeChunkBytes);
    ConvertOnly(data, m);
    HashOnly(data, m);
    data += m;
    n -= m;
  }
}

void ValueDecoder::ConvertOnly(const char* data, size_t n) {
  const uint64_t arrays_at = header_.arrays_at();
  while (n > 0) {
    const uint64_t at = converted_;
    if (at >= header_.value_bytes) {  // surplus: counted only, Finish fails
      converted_ += n;
      return;
    }
    size_t m = static_cast<size_t>(std::min<uint64_t>(n, header_.value_bytes - at));
    if (at < arrays_at) {
      m = static_cast<size_t>(std::min<uint64_t>(m, arrays_at - at));  // header, token ids
    } else {
      ConvertArrays(at - arrays_at, data, m);
    }
    converted_ += m;
    data += m;
    n -= m;
  }
}

void ValueDecoder::HashOnly(const char* data, size_t n) {
  while (n > 0) {
    const uint64_t at = hashed_;
    if (at >= header_.value_bytes) {  // surplus: counted only, Finish fails
      hashed_ += n;
      return;
    }
    size_t m = static_cast<size_t>(std::min<uint64_t>(n, header_.value_bytes - at));
    if (at < kValueHeaderBytes) {
      // The header: all but its checksum field is hashed.
      m = std::min<size_t>(m, kValueHeaderBytes - at);
      if (at < kChecksumAt) sum_->Update(data, std::min<size_t>(m, kChecksumAt - at));
    } else {
      sum_->Update(data, m);
    }
    hashed_ += m;
    data += m;
    n -= m;
  }
}

void ValueDecoder::ConvertArrays(uint64_t at, const char* data, size_t n) {
  while (n > 0) {
    const uint64_t array = at / array_bytes_;  // 2 * layer + (0 for K, 1 for V)
    const uint64_t in_array = at % array_bytes_;
    void* base = (array % 2 == 0 ? dest_.k : dest_.v)[array / 2];
    const size_t m = static_cast<size_t>(std::min<uint64_t>(n, array_bytes_ - in_array));
    const char* p = data;
    size_t left = m;
    uint64_t element = in_array / src_size_;
    if (partial_bytes_ > 0) {  // finish the element the last piece split
      const size_t take = std::min(left, src_size_ - partial_bytes_);
      std::memcpy(partial_ + partial_bytes_, p, take);
      partial_bytes_ += take;
      p += take;
      left -= take;
      if (partial_bytes_ == src_size_) {
        engine::ConvertDType(header_.dtype, partial_, 1, dest_.dtype,
                        static_cast<char*>(base) + element * dst_size_);
        partial_bytes_ = 0;
        ++element;
      }
    }
    const size_t whole = left / src_size_;
    char* out = static_cast<char*>(base) + element * dst_size_;
    if (bypass_cache_) {
      engine::CopyBypassingCache(out, p, whole * src_size_);
      unfenced_ = true;
    } else {
      engine::ConvertDType(header_.dtype, p, whole, dest_.dtype, out);
    }
    p += whole * src_size_;
    left -= whole * src_size_;
    if (left > 0) {  // a piece boundary inside an element: keep its first bytes
      std::memcpy(partial_ + partial_bytes_, p, left);
      partial_bytes_ += left;
    }
    at += m;
    data += m;
    n -= m;
  }
}

ValueDecoder::~ValueDecoder() {
  if (unfenced_) engine::StreamingStoreFence();
}

absl::Status ValueDecoder::Finish() {
  if (unfenced_) {
    engine::StreamingStoreFence();
    unfenced_ = false;
  }
  // Through Consume both counts are the same; a caller of the two halves that fed
  // them differently is told about the one that is off.
  const uint64_t got = converted_ != header_.value_bytes ? converted_ : hashed_;
  if (got != header_.value_bytes) {
    return Loss(absl::StrCat(got < header_.value_bytes ? "truncated" : "trailing bytes",
                             ": expected ", header_.value_bytes, " bytes, found ", got));
  }
  const uint64_t sum = sum_->Digest();
  if (sum != header_.checksum) {
    return Loss(absl::StrCat("checksum mismatch: header says ", HexU64(header_.checksum),
                             ", bytes hash to ", HexU64(sum)));
  }
  return absl::OkStatus();
}

void ConsumeInParallel(ValueDecoder& decoder, absl::Span<const ValuePiece> pieces) {
  // The hashing thread follows this one piece by piece, so it reads each piece from
  // this core's cache (or the shared one) rather than from memory. It spins briefly,
  // then yields, while it is ahead.
  std::atomic<size_t> converted{0};
  std::thread hasher([&] {
    for (size_t i = 0; i < pieces.size(); ++i) {
      for (int spins = 0; converted.load(std::memory_order_acquire) <= i; ++spins) {
        if (spins >= 64) std::this_thread::yield();
      }
      decoder.HashOnly(pieces[i].data, pieces[i].size);
    }
  });
  for (size_t i = 0; i < pieces.size(); ++i) {
    decoder.ConvertOnly(pieces[i].data, pieces[i].size);
    converted.store(i + 1, std::memory_order_release);
  }
  hasher.join();
}

KvDestination CacheDestination(engine::KvCache& kv) {
  KvDestination d;
  d.dtype = kv.dtype();
  for (int64_t l = 0; l < kv.shape().num_layers; ++l) {
    d.k.push_back(kv.k_data(l));
    d.v.push_back(kv.v_data(l));
  }
  return d;
}

absl::StatusOr<std::unique_ptr<BlockValueStream>> BlockValueStream::Begin(
    std::string_view prefix, uint64_t value_size, const CodecOptions& expected) {
  absl::StatusOr<ValueHeader> h = ParseValueHeader(prefix, value_size, expected);
  if (!h.ok()) return h.status();
  if (prefix.size() < h->arrays_at()) {
    return absl::OutOfRangeError(absl::StrCat("block value: the first ", prefix.size(),
                                              " bytes end before its ", h->num_tokens,
                                              " token ids do"));
  }
  engine::KvCache kv(expected.shape, expected.cache_dtype);
  std::vector<int32_t> tokens(h->num_tokens);
  if (h->num_tokens > 0) {
    std::memcpy(tokens.data(), prefix.data() + kValueHeaderBytes, 4 * tokens.size());
  }
  kv.AppendUninitialized(tokens);  // the decoder writes every element (or kv is dropped)
  kv.set_start_position(h->start_position);
  // The destination points into kv's arrays, which keep their address when kv moves.
  absl::StatusOr<ValueDecoder> decoder =
      ValueDecoder::Create(*h, expected.shape, CacheDestination(kv));
  if (!decoder.ok()) return decoder.status();
  std::unique_ptr<BlockValueStream> stream(
      new BlockValueStream(std::move(kv), *std::move(decoder)));
  stream->Consume(prefix.data(), prefix.size());
  return stream;
}

absl::StatusOr<engine::KvCache> BlockValueStream::Finish() {
  if (absl::Status s = decoder_.Finish(); !s.ok()) return s;
  return std::move(kv_);
}

absl::StatusOr<engine::KvCache> DecodeBlockValue(std::string_view value,
                                                 const CodecOptions& expected) {
  absl::StatusOr<std::unique_ptr<BlockValueStream>> stream =
      BlockValueStream::Begin(value, value.size(), expected);
  // Never OUT_OF_RANGE here: the header's sizes were checked against the whole value.
  if (!stream.ok()) return stream.status();
  return (*stream)->Finish();
}

}  // namespace blockserve::kv_store
