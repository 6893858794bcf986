// The compute backend interface: everything that touches the model's math at scale.
//
// One operation runs the transformer: `Forward` takes a batch of items, each a run of
// new tokens for one sequence, appends their K/V to that sequence's cache and, where
// asked, returns the logits of the item's last token. Every Block-Attention operation
// is a Forward with a different past:
//   encode a block      = tokens at positions 0.., empty cache;
//   prefill last block  = query tokens after the shifted blocks' cache;
//   full prefill        = all tokens, empty cache;
//   decode step         = one token per sequence, many sequences batched.
// New tokens attend to every row already in the cache and causally to each other.
//
// Implementations: the CPU backend (cpu_backend.cc, fp32, the one tested for exactness)
// and the CUDA backend (engine/cuda/, bf16 weights; compiled in CI but never run on a
// GPU, see engine/cuda/README.md). Forward checks the batch once, here, and hands only
// valid batches to the implementation's DoForward, so no backend repeats the checks.
#ifndef BLOCKSERVE_ENGINE_BACKEND_H_
#define BLOCKSERVE_ENGINE_BACKEND_H_

#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/kv_cache.h"
#include "engine/weights.h"

namespace blockserve::engine {

struct ForwardItem {
  absl::Span<const int32_t> tokens;  // new tokens, at least one
  int64_t first_position = 0;        // RoPE position of tokens[0]
  KvCache* cache = nullptr;          // in: past rows; out: the new tokens' rows appended
  bool want_logits = false;          // compute logits of the last new token
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;
  virtual const ModelConfig& config() const = 0;

  // Runs the batch. `logits` gets one entry per item: the vocab-sized logits of its
  // last token if want_logits, else empty; an empty batch gives no logits. Fails with
  // InvalidArgument, before changing any cache, when an item has no tokens, no cache, a
  // cache another item also uses, a cache of the wrong shape or of a KV dtype the
  // backend does not hold (SupportsKvDType), or a token outside
  // [0, vocab_size). Any other failure is the backend's own (e.g. Internal for a CUDA
  // error) and also leaves every cache as it was.
  absl::Status Forward(absl::Span<const ForwardItem> batch,
                       std::vector<std::vector<float>>* logits);

  // Re-encodes rows [first_row, first_row + count) of every layer's keys by `delta`
  // positions (RoPE rotation; values untouched), in place.
  virtual void ShiftKeys(KvCache& cache, int64_t first_row, int64_t count, int64_t delta) = 0;

  // Appends `block`'s rows to `cache` with their keys re-encoded by `delta` positions:
  // AppendCopy then ShiftKeys on the new rows, which a backend may fuse into one pass
  // where that is faster.
  // Shapes must match; dtypes may differ (converted as AppendCopy does).
  virtual void AppendShifted(KvCache& cache, const KvCache& block, int64_t delta) {
    const int64_t first = cache.num_tokens();
    cache.AppendCopy(block);
    ShiftKeys(cache, first, block.num_tokens(), delta);
  }

  // Whether Forward and ShiftKeys take caches holding `dtype`. fp32 everywhere; the CPU
  // backend also reads and writes bf16 KV.
  virtual bool SupportsKvDType(DType dtype) const { return dtype == DType::kF32; }

 private:
  // Forward's work, given a batch Forward has checked: non-empty, each item with its own
  // cache of the model's shape and a supported dtype and at least one token, all in the vocabulary. Same
  // contract for `logits` as Forward; on failure every cache must be left as it was.
  virtual absl::Status DoForward(absl::Span<const ForwardItem> batch,
                                 std::vector<std::vector<float>>* logits) = 0;
};

struct CpuBackendOptions {
  int num_threads = 0;  // 0: all cores
};

// Takes ownership of the weights.
std::unique_ptr<Backend> CreateCpuBackend(ModelWeights weights, CpuBackendOptions options = {});

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_BACKEND_H_
