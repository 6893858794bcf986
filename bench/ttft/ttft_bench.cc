// ttft_bench: the paper's TTFT experiment, in process. The query is fixed (50 tokens by
// default) and the number of ~150-token passages grows so the prompt goes from 512 to
// 32K tokens; for each length it measures time to first token of
//   full            ordinary causal prefill over the whole prompt (the baseline),
//   block_cached    Block-Attention with every passage's KV already cached,
//   block_uncached  Block-Attention with nothing cached (each passage encoded alone),
//   query_only      the query with no passages at all (the floor),
// and reports median, min and max over repeats, analytic FLOPs to first token, and
// the reductions versus full. Writes a Markdown table and a CSV.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "engine/memory.h"
#include "engine/engine.h"
#include "engine/sampling.h"
#include "engine/stopwatch.h"
#include "engine/tiny_model.h"

ABSL_FLAG(std::string, shape, "small",
          "model shape: tiny (2 layers, hidden 64), small (4 layers, hidden 256), "
          "medium (8 layers, hidden 512), llama3-8b (32 layers, hidden 4096, 32/8 heads, "
          "MLP 14336; for big machines)");
ABSL_FLAG(std::string, model_dir, "", "use this model folder instead of a random one");
ABSL_FLAG(std::string, lengths, "512,1024,2048,4096,8192,16384,32768",
          "total prompt lengths in tokens");
ABSL_FLAG(int, passage_tokens, 150, "tokens per passage");
ABSL_FLAG(int, query_tokens, 50, "tokens in the query");
ABSL_FLAG(int, repeats, 3, "timed runs per cell (median, min, max reported)");
ABSL_FLAG(double, max_cell_seconds, 120,
          "a cell whose first run takes longer is not repeated (its n is shown)");
ABSL_FLAG(std::string, modes, "full,block_cached,block_uncached,query_only", "modes to run");
ABSL_FLAG(std::string, out, "bench/results", "folder for ttft_<shape>.md and .csv");
ABSL_FLAG(std::string, tag, "", "suffix for the result file names (default: the shape)");

namespace be = blockserve::engine;

namespace {

struct Cell {
  double median_ms = 0, min_ms = 0, max_ms = 0, flops = 0;
  int runs = 0;
  bool ran = false;
};

absl::StatusOr<be::TinyModelOptions> ShapeOptions(const std::string& shape, int64_t max_len) {
  be::TinyModelOptions o;
  o.max_position_embeddings = std::max<int64_t>(max_len + 64, 4096);
  if (shape == "tiny") return o;
  if (shape == "small") {
    o.hidden_size = 256, o.intermediate_size = 768, o.num_layers = 4, o.num_heads = 8, o.num_kv_heads = 2;
  } else if (shape == "medium") {
    o.hidden_size = 512, o.intermediate_size = 1536, o.num_layers = 8, o.num_heads = 8, o.num_kv_heads = 2;
  } else if (shape == "llama3-8b") {
    o.hidden_size = 4096, o.intermediate_size = 14336, o.num_layers = 32, o.num_heads = 32, o.num_kv_heads = 8;
    o.rope_theta = 500000;
    o.dtype = be::DType::kBF16;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown --shape ", shape));
  }
  return o;
}

std::vector<int32_t> RandomTokens(std::mt19937_64& rng, int64_t n, int64_t vocab) {
  std::uniform_int_distribution<int32_t> d(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> t(n);
  for (int32_t& x : t) x = d(rng);
  return t;
}

template <typename F>
absl::StatusOr<Cell> Time(int repeats, F&& run) {
  std::vector<double> ms;
  Cell c;
  for (int r = 0; r < repeats; ++r) {
    const blockserve::Stopwatch clock;
    absl::StatusOr<double> flops = run();
    if (!flops.ok()) return flops.status();
    ms.push_back(clock.ElapsedMs());
    c.flops = *flops;
    if (ms.back() > 1000 * absl::GetFlag(FLAGS_max_cell_seconds)) break;
  }
  c.runs = static_cast<int>(ms.size());
  std::sort(ms.begin(), ms.end());
  c.median_ms = ms[ms.size() / 2], c.min_ms = ms.front(), c.max_ms = ms.back(), c.ran = true;
  return c;
}

// TTFT = prefill + sampling the first token (greedy).
absl::StatusOr<double> Ttft(be::Engine& engine, const std::vector<be::BlockInput>& blocks,
                            const std::vector<int32_t>& query, be::AttentionMode mode) {
  absl::StatusOr<be::PrefillResult> r = engine.PrefillLast(blocks, query, {.mode = mode});
  if (!r.ok()) return r.status();
  be::Sampler sampler({});
  (void)sampler.Sample(r->logits_last);
  return r->stats.flops_to_first_token;
}

std::string Fmt(const Cell& c) {
  if (!c.ran) return "n/a";
  if (c.runs == 1) return absl::StrFormat("%.1f (n=1)", c.median_ms);
  return absl::StrFormat("%.1f (%.1f–%.1f)", c.median_ms, c.min_ms, c.max_ms);
}

std::string command_line;  // recorded in the results file

int Run() {
  std::vector<int64_t> lengths;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_lengths), ',')) {
    int64_t v;
    if (!absl::SimpleAtoi(s, &v) || v <= absl::GetFlag(FLAGS_query_tokens)) {
      std::cerr << "ttft_bench: bad --lengths entry '" << s << "'\n";
      return 2;
    }
    lengths.push_back(v);
  }
  const std::string modes = absl::GetFlag(FLAGS_modes);
  auto want = [&](const char* m) { return modes.find(m) != std::string::npos; };
  const std::string shape = absl::GetFlag(FLAGS_shape);
  std::string dir = absl::GetFlag(FLAGS_model_dir);
  if (dir.empty()) {
    absl::StatusOr<be::TinyModelOptions> o =
        ShapeOptions(shape, *std::max_element(lengths.begin(), lengths.end()));
    if (!o.ok()) return std::cerr << "ttft_bench: " << o.status().message() << "\n", 2;
    dir = (std::filesystem::temp_directory_path() / ("blockserve-ttft-" + shape)).string();
    std::cerr << "writing a random-weight " << shape << " model to " << dir << "\n";
    if (absl::Status s = be::WriteTinyModel(dir, *o); !s.ok()) return std::cerr << s << "\n", 1;
  }
  absl::StatusOr<std::unique_ptr<be::Engine>> loaded = be::Engine::Load(dir);
  if (!loaded.ok()) return std::cerr << "ttft_bench: " << loaded.status() << "\n", 1;
  be::Engine& engine = **loaded;
  const be::ModelConfig& c = engine.config();
  const int repeats = absl::GetFlag(FLAGS_repeats);
  const int64_t p_len = absl::GetFlag(FLAGS_passage_tokens), q_len = absl::GetFlag(FLAGS_query_tokens);
  std::mt19937_64 rng(1);
  const std::vector<int32_t> query = RandomTokens(rng, q_len, c.vocab_size);

  const std::string header = absl::StrFormat(
      "| tokens | passages | full ms | block cached ms | block uncached ms | query only ms | "
      "TTFT vs full | FLOPs full | FLOPs block | FLOPs vs full |\n"
      "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  std::string table = header, csv =
      "tokens,passages,mode,median_ms,min_ms,max_ms,flops\n";
  std::cout << header << std::flush;
  for (int64_t len : lengths) {
    const int64_t k = (len - q_len) / p_len;
    std::vector<std::vector<int32_t>> passages;
    std::vector<be::KvCache> cached;
    for (int64_t i = 0; i < k; ++i) passages.push_back(RandomTokens(rng, p_len, c.vocab_size));
    if (want("block_cached")) {
      for (const auto& p : passages) cached.push_back(*engine.EncodeBlock(p));
    }
    std::vector<be::BlockInput> hit, miss;
    for (int64_t i = 0; i < k; ++i) {
      miss.push_back({passages[i], nullptr});
      if (!cached.empty()) hit.push_back({passages[i], &cached[i]});
    }
    Cell full, block, uncached, alone;
    auto run = [&](const char* mode, Cell* cell, auto&& fn) -> bool {
      if (!want(mode)) return true;
      absl::StatusOr<Cell> r = Time(repeats, fn);
      if (!r.ok()) return std::cerr << "ttft_bench: " << r.status() << "\n", false;
      *cell = *r;
      absl::StrAppend(&csv, absl::StrFormat("%d,%d,%s,%.3f,%.3f,%.3f,%.6g\n", k * p_len + q_len, k,
                                            mode, cell->median_ms, cell->min_ms, cell->max_ms, cell->flops));
      return true;
    };
    if (!run("full", &full, [&] { return Ttft(engine, miss, query, be::AttentionMode::kFull); }) ||
        !run("block_cached", &block, [&] { return Ttft(engine, hit, query, be::AttentionMode::kBlock); }) ||
        !run("block_uncached", &uncached, [&] { return Ttft(engine, miss, query, be::AttentionMode::kBlock); }) ||
        !run("query_only", &alone, [&] { return Ttft(engine, {}, query, be::AttentionMode::kBlock); })) {
      return 1;
    }
    auto pct = [](const Cell& a, const Cell& b, bool flops) -> std::string {
      if (!a.ran || !b.ran) return "n/a";
      return absl::StrFormat("%+.1f%%", 100 * ((flops ? a.flops / b.flops : a.median_ms / b.median_ms) - 1));
    };
    const std::string row = absl::StrFormat(
        "| %d | %d | %s | %s | %s | %s | %s | %.3g | %.3g | %s |\n", k * p_len + q_len, k, Fmt(full),
        Fmt(block), Fmt(uncached), Fmt(alone), pct(block, full, false), full.flops, block.flops,
        pct(block, full, true));
    std::cout << row << std::flush;
    table += row;
  }
  const std::string tag = absl::GetFlag(FLAGS_tag).empty() ? shape : absl::GetFlag(FLAGS_tag);
  const std::string out = absl::GetFlag(FLAGS_out);
  std::filesystem::create_directories(out);
  const std::string md = absl::StrFormat(
      "# TTFT: block-attention vs full prefill (%s)\n\n"
      "Model: %s shape, %d layers, hidden %d, %d heads / %d KV heads, MLP %d, vocab %d, "
      "random weights, fp32 compute on CPU.\nMachine: %d hardware threads. Passages of %d "
      "tokens, query of %d tokens. Cells: median (min–max) of %d runs, ms (a cell whose "
      "first run took over %.0f s ran once: n=1).\n"
      "TTFT vs full compares block cached with full prefill.\nCommand: %s\n\n%s",
      tag, shape, c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.num_key_value_heads,
      c.intermediate_size, c.vocab_size, std::thread::hardware_concurrency(), p_len, q_len, repeats,
      absl::GetFlag(FLAGS_max_cell_seconds), command_line, table);
  std::ofstream(out + "/ttft_" + tag + ".md") << md;
  std::ofstream(out + "/ttft_" + tag + ".csv") << csv;
  std::cerr << "wrote " << out << "/ttft_" << tag << ".{md,csv}\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Measures time to first token of block-attention vs full prefill as the prompt grows.\n"
      "Usage: ttft_bench [--shape small] [--lengths 512,...] [--repeats 3] [--out DIR]");
  for (int i = 0; i < argc; ++i) absl::StrAppend(&command_line, i ? " " : "", argv[i]);
  absl::ParseCommandLine(argc, argv);
  blockserve::KeepFreedMemoryForReuse();
  return Run();
}
