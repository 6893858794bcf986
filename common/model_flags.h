// The model flags of the servers that run the model (passage_encoder, query_prefill,
// decoder), defined once:
//   --model_dir     Hugging Face model folder (config.json, *.safetensors, tokenizer.json)
//   --num_threads   compute threads of the CPU engine (0: all cores)
// List "common/model_flags" in ShowFlagsFromDirectories so --help shows them.
#ifndef BLOCKSERVE_COMMON_MODEL_FLAGS_H_
#define BLOCKSERVE_COMMON_MODEL_FLAGS_H_

#include <memory>

#include "absl/status/statusor.h"
#include "engine/engine.h"

namespace blockserve {

// Engine::Load of --model_dir with --num_threads, after KeepFreedMemoryForReuse
// (engine/memory.h: a serving process moves KV blocks). InvalidArgument naming the flag
// when --model_dir is empty; otherwise Engine::Load's errors.
absl::StatusOr<std::unique_ptr<engine::Engine>> LoadEngineFromFlags();

}  // namespace blockserve

#endif  // BLOCKSERVE_COMMON_MODEL_FLAGS_H_
