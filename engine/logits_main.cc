// logits: prints the last position's logits of a block-attention request as JSON.
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "engine/engine.h"
#include "engine/logits_request.h"

ABSL_FLAG(std::string, model, "", "Hugging Face model folder (config.json, *.safetensors, tokenizer.json)");
ABSL_FLAG(std::string, request, "-",
          "request JSON file, or - for standard input: "
          "{\"blocks\": [[ids...], ..., [query ids...]], \"mode\": \"block\"|\"full\", "
          "\"global_blocks\": n}");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Prints {\"logits_last\": [...]} for a request, to debug the engine and compare it "
      "with other implementations.\nUsage: logits --model DIR [--request FILE]");
  absl::ParseCommandLine(argc, argv);
  const std::string model = absl::GetFlag(FLAGS_model), path = absl::GetFlag(FLAGS_request);
  if (model.empty()) {
    std::cerr << "logits: --model is required (see --help)\n";
    return 2;
  }
  std::stringstream text;
  if (path == "-") {
    text << std::cin.rdbuf();
  } else {
    std::ifstream in(path);
    if (!in) {
      std::cerr << "logits: cannot read " << path << "\n";
      return 2;
    }
    text << in.rdbuf();
  }
  absl::StatusOr<blockserve::engine::LogitsRequest> request =
      blockserve::engine::ParseLogitsRequest(text.str());
  if (!request.ok()) {
    std::cerr << "logits: bad request: " << request.status().message() << "\n";
    return 2;
  }
  absl::StatusOr<std::unique_ptr<blockserve::engine::Engine>> engine =
      blockserve::engine::Engine::Load(model);
  if (!engine.ok()) {
    std::cerr << "logits: cannot load model: " << engine.status().message() << "\n";
    return 1;
  }
  absl::StatusOr<std::string> out = RunLogitsRequest(**engine, *request);
  if (!out.ok()) {
    std::cerr << "logits: " << out.status().message() << "\n";
    return 1;
  }
  std::cout << *out << "\n";
  return 0;
}
