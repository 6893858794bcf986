// ttft_bench: the paper's TTFT experiment, in process. The query is fixed (50 tokens by
// default) and the number of ~150-token passages grows so the prompt goes from 512 to
// 32K tokens; for each length it measures time to first token of
//   full            ordinary causal prefill over the whole prompt (the baseline),
//   block_cached    Block-Attention with every passage's KV already cached,
//   block_uncached  Block-Attention with nothing cached (each passage encoded alone),
//   query_only      the query with no passages at all (the floor),
// and reports median, min and max over repeats, analytic FLOPs to first token, and
// the reductions versus full. Writes a Markdown table and a CSV.
//
// --backend=cuda runs the same experiment on engine/cuda's backend (LoadCudaEngine);
// without a GPU it exits with status 2 and says so before writing any model. STATUS: the
// CUDA path has never run on a GPU (see bench/ttft/README.md). --print_config prints the
// model config and prompt lengths as JSON (what bench/ttft/pytorch_peer.py builds).
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
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/ttft/cuda_device_info.h"
#include "engine/bpe_trainer.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/memory.h"
#include "engine/engine.h"
#include "engine/sampling.h"
#include "engine/stopwatch.h"
#include "engine/tiny_model.h"
#include "engine/tokenizer.h"

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
ABSL_FLAG(std::string, backend, "cpu",
          "cpu (the engine's CPU backend, fp32) or cuda (engine/cuda: bf16 weights, fp32 "
          "accumulation; needs a CUDA GPU, else exits 2)");
ABSL_FLAG(int, cuda_device, 0, "CUDA device ordinal for --backend=cuda");
ABSL_FLAG(std::string, kv_dtype, "f32",
          "element type of the engine's KV caches: f32 or bf16 (CPU backend only)");
ABSL_FLAG(int, warmup, 0, "untimed runs per cell before the timed ones");
ABSL_FLAG(bool, print_config, false,
          "print the model config (config.json fields) and the prompt lengths as JSON to "
          "stdout, then exit without writing or running a model (bench/ttft/pytorch_peer.py "
          "reads this)");

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
  for (int w = 0; w < absl::GetFlag(FLAGS_warmup); ++w) {
    if (absl::StatusOr<double> flops = run(); !flops.ok()) return flops.status();
  }
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

// Where a block-cached TTFT went, per timed run (engine PrefillStats): copying the cached
// blocks into the sequence with their keys re-encoded (shift_ms), the forward pass over
// the query, and the rest (sampling, bookkeeping).
struct Breakdown {
  std::vector<double> total_ms, shift_ms, compute_ms;
};

// TTFT = prefill + sampling the first token (greedy).
absl::StatusOr<double> Ttft(be::Engine& engine, const std::vector<be::BlockInput>& blocks,
                            const std::vector<int32_t>& query, be::AttentionMode mode,
                            Breakdown* breakdown = nullptr) {
  const blockserve::Stopwatch clock;
  absl::StatusOr<be::PrefillResult> r = engine.PrefillLast(blocks, query, {.mode = mode});
  if (!r.ok()) return r.status();
  be::Sampler sampler({});
  (void)sampler.Sample(r->logits_last);
  if (breakdown != nullptr) {
    breakdown->total_ms.push_back(clock.ElapsedMs());
    breakdown->shift_ms.push_back(r->stats.shift_ms);
    breakdown->compute_ms.push_back(r->stats.compute_ms);
  }
  return r->stats.flops_to_first_token;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::string Fmt(const Cell& c) {
  if (!c.ran) return "n/a";
  if (c.runs == 1) return absl::StrFormat("%.1f (n=1)", c.median_ms);
  return absl::StrFormat("%.1f (%.1f–%.1f)", c.median_ms, c.min_ms, c.max_ms);
}

std::string command_line;  // recorded in the results file

// Passages in a prompt of about `len` tokens; the prompt is passages * p_len + q_len.
int64_t PassageCount(int64_t len, int64_t p_len, int64_t q_len) { return (len - q_len) / p_len; }

// The config a random model of `shape` gets, without writing it: the vocabulary is the
// tiny tokenizer's, trained here exactly as WriteTinyModel (engine/tiny_model.cc) trains it.
absl::StatusOr<be::ModelConfig> ShapeConfig(const be::TinyModelOptions& o) {
  absl::StatusOr<std::string> json = be::TrainByteLevelBpeJson(
      be::TinyTokenizerCorpus(), o.num_merges, {"<|begin_of_text|>", "<|end_of_text|>"});
  if (!json.ok()) return json.status();
  absl::StatusOr<be::Tokenizer> tokenizer = be::Tokenizer::FromJson(*json);
  if (!tokenizer.ok()) return tokenizer.status();
  return be::TinyModelConfig(o, tokenizer->vocab_size());
}

// --print_config: {"shape", "passage_tokens", "query_tokens", "lengths", "prompt_tokens",
// "passages", "config": <config.json>}. prompt_tokens are the row labels of the table.
int PrintConfig(const std::string& shape, const std::vector<int64_t>& lengths) {
  absl::StatusOr<be::ModelConfig> config;
  if (const std::string dir = absl::GetFlag(FLAGS_model_dir); !dir.empty()) {
    config = be::ModelConfig::FromFile(dir + "/config.json");
  } else {
    absl::StatusOr<be::TinyModelOptions> o =
        ShapeOptions(shape, *std::max_element(lengths.begin(), lengths.end()));
    if (!o.ok()) return std::cerr << "ttft_bench: " << o.status().message() << "\n", 2;
    config = ShapeConfig(*o);
  }
  if (!config.ok()) return std::cerr << "ttft_bench: " << config.status() << "\n", 1;
  const int64_t p_len = absl::GetFlag(FLAGS_passage_tokens), q_len = absl::GetFlag(FLAGS_query_tokens);
  std::vector<std::string> lens, tokens, passages;
  for (int64_t len : lengths) {
    const int64_t k = PassageCount(len, p_len, q_len);
    lens.push_back(absl::StrCat(len));
    tokens.push_back(absl::StrCat(k * p_len + q_len));
    passages.push_back(absl::StrCat(k));
  }
  std::cout << "{\n  \"shape\": \"" << shape << "\",\n  \"passage_tokens\": " << p_len
            << ",\n  \"query_tokens\": " << q_len << ",\n  \"lengths\": ["
            << absl::StrJoin(lens, ", ") << "],\n  \"prompt_tokens\": ["
            << absl::StrJoin(tokens, ", ") << "],\n  \"passages\": ["
            << absl::StrJoin(passages, ", ") << "],\n  \"config\": " << config->ToJson() << "}\n";
  return 0;
}

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
  if (absl::GetFlag(FLAGS_print_config)) return PrintConfig(shape, lengths);
  const std::string backend = absl::GetFlag(FLAGS_backend);
  const int device = absl::GetFlag(FLAGS_cuda_device);
  std::string backend_line = "Backend: cpu.";  // for the results header
  if (backend == "cuda") {
    // Checked before writing the model (multi-GB for llama3-8b), so a GPU-less machine
    // fails at once.
    const int devices = blockserve::bench::CudaDeviceCount();
    if (device < 0 || device >= devices) {
      std::cerr << "ttft_bench: --backend=cuda needs CUDA device " << device << ", but "
                << devices << " CUDA device(s) were found (no GPU or no NVIDIA driver on "
                << "this machine). Use --backend=cpu, or run on a machine with a GPU.\n";
      return 2;
    }
    backend_line = absl::StrCat(
        "Backend: cuda (engine/cuda), ", blockserve::bench::CudaDeviceDescription(device),
        "; weights bf16 on the GPU, GEMMs bf16 x bf16 with fp32 accumulation, attention and "
        "the KV cache fp32; cached passage KV is host memory, uploaded by each prefill.");
  } else if (backend != "cpu") {
    std::cerr << "ttft_bench: unknown --backend " << backend << " (cpu or cuda)\n";
    return 2;
  }
  std::string dir = absl::GetFlag(FLAGS_model_dir);
  if (dir.empty()) {
    absl::StatusOr<be::TinyModelOptions> o =
        ShapeOptions(shape, *std::max_element(lengths.begin(), lengths.end()));
    if (!o.ok()) return std::cerr << "ttft_bench: " << o.status().message() << "\n", 2;
    dir = (std::filesystem::temp_directory_path() / ("blockserve-ttft-" + shape)).string();
    std::cerr << "writing a random-weight " << shape << " model to " << dir << "\n";
    if (absl::Status s = be::WriteTinyModel(dir, *o); !s.ok()) return std::cerr << s << "\n", 1;
  }
  const std::string kv_dtype = absl::GetFlag(FLAGS_kv_dtype);
  if (kv_dtype != "f32" && kv_dtype != "bf16") {
    return std::cerr << "ttft_bench: --kv_dtype must be f32 or bf16, got " << kv_dtype << "\n", 2;
  }
  std::cerr << "loading " << dir << " on the " << backend << " backend\n";
  absl::StatusOr<std::unique_ptr<be::Engine>> loaded =
      backend == "cuda"
          ? be::LoadCudaEngine(dir, {.device = device})
          : be::Engine::Load(dir, {.kv_dtype = kv_dtype == "bf16" ? be::DType::kBF16
                                                                 : be::DType::kF32});
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
  std::string split_table =
      "| tokens | block cached ms | copy + RoPE shift ms | forward ms | rest ms | "
      "copy + shift share |\n|---:|---:|---:|---:|---:|---:|\n";
  std::string split_csv = "tokens,total_ms,copy_shift_ms,forward_ms,rest_ms\n";
  std::cout << header << std::flush;
  for (int64_t len : lengths) {
    const int64_t k = PassageCount(len, p_len, q_len);
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
    Breakdown split;
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
        !run("block_cached", &block,
             [&] { return Ttft(engine, hit, query, be::AttentionMode::kBlock, &split); }) ||
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
    if (block.ran) {
      // Medians of each part separately (they need not add up exactly to the total's).
      const double total = Median(split.total_ms), shift = Median(split.shift_ms),
                   forward = Median(split.compute_ms);
      const double rest = std::max(0.0, total - shift - forward);
      absl::StrAppend(&split_table,
                      absl::StrFormat("| %d | %.1f | %.1f | %.1f | %.1f | %.1f%% |\n",
                                      k * p_len + q_len, total, shift, forward, rest,
                                      100 * shift / total));
      absl::StrAppend(&split_csv, absl::StrFormat("%d,%.3f,%.3f,%.3f,%.3f\n", k * p_len + q_len,
                                                  total, shift, forward, rest));
    }
  }
  std::cout << "\n" << split_table << std::flush;
  const std::string tag = absl::GetFlag(FLAGS_tag).empty() ? shape : absl::GetFlag(FLAGS_tag);
  const std::string out = absl::GetFlag(FLAGS_out);
  std::filesystem::create_directories(out);
  const std::string md = absl::StrFormat(
      "# TTFT: block-attention vs full prefill (%s)\n\n"
      "Model: %s shape, %d layers, hidden %d, %d heads / %d KV heads, MLP %d, vocab %d, "
      "random weights, %s.\n%s\nMachine: %d hardware threads. Passages of %d "
      "tokens, query of %d tokens. Cells: median (min–max) of %d runs%s, ms (a cell whose "
      "first run took over %.0f s ran once: n=1).\n"
      "TTFT vs full compares block cached with full prefill.\nCommand: %s\n\n%s",
      tag, shape, c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.num_key_value_heads,
      c.intermediate_size, c.vocab_size,
      backend == "cuda" ? "bf16 weights on the GPU"
                        : absl::StrCat("fp32 compute on CPU, ", kv_dtype, " KV caches"),
      backend_line,
      std::thread::hardware_concurrency(), p_len, q_len, repeats,
      absl::GetFlag(FLAGS_warmup) > 0
          ? absl::StrFormat(" after %d untimed warm-up run(s)", absl::GetFlag(FLAGS_warmup))
          : "",
      absl::GetFlag(FLAGS_max_cell_seconds), command_line, table);
  const std::string split_md = absl::StrCat(
      "\n## Where block-cached TTFT goes\n\n"
      "Medians over the block-cached runs above, from the engine's PrefillStats: copying "
      "the cached blocks into the sequence KV with their keys re-encoded, one fused pass "
      "(`shift_ms`), the forward pass over the query (`compute_ms`), and the rest "
      "(sampling, bookkeeping). bench/rope_shift_bench compares the fused pass with a "
      "copy followed by a shift. Also in ttft_",
      tag, "_split.csv.\n\n", split_table);
  std::ofstream(out + "/ttft_" + tag + ".md") << md << (want("block_cached") ? split_md : "");
  std::ofstream(out + "/ttft_" + tag + ".csv") << csv;
  if (want("block_cached")) std::ofstream(out + "/ttft_" + tag + "_split.csv") << split_csv;
  std::cerr << "wrote " << out << "/ttft_" << tag << ".{md,csv}\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Measures time to first token of block-attention vs full prefill as the prompt grows.\n"
      "Usage: ttft_bench [--shape small] [--backend cpu|cuda] [--lengths 512,...] [--repeats 3]\n"
      "                  [--warmup 0] [--out DIR] [--tag T] | --print_config");
  for (int i = 0; i < argc; ++i) absl::StrAppend(&command_line, i ? " " : "", argv[i]);
  absl::ParseCommandLine(argc, argv);
  blockserve::KeepFreedMemoryForReuse();
  return Run();
}
