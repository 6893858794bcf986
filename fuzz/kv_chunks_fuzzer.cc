// Fuzz target: the decoder's reassembly of a KV handoff (handoff::SequenceAssembler, what
// Decoder.AcceptSequence feeds every chunk a prefill sends).
//
// Input: a stream of records, each a little-endian u16 length and that many bytes of a
// serialized KvChunk (fuzz/kv_chunks_stream.h); a record that does not parse ends the
// stream, as a broken message ends the gRPC call.
//
// Invariants: errors are InvalidArgument or FailedPrecondition (AddChunk's contract);
// after the first error every later chunk and Finish are refused; a finished sequence has
// the header's token ids and count, bytes_received equals the whole KV in the header's
// dtype, and the KV sent again by the real sender (ForEachChunk, small chunks) is
// accepted and reassembles to the same values (bitwise, any NaN matching any NaN).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/dtype.h"
#include "engine/kv_cache.h"
#include "fuzz/fuzz_check.h"
#include "fuzz/kv_chunks_stream.h"
#include "handoff/kv_chunks.h"
#include "proto/blockserve.pb.h"

namespace blockserve::handoff {
namespace {

namespace v1 = ::blockserve::v1;

bool SameFloat(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return std::memcmp(&a, &b, sizeof(float)) == 0;
}

bool AllowedError(const absl::Status& s) {
  return absl::IsInvalidArgument(s) || absl::IsFailedPrecondition(s);
}

void CheckFinished(const SequenceAssembler& assembler, const engine::KvCache& kv) {
  const v1::SequenceHeader& header = assembler.header();
  const engine::KvShape shape = fuzz::kKvChunksExpectShape;
  FUZZ_CHECK(kv.shape() == shape);
  FUZZ_CHECK(kv.num_tokens() == static_cast<int64_t>(header.token_count()));
  FUZZ_CHECK(std::equal(kv.tokens().begin(), kv.tokens().end(), header.token_ids().ids().begin(),
                        header.token_ids().ids().end()));
  absl::StatusOr<engine::DType> dtype = ToEngineDType(header.dtype());
  FUZZ_CHECK(dtype.ok());
  FUZZ_CHECK(assembler.bytes_received() ==
             2 * shape.num_layers * kv.num_tokens() * shape.row() *
                 static_cast<int64_t>(engine::DTypeSize(*dtype)));

  SequenceAssembler again(fuzz::KvChunksExpect());
  v1::SequenceHeader resend = header;
  bool all_accepted = true;
  ForEachChunk(resend, kv, header.dtype(), /*max_chunk_bytes=*/64, [&](const v1::KvChunk& c) {
    all_accepted = again.AddChunk(c).ok();
    return all_accepted;
  });
  FUZZ_CHECK(all_accepted);
  absl::StatusOr<engine::KvCache> back = again.Finish();
  FUZZ_CHECK(back.ok());
  FUZZ_CHECK(back->tokens() == kv.tokens());
  const int64_t floats = kv.num_tokens() * shape.row();
  for (int64_t l = 0; l < shape.num_layers; ++l) {
    for (int64_t i = 0; i < floats; ++i) {
      FUZZ_CHECK(SameFloat(back->k(l)[i], kv.k(l)[i]));
      FUZZ_CHECK(SameFloat(back->v(l)[i], kv.v(l)[i]));
    }
  }
}

}  // namespace
}  // namespace blockserve::handoff

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace blockserve::handoff;
  const std::vector<blockserve::v1::KvChunk> chunks = blockserve::fuzz::ParseKvChunkStream(
      std::string_view(reinterpret_cast<const char*>(data), size));
  SequenceAssembler assembler(blockserve::fuzz::KvChunksExpect());
  bool failed = false;
  for (const blockserve::v1::KvChunk& chunk : chunks) {
    const absl::Status s = assembler.AddChunk(chunk);
    if (failed) FUZZ_CHECK(absl::IsFailedPrecondition(s));
    if (!s.ok()) {
      FUZZ_CHECK(AllowedError(s));
      failed = true;
    }
  }
  absl::StatusOr<blockserve::engine::KvCache> kv = assembler.Finish();
  if (failed) FUZZ_CHECK(absl::IsFailedPrecondition(kv.status()));
  if (!kv.ok()) {
    FUZZ_CHECK(AllowedError(kv.status()));
    return 0;
  }
  CheckFinished(assembler, *kv);
  // Finish is once only.
  FUZZ_CHECK(absl::IsFailedPrecondition(assembler.Finish().status()));
  return 0;
}
