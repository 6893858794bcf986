// hf_to_gguf: writes a GGUF (llama.cpp's model file) of a Hugging Face Llama folder; see
// hf_to_gguf.h for what is supported.
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "bench/peer/hf_to_gguf.h"

ABSL_FLAG(std::string, model, "", "Hugging Face model folder (config.json, *.safetensors, tokenizer.json)");
ABSL_FLAG(std::string, out, "", "GGUF file to write");
ABSL_FLAG(std::string, type, "f32", "type of the weight matrices: f32 or f16 (norms stay f32)");
ABSL_FLAG(bool, permute_qk, true,
          "permute q/k rows for ggml's RoPE; false writes a deliberately wrong file (check.sh's "
          "negative control)");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Converts a Hugging Face Llama folder to GGUF v3 for llama.cpp.\n"
      "Usage: hf_to_gguf --model DIR --out FILE.gguf [--type f32|f16]");
  absl::ParseCommandLine(argc, argv);
  const std::string model = absl::GetFlag(FLAGS_model), out = absl::GetFlag(FLAGS_out),
                    type = absl::GetFlag(FLAGS_type);
  if (model.empty() || out.empty() || (type != "f32" && type != "f16")) {
    std::cerr << "hf_to_gguf: --model, --out and --type f32|f16 are required (see --help)\n";
    return 2;
  }
  namespace bb = blockserve::bench;
  absl::StatusOr<bb::GgufWriter> gguf =
      bb::HfFolderToGguf(model, {.matrix_type = type == "f32" ? bb::GgmlType::kF32 : bb::GgmlType::kF16,
                                 .permute_qk = absl::GetFlag(FLAGS_permute_qk)});
  if (!gguf.ok()) return std::cerr << gguf.status() << "\n", 1;
  if (absl::Status s = gguf->WriteFile(out); !s.ok()) return std::cerr << s << "\n", 1;
  std::cerr << "wrote " << out << "\n";
  return 0;
}
