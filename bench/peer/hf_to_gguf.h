// Converts a Hugging Face Llama folder (config.json, safetensors, tokenizer.json), read by
// the engine's own loaders, into GGUF for llama.cpp (architecture "llama"), so that
// bench/peer compares the two engines on the same weights.
//
// Supported: model_type "llama" without biases, sliding windows or RoPE scaling; tied or
// untied embeddings; a byte-level BPE tokenizer.json (model BPE, a ByteLevel pre-tokenizer
// with the GPT-2 split regex, no normalizer, no byte fallback): the tokenizer of the
// engine's random models (engine/tiny_model.h) and of models/blockserve-tiny-rag.
// Anything else is refused with FailedPrecondition naming what is unsupported.
//
// Weights: 2-D matrices as F32 or F16 (the choice), norms always F32 (as llama.cpp's own
// converter does). q_proj and k_proj rows are permuted for ggml's RoPE
// (PermuteRowsForGgmlRope), so logits match the engine's.
#ifndef BLOCKSERVE_BENCH_PEER_HF_TO_GGUF_H_
#define BLOCKSERVE_BENCH_PEER_HF_TO_GGUF_H_

#include <string>

#include "absl/status/statusor.h"
#include "bench/peer/gguf_writer.h"

namespace blockserve::bench {

struct HfToGgufOptions {
  GgmlType matrix_type = GgmlType::kF32;  // the 2-D weight matrices, token_embd included
  // false only for check.sh's negative control: a GGUF whose q/k rows are NOT permuted must
  // fail the logits comparison (else the check could not catch a wrong permutation).
  bool permute_qk = true;
};

// The GGUF of the model folder `dir`, ready to Write().
absl::StatusOr<GgufWriter> HfFolderToGguf(const std::string& dir, const HfToGgufOptions& options);

}  // namespace blockserve::bench

#endif  // BLOCKSERVE_BENCH_PEER_HF_TO_GGUF_H_
