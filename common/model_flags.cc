#include "common/model_flags.h"

#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "engine/memory.h"

ABSL_FLAG(std::string, model_dir, "",
          "Hugging Face model folder (config.json, *.safetensors, tokenizer.json); required. "
          "Every service of one deployment must serve the same model (fingerprints are compared)");
ABSL_FLAG(int, num_threads, 0, "compute threads of the CPU engine; 0: all cores");
ABSL_FLAG(std::string, kv_dtype, "bf16",
          "element type of KV end to end: the engine's caches, the KV store's values and the "
          "handoff to the decoder. bf16 (half the bytes of f32), f32 (exact: what the "
          "reference tests use) or f16 (stored as f16, computed in f32 caches)");

namespace blockserve {

absl::StatusOr<engine::DType> ParseKvDTypeFlag(std::string_view value) {
  const std::string v = absl::AsciiStrToLower(std::string(value));
  if (v == "bf16") return engine::DType::kBF16;
  if (v == "f16") return engine::DType::kF16;
  if (v == "f32") return engine::DType::kF32;
  return absl::InvalidArgumentError(
      absl::StrCat("--kv_dtype must be bf16, f16 or f32, got \"", std::string(value), "\""));
}

absl::StatusOr<engine::DType> KvDTypeFromFlags() {
  return ParseKvDTypeFlag(absl::GetFlag(FLAGS_kv_dtype));
}

engine::DType EngineKvDType(engine::DType kv_dtype) {
  return kv_dtype == engine::DType::kBF16 ? engine::DType::kBF16 : engine::DType::kF32;
}

absl::StatusOr<std::unique_ptr<engine::Engine>> LoadEngineFromFlags() {
  const std::string model_dir = absl::GetFlag(FLAGS_model_dir);
  if (model_dir.empty()) return absl::InvalidArgumentError("--model_dir is required");
  absl::StatusOr<engine::DType> kv_dtype = KvDTypeFromFlags();
  if (!kv_dtype.ok()) return kv_dtype.status();
  KeepFreedMemoryForReuse();
  absl::StatusOr<std::unique_ptr<engine::Engine>> engine =
      engine::Engine::Load(model_dir, {.num_threads = absl::GetFlag(FLAGS_num_threads),
                                       .kv_dtype = EngineKvDType(*kv_dtype)});
  if (!engine.ok()) {
    return absl::Status(engine.status().code(),
                        absl::StrCat("loading --model_dir ", model_dir, ": ",
                                     engine.status().message()));
  }
  return engine;
}

}  // namespace blockserve
