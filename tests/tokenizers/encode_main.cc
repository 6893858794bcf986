// encode: tokenizes texts with BlockServe's tokenizer for compare.js.
//
//   encode --model_dir DIR --texts TEXTS.json
//
// DIR holds tokenizer.json (and tokenizer_config.json etc., read by
// Tokenizer::FromModelDir); TEXTS.json is a JSON array of strings. Prints one JSON
// object: {"bos": id or null, "eos": [ids], "plain": [[ids] per text], "with_bos":
// [[ids] per text], "decoded": [Decode(plain ids) per text]}. A tokenizer that does
// not load is an error (exit 1) with its message on stderr.
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "engine/tokenizer.h"
#include <nlohmann/json.hpp>

ABSL_FLAG(std::string, model_dir, "", "folder with tokenizer.json");
ABSL_FLAG(std::string, texts, "", "JSON array of strings to encode");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string dir = absl::GetFlag(FLAGS_model_dir);
  absl::StatusOr<blockserve::engine::Tokenizer> tokenizer =
      blockserve::engine::Tokenizer::FromModelDir(dir);
  if (!tokenizer.ok()) {
    std::cerr << "encode: " << tokenizer.status() << "\n";
    return 1;
  }
  std::ifstream in(absl::GetFlag(FLAGS_texts), std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json texts = nlohmann::json::parse(text.str(), nullptr, false);
  if (!in || !texts.is_array()) {
    std::cerr << "encode: expected a JSON array of strings in --texts\n";
    return 1;
  }
  nlohmann::json out = {{"bos", nullptr},
                        {"eos", tokenizer->eos_ids()},
                        {"plain", nlohmann::json::array()},
                        {"with_bos", nlohmann::json::array()},
                        {"decoded", nlohmann::json::array()}};
  if (tokenizer->bos_id()) out["bos"] = *tokenizer->bos_id();
  for (const nlohmann::json& item : texts) {
    const std::string t = item.get<std::string>();
    const std::vector<int32_t> ids = tokenizer->Encode(t);
    out["plain"].push_back(ids);
    out["with_bos"].push_back(tokenizer->Encode(t, /*add_special_tokens=*/true));
    absl::StatusOr<std::string> decoded = tokenizer->Decode(ids);
    // Invalid UTF-8 cannot go into JSON; compare.js reports it as a mismatch.
    out["decoded"].push_back(decoded.ok() ? nlohmann::json(*decoded) : nlohmann::json());
  }
  std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  return 0;
}
