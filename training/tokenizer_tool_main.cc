// tokenizer_tool: the trainer's bridge to BlockServe's tokenizer.
//
//   --mode train:  trains a byte-level BPE on --corpus (engine/bpe_trainer.h) with
//                  --merges merges and the Llama 3 BOS/EOS specials; writes --out.
//   --mode info:   prints {"vocab_size", "bos", "eos"} of --tokenizer.
//   --mode encode: reads JSONL examples {"system", "passages": [...], "query", "answer"?}
//                  from --in and writes one JSON line per example to --out:
//                  {"blocks": [[system block], [passage 1], ...], "query": [...],
//                   "answer": [...]}, laid out exactly as engine/prompt.h lays out a
//                  request (the answer is Encode(answer), without EOS). Training rows
//                  with several questions on the same passages carry "queries" and
//                  "answers" lists instead and get lists of id lists back; optional
//                  "bridges" and "subjects" lists (texts, encoded like answers) come
//                  back the same way.
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/bpe_trainer.h"
#include "engine/prompt.h"
#include "engine/tokenizer.h"
#include <nlohmann/json.hpp>

ABSL_FLAG(std::string, mode, "", "train | info | encode");
ABSL_FLAG(std::string, corpus, "", "train: corpus text file");
ABSL_FLAG(int, merges, 800, "train: number of BPE merges");
ABSL_FLAG(std::string, tokenizer, "", "info/encode: tokenizer.json to use");
ABSL_FLAG(std::string, in, "", "encode: input JSONL of examples");
ABSL_FLAG(std::string, out, "", "train: tokenizer.json to write; encode: output JSONL");

namespace blockserve::training {
namespace {

using engine::Tokenizer;

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::Status Train() {
  absl::StatusOr<std::string> corpus = ReadFile(absl::GetFlag(FLAGS_corpus));
  if (!corpus.ok()) return corpus.status();
  absl::StatusOr<std::string> json = engine::TrainByteLevelBpeJson(
      *corpus, absl::GetFlag(FLAGS_merges), {"<|begin_of_text|>", "<|end_of_text|>"});
  if (!json.ok()) return json.status();
  std::ofstream out(absl::GetFlag(FLAGS_out), std::ios::binary);
  out << *json;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", absl::GetFlag(FLAGS_out)));
  return absl::OkStatus();
}

absl::Status Info(const Tokenizer& tokenizer) {
  nlohmann::json info = {{"vocab_size", tokenizer.vocab_size()},
                         {"bos", tokenizer.bos_id() ? *tokenizer.bos_id() : -1},
                         {"eos", tokenizer.eos_id() ? *tokenizer.eos_id() : -1}};
  std::cout << info.dump() << "\n";
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::json> EncodeExample(const Tokenizer& tokenizer, const nlohmann::json& ex) {
  if (!ex.is_object() || !ex.contains("passages") ||
      !(ex.contains("query") || ex.contains("queries"))) {
    return absl::InvalidArgumentError(
        "expected an object with \"passages\" and \"query\" or \"queries\"");
  }
  nlohmann::json blocks = nlohmann::json::array();
  const std::string system = ex.value("system", "");
  std::vector<int32_t> system_block = engine::SystemBlockTokens(tokenizer, system);
  if (!system_block.empty()) blocks.push_back(system_block);
  for (const auto& passage : ex["passages"]) {
    blocks.push_back(engine::PassageBlockTokens(tokenizer, passage.get<std::string>()));
  }
  nlohmann::json out = {{"blocks", blocks}};
  if (ex.contains("query")) {
    out["query"] = engine::QueryBlockTokens(tokenizer, ex["query"].get<std::string>());
  }
  if (ex.contains("answer")) out["answer"] = tokenizer.Encode(ex["answer"].get<std::string>());
  for (const char* key : {"queries", "answers", "bridges", "subjects"}) {
    if (!ex.contains(key)) continue;
    nlohmann::json& list = out[key] = nlohmann::json::array();
    for (const auto& text : ex[key]) {
      list.push_back(key[0] == 'q' ? engine::QueryBlockTokens(tokenizer, text.get<std::string>())
                                   : tokenizer.Encode(text.get<std::string>()));
    }
  }
  return out;
}

absl::Status Encode(const Tokenizer& tokenizer) {
  std::ifstream in(absl::GetFlag(FLAGS_in));
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", absl::GetFlag(FLAGS_in)));
  std::ofstream out(absl::GetFlag(FLAGS_out));
  std::string line;
  for (int64_t line_no = 1; std::getline(in, line); ++line_no) {
    if (line.empty()) continue;
    nlohmann::json ex = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    absl::StatusOr<nlohmann::json> encoded =
        ex.is_discarded() ? absl::InvalidArgumentError("invalid JSON") : EncodeExample(tokenizer, ex);
    if (!encoded.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(absl::GetFlag(FLAGS_in), ":", line_no, ": ", encoded.status().message()));
    }
    out << encoded->dump() << "\n";
  }
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", absl::GetFlag(FLAGS_out)));
  return absl::OkStatus();
}

absl::Status Run() {
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (mode == "train") return Train();
  if (mode != "info" && mode != "encode") {
    return absl::InvalidArgumentError(absl::StrCat("--mode must be train, info or encode, got '",
                                                   mode, "'"));
  }
  // The tool's tokenizers are its own (--mode train): their BOS and EOS are the two
  // specials it trains with; tokenizer.json alone does not say so.
  engine::SpecialTokenConfig special;
  special.bos_token = "<|begin_of_text|>";
  special.eos_token = "<|end_of_text|>";
  special.add_bos_token = true;
  absl::StatusOr<Tokenizer> tokenizer =
      Tokenizer::FromFile(absl::GetFlag(FLAGS_tokenizer), special);
  if (!tokenizer.ok()) return tokenizer.status();
  return mode == "info" ? Info(*tokenizer) : Encode(*tokenizer);
}

}  // namespace
}  // namespace blockserve::training

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Trains or applies BlockServe's byte-level BPE for the training scripts.\n"
      "Usage: tokenizer_tool --mode train --corpus FILE --merges N --out tokenizer.json\n"
      "       tokenizer_tool --mode info --tokenizer tokenizer.json\n"
      "       tokenizer_tool --mode encode --tokenizer tokenizer.json --in X.jsonl --out Y.jsonl");
  absl::ParseCommandLine(argc, argv);
  if (absl::Status s = blockserve::training::Run(); !s.ok()) {
    std::cerr << "tokenizer_tool: " << s << "\n";
    return 1;
  }
  return 0;
}
