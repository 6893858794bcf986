// The Block-Attention engine: the operations the services are built from.
//
// A prompt is a list of blocks [b_1] ... [b_k] [last]. In block mode every b_i attends
// only to itself, so its KV is computed once at position 0 (EncodeBlock), cached, and
// at request time copied after its predecessors and rotated to its offset (ShiftBlock).
// Only `last` (the query) is computed fresh, attending to everything (PrefillLast).
// Decoding then proceeds over the whole sequence (DecodeStep). Nothing here knows about
// stores or the network; the services call this.
//
// Thread safety: all methods may be called from several threads; calls into the
// backend are serialized by the engine.
#ifndef BLOCKSERVE_ENGINE_ENGINE_H_
#define BLOCKSERVE_ENGINE_ENGINE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "engine/backend.h"
#include "engine/kv_cache.h"
#include "engine/model_config.h"
#include "engine/model_files.h"
#include "engine/tokenizer.h"
#include "engine/weights.h"

namespace blockserve::engine {

enum class AttentionMode {
  kBlock,  // passages attend to themselves only; the last block attends to all
  kFull,   // ordinary causal prefill over the whole prompt (the baseline)
};

struct PrefillOptions {
  AttentionMode mode = AttentionMode::kBlock;
  // Block mode: the last `global_blocks` passages are recomputed together with the query
  // under full causal attention (the paper's remedy for more blocks than seen in training).
  int64_t global_blocks = 0;
  // Block mode: rotate cached blocks to their offsets. Off only for the paper's ablation,
  // where every block keeps the positions it was encoded at (0..len-1).
  bool reencode_positions = true;
};

// One passage of the prompt. `tokens` are its ids; `cached`, when given, is its KV as
// returned by EncodeBlock (its tokens must equal `tokens`); when null the block is
// encoded during the request and counted as computed.
struct BlockInput {
  absl::Span<const int32_t> tokens;
  const KvCache* cached = nullptr;
};

struct RequestStats {
  int64_t tokens_reused = 0;    // tokens whose KV came from cache
  int64_t tokens_computed = 0;  // tokens run through the model for this request
  double flops_to_first_token = 0;
  double flops_full_prefill = 0;  // the same prompt under full prefill, for comparison
  int64_t kv_bytes_touched = 0;   // cached KV read + sequence KV written
  double fetch_ms = 0;            // filled by callers that fetch from a store
  // Copying the cached blocks into the sequence with their keys re-encoded (one fused
  // pass, Backend::AppendShifted); 0 without re-encoding.
  double shift_ms = 0;
  double compute_ms = 0;
};

struct PrefillResult {
  KvCache cache;               // KV of the whole prompt, ready for decoding
  int64_t next_position = 0;   // RoPE position of the next token
  std::vector<float> logits_last;
  RequestStats stats;
};

struct DecodeInput {
  KvCache* cache = nullptr;  // the sequence's KV; the token's row is appended
  int32_t token = 0;         // the token just sampled
  int64_t position = 0;      // its RoPE position
};

struct EngineOptions {
  int num_threads = 0;  // the CPU backend's threads (other backends ignore it); 0: all cores
  // Element type of every KV cache the engine makes (sequences, encoded blocks): kF32
  // (exact; the tests' reference) or kBF16 (half the bytes; the CPU backend only).
  DType kv_dtype = DType::kF32;
};

// Builds an engine's backend from the model's weights (taking ownership of them) and the
// engine's options. Engine::Load calls it once, before it returns.
using BackendFactory = absl::FunctionRef<absl::StatusOr<std::unique_ptr<Backend>>(
    ModelWeights, const EngineOptions&)>;

// Engine::Load's default factory: the CPU backend on options.num_threads threads.
absl::StatusOr<std::unique_ptr<Backend>> CpuBackendFactory(ModelWeights weights,
                                                           const EngineOptions& options);

// A 64-bit identity of a model: its config.json (as normalized by ModelConfig::ToJson)
// and the content hash of its weights. Reads every weight byte once.
uint64_t ModelFingerprint(const ModelFiles& files);

class Engine {
 public:
  // Loads config.json, the safetensors weights and tokenizer.json from `model_dir` and
  // runs the model on the backend `make_backend` builds from the weights (e.g. the CUDA
  // one: engine/cuda/cuda_backend.h). InvalidArgument for a tokenizer with more tokens
  // than config.json's vocab_size; the files' errors and the factory's as they come.
  static absl::StatusOr<std::unique_ptr<Engine>> Load(
      const std::string& model_dir, const EngineOptions& options = {},
      BackendFactory make_backend = CpuBackendFactory);
  // `model_fingerprint` identifies the weights and config (see ModelFingerprint).
  // `kv_dtype` must be one the backend holds (Load checks; here it is an assert).
  Engine(Tokenizer tokenizer, std::unique_ptr<Backend> backend, uint64_t model_fingerprint = 0,
         DType kv_dtype = DType::kF32);

  const ModelConfig& config() const { return backend_->config(); }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  KvShape kv_shape() const;
  // The element type of the KV caches the engine makes. Cached blocks of another dtype
  // are accepted and converted when copied into a sequence.
  DType kv_dtype() const { return kv_dtype_; }
  // Two models share cached KV only if their fingerprints are equal.
  uint64_t model_fingerprint() const { return model_fingerprint_; }
  // Ids that end generation: config's eos_token_id(s) and the tokenizer's EOS.
  const std::vector<int32_t>& eos_ids() const { return eos_ids_; }

  // KV of `tokens` computed alone at positions 0..n-1.
  absl::StatusOr<KvCache> EncodeBlock(absl::Span<const int32_t> tokens);

  // Rotates `block`'s keys so that its first token sits at `new_start` (in place).
  void ShiftBlock(KvCache& block, int64_t new_start);

  // Builds the prompt's KV from `blocks` and computes `last` over it; returns the
  // sequence KV and the logits of the last position. InvalidArgument for an empty
  // `last`, a prompt longer than the model's context, global_blocks outside
  // [0, blocks.size()], or a cached block whose tokens or shape do not match.
  absl::StatusOr<PrefillResult> PrefillLast(absl::Span<const BlockInput> blocks,
                                            absl::Span<const int32_t> last,
                                            const PrefillOptions& options = {});

  // One token for each of several sequences, batched: returns each one's next-token
  // logits and appends the token's KV to its cache.
  absl::StatusOr<std::vector<std::vector<float>>> DecodeStep(absl::Span<const DecodeInput> batch);

 private:
  absl::Status CheckContext(int64_t total_tokens) const;
  absl::StatusOr<PrefillResult> PrefillFull(absl::Span<const BlockInput> blocks,
                                            absl::Span<const int32_t> last);
  absl::StatusOr<PrefillResult> PrefillBlocks(absl::Span<const BlockInput> blocks,
                                              absl::Span<const int32_t> last,
                                              const PrefillOptions& options);
  absl::Status RunForward(absl::Span<const ForwardItem> batch,
                          std::vector<std::vector<float>>* logits);

  Tokenizer tokenizer_;
  std::unique_ptr<Backend> backend_;
  std::vector<int32_t> eos_ids_;
  uint64_t model_fingerprint_;
  DType kv_dtype_;
  absl::Mutex backend_mu_;
};

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_ENGINE_H_
