#include "engine/engine.h"

#include <algorithm>
#include <cassert>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "engine/flops.h"
#include "engine/stopwatch.h"
#include "engine/model_files.h"
#include "engine/weights.h"

namespace blockserve::engine {
namespace {

int64_t TotalTokens(absl::Span<const BlockInput> blocks, absl::Span<const int32_t> last) {
  int64_t n = last.size();
  for (const BlockInput& b : blocks) n += b.tokens.size();
  return n;
}

}  // namespace

uint64_t ModelFingerprint(const ModelFiles& files) {
  // FNV-1a 64 over the normalized config text followed by the weights' content hash.
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](uint8_t byte) { h = (h ^ byte) * 0x100000001b3ull; };
  for (char c : files.config().ToJson()) mix(static_cast<uint8_t>(c));
  const uint64_t weights = files.ContentHash();
  for (int i = 0; i < 8; ++i) mix(static_cast<uint8_t>(weights >> (8 * i)));
  return h;
}

absl::StatusOr<std::unique_ptr<Backend>> CpuBackendFactory(ModelWeights weights,
                                                           const EngineOptions& options) {
  return CreateCpuBackend(std::move(weights), CpuBackendOptions{options.num_threads});
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Load(const std::string& model_dir,
                                                     const EngineOptions& options,
                                                     BackendFactory make_backend) {
  absl::StatusOr<ModelFiles> files = ModelFiles::Open(model_dir);
  if (!files.ok()) return files.status();
  absl::StatusOr<ModelWeights> weights = LoadWeights(*files);
  if (!weights.ok()) return weights.status();
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::FromModelDir(model_dir);
  if (!tokenizer.ok()) return tokenizer.status();
  if (tokenizer->vocab_size() > weights->config.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        model_dir, ": tokenizer.json has ", tokenizer->vocab_size(),
        " tokens but config.json's vocab_size is ", weights->config.vocab_size));
  }
  if (absl::Status s = CheckKvDType(options.kv_dtype); !s.ok()) return s;
  const uint64_t fingerprint = ModelFingerprint(*files);
  absl::StatusOr<std::unique_ptr<Backend>> backend = make_backend(*std::move(weights), options);
  if (!backend.ok()) return backend.status();
  if (!(*backend)->SupportsKvDType(options.kv_dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the ", std::string((*backend)->name()), " backend does not hold ",
        std::string(DTypeName(options.kv_dtype)), " KV; use F32"));
  }
  return std::make_unique<Engine>(*std::move(tokenizer), *std::move(backend), fingerprint,
                                  options.kv_dtype);
}

Engine::Engine(Tokenizer tokenizer, std::unique_ptr<Backend> backend, uint64_t model_fingerprint,
               DType kv_dtype)
    : tokenizer_(std::move(tokenizer)),
      backend_(std::move(backend)),
      model_fingerprint_(model_fingerprint),
      kv_dtype_(kv_dtype) {
  assert(backend_->SupportsKvDType(kv_dtype_));
  for (int64_t id : config().eos_token_ids) eos_ids_.push_back(static_cast<int32_t>(id));
  for (const int32_t eos : tokenizer_.eos_ids()) {
    if (std::find(eos_ids_.begin(), eos_ids_.end(), eos) == eos_ids_.end()) {
      eos_ids_.push_back(eos);
    }
  }
}

KvShape Engine::kv_shape() const {
  return KvShape{config().num_hidden_layers, config().num_key_value_heads, config().head_dim};
}

absl::Status Engine::RunForward(absl::Span<const ForwardItem> batch,
                                std::vector<std::vector<float>>* logits) {
  absl::MutexLock lock(&backend_mu_);
  return backend_->Forward(batch, logits);
}

absl::Status Engine::CheckContext(int64_t total_tokens) const {
  if (total_tokens > config().max_position_embeddings) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt of ", total_tokens, " tokens exceeds the model's context of ",
                     config().max_position_embeddings, " tokens"));
  }
  return absl::OkStatus();
}

absl::StatusOr<KvCache> Engine::EncodeBlock(absl::Span<const int32_t> tokens) {
  if (tokens.empty()) return absl::InvalidArgumentError("cannot encode an empty block");
  if (absl::Status s = CheckContext(tokens.size()); !s.ok()) return s;
  KvCache block(kv_shape(), kv_dtype_);
  std::vector<std::vector<float>> unused;
  ForwardItem item{tokens, /*first_position=*/0, &block, /*want_logits=*/false};
  if (absl::Status s = RunForward({item}, &unused); !s.ok()) return s;
  return block;
}

void Engine::ShiftBlock(KvCache& block, int64_t new_start) {
  absl::MutexLock lock(&backend_mu_);
  backend_->ShiftKeys(block, 0, block.num_tokens(), new_start - block.start_position());
  block.set_start_position(new_start);
}

absl::StatusOr<PrefillResult> Engine::PrefillLast(absl::Span<const BlockInput> blocks,
                                                  absl::Span<const int32_t> last,
                                                  const PrefillOptions& options) {
  if (last.empty()) return absl::InvalidArgumentError("the last block (the query) is empty");
  const int64_t total = TotalTokens(blocks, last);
  if (absl::Status s = CheckContext(total); !s.ok()) return s;
  absl::StatusOr<PrefillResult> result = options.mode == AttentionMode::kFull
                                             ? PrefillFull(blocks, last)
                                             : PrefillBlocks(blocks, last, options);
  if (result.ok()) {
    result->stats.flops_full_prefill = ForwardFlops(config(), total, 0, true);
    result->stats.kv_bytes_touched += result->cache.bytes();
  }
  return result;
}

absl::StatusOr<PrefillResult> Engine::PrefillFull(absl::Span<const BlockInput> blocks,
                                                  absl::Span<const int32_t> last) {
  std::vector<int32_t> all;
  for (const BlockInput& b : blocks) all.insert(all.end(), b.tokens.begin(), b.tokens.end());
  all.insert(all.end(), last.begin(), last.end());
  PrefillResult r{KvCache(kv_shape(), kv_dtype_)};
  Stopwatch compute;
  std::vector<std::vector<float>> logits;
  ForwardItem item{all, 0, &r.cache, true};
  if (absl::Status s = RunForward({item}, &logits); !s.ok()) return s;
  r.stats.compute_ms = compute.ElapsedMs();
  r.logits_last = std::move(logits[0]);
  r.next_position = all.size();
  r.stats.tokens_computed = all.size();
  r.stats.flops_to_first_token = ForwardFlops(config(), all.size(), 0, true);
  return r;
}

absl::StatusOr<PrefillResult> Engine::PrefillBlocks(absl::Span<const BlockInput> blocks,
                                                    absl::Span<const int32_t> last,
                                                    const PrefillOptions& options) {
  const int64_t k = blocks.size();
  if (options.global_blocks < 0 || options.global_blocks > k) {
    return absl::InvalidArgumentError(absl::StrCat("global_blocks must be in [0, ", k,
                                                   "] for ", k, " passages, got ",
                                                   options.global_blocks));
  }
  PrefillResult r{KvCache(kv_shape(), kv_dtype_)};
  r.cache.Reserve(TotalTokens(blocks, last));
  double encode_ms = 0;
  // Local blocks: cached KV (or encoded now), copied in order and rotated to its offset.
  for (int64_t i = 0; i < k - options.global_blocks; ++i) {
    const BlockInput& b = blocks[i];
    if (b.tokens.empty()) return absl::InvalidArgumentError(absl::StrCat("passage ", i, " is empty"));
    KvCache encoded;
    const KvCache* kv = b.cached;
    if (kv == nullptr) {
      Stopwatch sw;
      absl::StatusOr<KvCache> e = EncodeBlock(b.tokens);
      if (!e.ok()) return e.status();
      encoded = *std::move(e);
      kv = &encoded;
      encode_ms += sw.ElapsedMs();
      r.stats.tokens_computed += b.tokens.size();
      r.stats.flops_to_first_token += ForwardFlops(config(), b.tokens.size(), 0, false);
    } else {
      if (!(kv->shape() == kv_shape()) ||
          !std::equal(kv->tokens().begin(), kv->tokens().end(), b.tokens.begin(), b.tokens.end())) {
        return absl::InvalidArgumentError(absl::StrCat(
            "cached KV for passage ", i, " does not match its tokens or the model's KV shape"));
      }
      r.stats.tokens_reused += b.tokens.size();
      r.stats.kv_bytes_touched += kv->bytes();
    }
    const int64_t offset = r.cache.num_tokens();
    if (options.reencode_positions) {
      // Copied and rotated in one pass; shift_ms is the whole of it.
      Stopwatch sw;
      absl::MutexLock lock(&backend_mu_);
      backend_->AppendShifted(r.cache, *kv, offset - kv->start_position());
      r.stats.shift_ms += sw.ElapsedMs();
    } else {
      r.cache.AppendCopy(*kv);
    }
  }
  // Tail: global blocks and the query, computed together over everything before them.
  std::vector<int32_t> tail;
  for (int64_t i = k - options.global_blocks; i < k; ++i) {
    tail.insert(tail.end(), blocks[i].tokens.begin(), blocks[i].tokens.end());
  }
  tail.insert(tail.end(), last.begin(), last.end());
  const int64_t past = r.cache.num_tokens();
  Stopwatch compute;
  std::vector<std::vector<float>> logits;
  ForwardItem item{tail, past, &r.cache, true};
  if (absl::Status s = RunForward({item}, &logits); !s.ok()) return s;
  r.stats.compute_ms = encode_ms + compute.ElapsedMs();
  r.logits_last = std::move(logits[0]);
  r.next_position = past + tail.size();
  r.stats.tokens_computed += tail.size();
  r.stats.flops_to_first_token += ForwardFlops(config(), tail.size(), past, true);
  return r;
}

absl::StatusOr<std::vector<std::vector<float>>> Engine::DecodeStep(
    absl::Span<const DecodeInput> batch) {
  std::vector<ForwardItem> items;
  items.reserve(batch.size());
  for (const DecodeInput& d : batch) {
    if (absl::Status s = CheckContext(d.position + 1); !s.ok()) return s;
    items.push_back(ForwardItem{absl::MakeConstSpan(&d.token, 1), d.position, d.cache, true});
  }
  std::vector<std::vector<float>> logits;
  if (absl::Status s = RunForward(items, &logits); !s.ok()) return s;
  return logits;
}

}  // namespace blockserve::engine
