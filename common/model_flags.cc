#include "common/model_flags.h"

#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "engine/memory.h"

ABSL_FLAG(std::string, model_dir, "",
          "Hugging Face model folder (config.json, *.safetensors, tokenizer.json); required. "
          "Every service of one deployment must serve the same model (fingerprints are compared)");
ABSL_FLAG(int, num_threads, 0, "compute threads of the CPU engine; 0: all cores");

namespace blockserve {

absl::StatusOr<std::unique_ptr<engine::Engine>> LoadEngineFromFlags() {
  const std::string model_dir = absl::GetFlag(FLAGS_model_dir);
  if (model_dir.empty()) return absl::InvalidArgumentError("--model_dir is required");
  KeepFreedMemoryForReuse();
  absl::StatusOr<std::unique_ptr<engine::Engine>> engine =
      engine::Engine::Load(model_dir, {.num_threads = absl::GetFlag(FLAGS_num_threads)});
  if (!engine.ok()) {
    return absl::Status(engine.status().code(),
                        absl::StrCat("loading --model_dir ", model_dir, ": ",
                                     engine.status().message()));
  }
  return engine;
}

}  // namespace blockserve
