// ttft_services_bench: the TTFT experiment end to end through the services. It starts
// passage_encoder, query_prefill, decoder and router as real processes on loopback
// (one shared-memory KV store), ingests ~150-token passages, and asks a fixed ~50-token
// query over a growing number of them, in block mode (every passage cached) and in full
// mode, reading TTFT as the router measures it (request received -> first token sent).
// Next to ttft_bench's in-process table this shows what the services add.
//
// It reuses the end-to-end tests' process launcher (tests/blockserve_system.h), which
// is test-only code, so this binary is marked testonly; run it with `bazel run`.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "engine/tiny_model.h"
#include "engine/tokenizer.h"
#include "bench/summary.h"
#include "tests/blockserve_system.h"

ABSL_FLAG(std::string, shape, "small", "model shape: tiny | small (see ttft_bench)");
ABSL_FLAG(std::string, lengths, "512,1024,2048,4096,8192", "total prompt lengths in tokens");
ABSL_FLAG(int, passage_tokens, 150, "tokens per passage");
ABSL_FLAG(int, query_tokens, 50, "tokens in the query (approximately: it is text)");
ABSL_FLAG(int, repeats, 3, "timed requests per cell");
ABSL_FLAG(std::string, out, "bench/results", "folder for ttft_services_<tag>.{md,csv}");
ABSL_FLAG(std::string, tag, "", "suffix for the result files (default: the shape)");

namespace bs = blockserve;
namespace v1 = blockserve::v1;

namespace {

using Cell = blockserve::bench::Summary;
using blockserve::bench::Summarize;

// A query of about `n` tokens: a question padded with context words.
std::string QueryText(const bs::engine::Tokenizer& tok, int n) {
  std::string q = "Given the passages above, which of them mention the river and the city";
  while (static_cast<int>(tok.Encode(q).size()) < n - 2) q += " and the year";
  return q + "? Answer:";
}

int Run() {
  const std::string shape = absl::GetFlag(FLAGS_shape);
  std::vector<int64_t> lengths;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_lengths), ',')) {
    int64_t v;
    if (!absl::SimpleAtoi(s, &v)) return std::cerr << "bad --lengths entry " << s << "\n", 2;
    lengths.push_back(v);
  }
  bs::engine::TinyModelOptions o;
  o.max_position_embeddings = std::max<int64_t>(*std::max_element(lengths.begin(), lengths.end()) + 256, 4096);
  if (shape == "small") {
    o.hidden_size = 256, o.intermediate_size = 768, o.num_layers = 4, o.num_heads = 8, o.num_kv_heads = 2;
  } else if (shape != "tiny") {
    return std::cerr << "unknown --shape " << shape << "\n", 2;
  }
  const std::string model_dir =
      (std::filesystem::temp_directory_path() / ("blockserve-ttft-services-" + shape)).string();
  if (absl::Status s = bs::engine::WriteTinyModel(model_dir, o); !s.ok()) return std::cerr << s << "\n", 1;
  absl::StatusOr<bs::engine::Tokenizer> tok = bs::engine::Tokenizer::FromFile(model_dir + "/tokenizer.json");
  if (!tok.ok()) return std::cerr << tok.status() << "\n", 1;

  bs::testing::SystemOptions so;
  so.model_dir = model_dir;
  // Large prompts: room in the store and the decoder for the longest one.
  so.encoder_args = {"--shm_capacity_bytes=4294967296"};  // KV f32: SystemOptions::kv_dtype
  so.prefill_args = so.encoder_args;
  absl::StatusOr<std::unique_ptr<bs::testing::BlockServeSystem>> sys =
      bs::testing::BlockServeSystem::Start(so);
  if (!sys.ok()) return std::cerr << "starting the services: " << sys.status() << "\n", 1;

  const std::string query = QueryText(*tok, absl::GetFlag(FLAGS_query_tokens));
  const int64_t p_len = absl::GetFlag(FLAGS_passage_tokens);
  const int64_t q_len = tok->Encode(query).size();
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<int32_t> id(0, 255);  // byte tokens: every id is valid
  std::string table =
      "| tokens | passages | full TTFT ms | block TTFT ms | TTFT vs full | reused / computed (block) |\n"
      "|---:|---:|---:|---:|---:|---:|\n";
  std::string csv = "tokens,passages,mode,median_ms,min_ms,max_ms\n";
  std::cout << table << std::flush;
  for (int64_t len : lengths) {
    const int64_t k = std::max<int64_t>(1, (len - q_len - 1) / p_len);
    std::vector<v1::Passage> passages(k);
    v1::GenerateRequest request;
    request.set_query(query);
    request.mutable_sampling()->set_max_new_tokens(1);
    for (int64_t i = 0; i < k; ++i) {
      passages[i].set_id(absl::StrCat("len", len, "-", i));
      for (int64_t t = 0; t < p_len; ++t) passages[i].mutable_token_ids()->add_ids(id(rng));
      request.add_passages()->set_passage_id(passages[i].id());
    }
    if (absl::StatusOr<v1::IngestResponse> r = (*sys)->Ingest(passages); !r.ok()) {
      return std::cerr << "ingest: " << r.status() << "\n", 1;
    }
    Cell cells[2];
    uint64_t reused = 0, computed = 0;
    for (int mode = 0; mode < 2; ++mode) {
      request.mutable_block_options()->set_mode(mode == 0 ? v1::ATTENTION_MODE_FULL : v1::ATTENTION_MODE_BLOCK);
      std::vector<double> ttft;
      for (int r = 0; r < absl::GetFlag(FLAGS_repeats); ++r) {
        bs::testing::GenerateResult g = bs::testing::Generate((*sys)->router(), request, absl::Minutes(20));
        if (!g.status.ok() || !g.summary) {
          return std::cerr << "generate: " << g.status.error_message() << "\n", 1;
        }
        ttft.push_back(g.summary->ttft_ms());
        reused = g.summary->tokens_reused(), computed = g.summary->tokens_computed();
      }
      cells[mode] = Summarize(ttft);
      absl::StrAppend(&csv, absl::StrFormat("%d,%d,%s,%.3f,%.3f,%.3f\n", reused + computed, k,
                                            mode == 0 ? "full" : "block_cached", cells[mode].median,
                                            cells[mode].min, cells[mode].max));
    }
    const std::string row = absl::StrFormat(
        "| %d | %d | %.1f (%.1f–%.1f) | %.1f (%.1f–%.1f) | %+.1f%% | %d / %d |\n", reused + computed,
        k, cells[0].median, cells[0].min, cells[0].max, cells[1].median, cells[1].min, cells[1].max,
        100 * (cells[1].median / cells[0].median - 1), reused, computed);
    std::cout << row << std::flush;
    table += row;
  }
  if (absl::Status s = (*sys)->Shutdown(); !s.ok()) std::cerr << "shutdown: " << s << "\n";
  const std::string tag = absl::GetFlag(FLAGS_tag).empty() ? shape : absl::GetFlag(FLAGS_tag);
  const std::string out = absl::GetFlag(FLAGS_out);
  std::filesystem::create_directories(out);
  std::ofstream(out + "/ttft_services_" + tag + ".md")
      << "# TTFT through the services: router -> query_prefill -> first token (" << tag << ")\n\n"
      << "Random-weight " << shape << "-shape model, CPU, one process per service on loopback, "
      << "shared-memory store (f32). TTFT as measured by the router; median (min–max) of "
      << absl::GetFlag(FLAGS_repeats) << " requests, ms.\n\n" << table;
  std::ofstream(out + "/ttft_services_" + tag + ".csv") << csv;
  std::cerr << "wrote " << out << "/ttft_services_" << tag << ".{md,csv}\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "TTFT of block-attention vs full prefill end to end through the four services.\n"
      "Usage: bazel run -c opt //bench/ttft:ttft_services_bench -- --out $PWD/bench/results");
  absl::ParseCommandLine(argc, argv);
  return Run();
}
