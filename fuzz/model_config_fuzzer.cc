// Fuzz target: config.json (engine/model_config.h), the first file a model folder is
// read by.
//
// Invariants: a failure is InvalidArgument or Unimplemented (FromJson's contract); a
// parsed config is valid, and ToJson writes a config.json that parses back to an equal
// config (the writer and the reader agree on every field).
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/model_config.h"
#include "fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using blockserve::engine::ModelConfig;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<ModelConfig> config = ModelConfig::FromJson(text);
  if (!config.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(config.status()) ||
               absl::IsUnimplemented(config.status()));
    return 0;
  }
  FUZZ_CHECK(config->Validate().ok());
  absl::StatusOr<ModelConfig> again = ModelConfig::FromJson(config->ToJson());
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(*again == *config);
  return 0;
}
