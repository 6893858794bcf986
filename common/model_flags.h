// The model flags of the servers that run the model (passage_encoder, query_prefill,
// decoder), defined once:
//   --model_dir     Hugging Face model folder (config.json, *.safetensors, tokenizer.json)
//   --num_threads   compute threads of the CPU engine (0: all cores)
//   --kv_dtype      element type of KV end to end (engine caches, store values, handoff):
//                   bf16 (default), f32, or f16 (stored f16, computed in f32 caches)
// List "common/model_flags" in ShowFlagsFromDirectories so --help shows them.
#ifndef BLOCKSERVE_COMMON_MODEL_FLAGS_H_
#define BLOCKSERVE_COMMON_MODEL_FLAGS_H_

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/engine.h"

namespace blockserve {

// A --kv_dtype value: "bf16", "f16" or "f32" (any case); InvalidArgument otherwise.
absl::StatusOr<engine::DType> ParseKvDTypeFlag(std::string_view value);
// ParseKvDTypeFlag of --kv_dtype.
absl::StatusOr<engine::DType> KvDTypeFromFlags();
// The engine cache dtype for a --kv_dtype: bf16 stays bf16; f16 and f32 are held as f32
// (the CPU kernels read f32 and bf16).
engine::DType EngineKvDType(engine::DType kv_dtype);

// Engine::Load of --model_dir with --num_threads and --kv_dtype, after KeepFreedMemoryForReuse
// (engine/memory.h: a serving process moves KV blocks). InvalidArgument naming the flag
// when --model_dir is empty; otherwise Engine::Load's errors.
absl::StatusOr<std::unique_ptr<engine::Engine>> LoadEngineFromFlags();

}  // namespace blockserve

#endif  // BLOCKSERVE_COMMON_MODEL_FLAGS_H_
