#include "handoff/kv_chunks.h"

#include <algorithm>
#include <cstddef>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "contract/request_contract.h"

namespace blockserve::handoff {
namespace {

namespace v1 = ::blockserve::v1;


int TensorIndex(uint32_t layer, v1::KvTensor tensor) {
  return 2 * static_cast<int>(layer) + (tensor == v1::KV_TENSOR_V ? 1 : 0);
}

std::string ShapeString(int64_t layers, int64_t heads, int64_t dim) {
  return absl::StrCat(layers, " layers x ", heads, " kv heads x ", dim, " head_dim");
}

}  // namespace

absl::StatusOr<engine::DType> ToEngineDType(v1::DType dtype) {
  switch (dtype) {
    case v1::DTYPE_F32:
      return engine::DType::kF32;
    case v1::DTYPE_F16:
      return engine::DType::kF16;
    case v1::DTYPE_BF16:
      return engine::DType::kBF16;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "dtype must be DTYPE_F32, DTYPE_F16 or DTYPE_BF16, got ", static_cast<int>(dtype)));
  }
}

v1::DType ToWireDType(engine::DType dtype) {
  switch (dtype) {
    case engine::DType::kF32:
      return v1::DTYPE_F32;
    case engine::DType::kF16:
      return v1::DTYPE_F16;
    case engine::DType::kBF16:
      return v1::DTYPE_BF16;
  }
  return v1::DTYPE_F32;
}

bool ForEachChunk(const v1::SequenceHeader& header, const engine::KvCache& kv, v1::DType dtype,
                  size_t max_chunk_bytes, absl::FunctionRef<bool(const v1::KvChunk&)> sink) {
  const engine::DType edtype = *ToEngineDType(dtype);
  const engine::KvShape& shape = kv.shape();
  const int64_t n = kv.num_tokens();
  {
    v1::KvChunk chunk;
    v1::SequenceHeader* h = chunk.mutable_header();
    *h = header;
    h->set_num_layers(static_cast<uint32_t>(shape.num_layers));
    h->set_num_kv_heads(static_cast<uint32_t>(shape.num_kv_heads));
    h->set_head_dim(static_cast<uint32_t>(shape.head_dim));
    h->set_dtype(dtype);
    h->set_token_count(static_cast<uint32_t>(n));
    h->mutable_token_ids()->mutable_ids()->Assign(kv.tokens().begin(), kv.tokens().end());
    if (!sink(chunk)) return false;
  }
  const size_t row_bytes = static_cast<size_t>(shape.row()) * engine::DTypeSize(edtype);
  const int64_t tokens_per_chunk =
      std::max<int64_t>(1, row_bytes == 0 ? n : static_cast<int64_t>(max_chunk_bytes / row_bytes));
  v1::KvChunk chunk;
  v1::KvSlice* slice = chunk.mutable_slice();
  for (int64_t layer = 0; layer < shape.num_layers; ++layer) {
    for (v1::KvTensor tensor : {v1::KV_TENSOR_K, v1::KV_TENSOR_V}) {
      const auto* src = static_cast<const std::byte*>(tensor == v1::KV_TENSOR_K
                                                          ? kv.k_data(layer)
                                                          : kv.v_data(layer));
      const size_t kv_row_bytes = shape.row() * engine::DTypeSize(kv.dtype());
      for (int64_t begin = 0; begin < n; begin += tokens_per_chunk) {
        const int64_t end = std::min(n, begin + tokens_per_chunk);
        slice->set_layer(static_cast<uint32_t>(layer));
        slice->set_tensor(tensor);
        slice->set_token_begin(static_cast<uint32_t>(begin));
        slice->set_token_end(static_cast<uint32_t>(end));
        std::string* data = slice->mutable_data();
        const size_t elements = static_cast<size_t>((end - begin) * shape.row());
        data->resize(elements * engine::DTypeSize(edtype));
        engine::ConvertDType(kv.dtype(), src + begin * kv_row_bytes, elements, edtype,
                             data->data());
        if (!sink(chunk)) return false;
      }
    }
  }
  return true;
}

std::vector<v1::KvChunk> SequenceToChunks(const v1::SequenceHeader& header,
                                          const engine::KvCache& kv, v1::DType dtype,
                                          size_t max_chunk_bytes) {
  std::vector<v1::KvChunk> chunks;
  ForEachChunk(header, kv, dtype, max_chunk_bytes, [&](const v1::KvChunk& c) {
    chunks.push_back(c);
    return true;
  });
  return chunks;
}

absl::StatusOr<engine::SamplingParams> FromProto(const v1::SamplingParams& p) {
  if (absl::Status s = contract::ValidateSamplingValues(p); !s.ok()) return s;
  engine::SamplingParams out;
  out.temperature = p.temperature();
  out.top_p = p.top_p() == 0 ? 1.0 : p.top_p();
  out.top_k = p.top_k();
  out.seed = p.has_seed() ? p.seed() : 0;
  return out;
}

absl::StatusOr<engine::StopRules> DecodeLimitsFromProto(const v1::SamplingParams& p,
                                                        int64_t vocab_size,
                                                        const MaxNewTokensPolicy& policy) {
  if (absl::Status s = contract::ValidateStopFields(p, policy.max_new_tokens_limit); !s.ok()) {
    return s;
  }
  engine::StopRules rules;
  rules.max_new_tokens = p.max_new_tokens() == 0 ? policy.default_max_new_tokens
                                                 : static_cast<int64_t>(p.max_new_tokens());
  if (rules.max_new_tokens < 1 || rules.max_new_tokens > policy.max_new_tokens_limit) {
    // Only a misconfigured server gets here: its default outside 1..its limit.
    return absl::InvalidArgumentError(absl::StrCat(
        "max_new_tokens ", rules.max_new_tokens, " (the server's default) is outside 1..",
        policy.max_new_tokens_limit, " (--max_new_tokens_limit)"));
  }
  rules.stop_strings.assign(p.stop().begin(), p.stop().end());
  for (int32_t id : p.stop_token_ids()) {
    if (id >= vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("sampling.stop_token_ids must be in [0, ", vocab_size, "), got ", id));
    }
    rules.stop_token_ids.push_back(id);
  }
  rules.ignore_eos = p.ignore_eos();
  return rules;
}

v1::FinishReason ToProto(engine::FinishReason reason) {
  switch (reason) {
    case engine::FinishReason::kEos:
      return v1::FINISH_REASON_EOS;
    case engine::FinishReason::kStop:
      return v1::FINISH_REASON_STOP;
    case engine::FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

std::string FingerprintHex(uint64_t fingerprint) { return absl::StrFormat("%016x", fingerprint); }

SequenceAssembler::SequenceAssembler(Expect expect) : expect_(std::move(expect)) {}

absl::Status SequenceAssembler::CheckHeader(const v1::SequenceHeader& h) const {
  if (h.sequence_id() == 0)
    return absl::InvalidArgumentError("header.sequence_id must be non-zero");
  if (absl::StatusOr<engine::DType> d = ToEngineDType(h.dtype()); !d.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("header.", d.status().message()));
  }
  if (h.model_fingerprint().empty()) {
    return absl::InvalidArgumentError("header.model_fingerprint must be set");
  }
  if (h.model_fingerprint() != expect_.model_fingerprint_hex) {
    return absl::FailedPreconditionError(
        absl::StrCat("the sequence was prefilled with model ", h.model_fingerprint(),
                     " but this decoder serves model ", expect_.model_fingerprint_hex));
  }
  const engine::KvShape& s = expect_.shape;
  if (h.num_layers() != s.num_layers || h.num_kv_heads() != s.num_kv_heads ||
      h.head_dim() != s.head_dim) {
    return absl::FailedPreconditionError(absl::StrCat(
        "KV shape mismatch: expected ", ShapeString(s.num_layers, s.num_kv_heads, s.head_dim),
        ", got ", ShapeString(h.num_layers(), h.num_kv_heads(), h.head_dim())));
  }
  if (h.token_count() < 1 || h.token_count() > expect_.context_length - 1) {
    return absl::InvalidArgumentError(absl::StrCat("header.token_count must be in [1, ",
                                                   expect_.context_length - 1, "], got ",
                                                   h.token_count()));
  }
  if (static_cast<int64_t>(h.token_ids().ids_size()) != h.token_count()) {
    return absl::InvalidArgumentError(absl::StrCat("header.token_count is ", h.token_count(),
                                                   " but token_ids holds ",
                                                   h.token_ids().ids_size(), " ids"));
  }
  for (int32_t id : h.token_ids().ids()) {
    if (id < 0 || id >= expect_.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("header.token_ids must be in [0, ", expect_.vocab_size, "), got ", id));
    }
  }
  if (h.first_token_id() < 0 || h.first_token_id() >= expect_.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("header.first_token_id must be in [0, ",
                                                   expect_.vocab_size, "), got ",
                                                   h.first_token_id()));
  }
  if (!h.sampling().has_seed()) {
    return absl::InvalidArgumentError(
        "header.sampling.seed must be set (the prefill resolves an unset seed)");
  }
  if (absl::StatusOr<engine::SamplingParams> p = FromProto(h.sampling()); !p.ok()) {
    return p.status();
  }
  absl::StatusOr<engine::StopRules> limits =
      DecodeLimitsFromProto(h.sampling(), expect_.vocab_size, expect_.max_new_tokens);
  return limits.status();
}

absl::Status SequenceAssembler::AddChunk(const v1::KvChunk& chunk) {
  if (failed_) return absl::FailedPreconditionError("the sequence was already rejected");
  if (finished_) return absl::FailedPreconditionError("the sequence was already finished");
  absl::Status status;
  switch (chunk.body_case()) {
    case v1::KvChunk::kHeader:
      if (has_header_) {
        status = absl::InvalidArgumentError("a SequenceHeader may only be the first chunk");
      } else if (status = CheckHeader(chunk.header()); status.ok()) {
        header_ = chunk.header();
        has_header_ = true;
        dtype_ = *ToEngineDType(header_.dtype());
        kv_ = engine::KvCache(expect_.shape, expect_.kv_dtype);
        kv_.Append(header_.token_ids().ids());
        covered_.assign(2 * expect_.shape.num_layers, {});
      }
      break;
    case v1::KvChunk::kSlice:
      status = has_header_
                   ? AddSlice(chunk.slice())
                   : absl::InvalidArgumentError("the first chunk must carry a SequenceHeader");
      break;
    default:
      status = absl::InvalidArgumentError("a KvChunk must carry a header or a slice");
  }
  if (!status.ok()) failed_ = true;
  return status;
}

absl::Status SequenceAssembler::AddSlice(const v1::KvSlice& slice) {
  const engine::KvShape& shape = expect_.shape;
  if (slice.layer() >= shape.num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("slice layer must be in [0, ", shape.num_layers, "), got ", slice.layer()));
  }
  if (slice.tensor() != v1::KV_TENSOR_K && slice.tensor() != v1::KV_TENSOR_V) {
    return absl::InvalidArgumentError(absl::StrCat(
        "slice tensor must be KV_TENSOR_K or KV_TENSOR_V, got ", static_cast<int>(slice.tensor())));
  }
  const uint32_t begin = slice.token_begin(), end = slice.token_end();
  if (begin >= end || end > header_.token_count()) {
    return absl::InvalidArgumentError(absl::StrCat("slice token range [", begin, ", ", end,
                                                   ") must be non-empty and within [0, ",
                                                   header_.token_count(), ")"));
  }
  const size_t elements = static_cast<size_t>(end - begin) * shape.row();
  const size_t want = elements * engine::DTypeSize(dtype_);
  if (slice.data().size() != want) {
    return absl::InvalidArgumentError(absl::StrCat("slice data for tokens [", begin, ", ", end,
                                                   ") must be ", want, " bytes, got ",
                                                   slice.data().size()));
  }
  std::map<uint32_t, uint32_t>& covered = covered_[TensorIndex(slice.layer(), slice.tensor())];
  auto next = covered.lower_bound(begin);  // first range starting at or after begin
  const bool overlaps_next = next != covered.end() && next->first < end;
  const bool overlaps_prev = next != covered.begin() && std::prev(next)->second > begin;
  if (overlaps_next || overlaps_prev) {
    return absl::InvalidArgumentError(
        absl::StrCat("slice of layer ", slice.layer(), " ", v1::KvTensor_Name(slice.tensor()),
                     " tokens [", begin, ", ", end, ") overlaps an earlier slice"));
  }
  covered.emplace(begin, end);
  auto* dst = static_cast<std::byte*>(slice.tensor() == v1::KV_TENSOR_K
                                          ? kv_.k_data(slice.layer())
                                          : kv_.v_data(slice.layer()));
  engine::ConvertDType(dtype_, slice.data().data(), elements, kv_.dtype(),
                       dst + begin * shape.row() * engine::DTypeSize(kv_.dtype()));
  bytes_received_ += static_cast<int64_t>(want);
  return absl::OkStatus();
}

absl::StatusOr<engine::KvCache> SequenceAssembler::Finish() {
  if (finished_) return absl::FailedPreconditionError("Finish was already called");
  if (failed_) return absl::FailedPreconditionError("the sequence was rejected");
  if (!has_header_) return absl::InvalidArgumentError("the stream carried no SequenceHeader");
  for (size_t i = 0; i < covered_.size(); ++i) {
    uint32_t expected_begin = 0;
    for (const auto& [begin, end] : covered_[i]) {
      if (begin != expected_begin) break;
      expected_begin = end;
    }
    if (expected_begin != header_.token_count()) {
      return absl::InvalidArgumentError(absl::StrCat("layer ", i / 2, " ", i % 2 == 0 ? "K" : "V",
                                                     " is missing tokens from ", expected_begin,
                                                     " (of ", header_.token_count(), ")"));
    }
  }
  finished_ = true;
  return std::move(kv_);
}

}  // namespace blockserve::handoff
