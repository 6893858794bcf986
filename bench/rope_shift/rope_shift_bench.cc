// How much re-encoding cached blocks (the RoPE shift of Block-Attention) costs on the
// CPU, and whether fusing it into the copy pays: for a prompt's worth of cached passages
// it times, per KV dtype and KV shape,
//   copy only         KvCache::AppendCopy of every block into the sequence (the floor:
//                     the bytes have to move anyway)
//   copy, then shift  AppendCopy, then Backend::ShiftKeys over the new rows (two passes)
//   fused             Backend::AppendShifted: each chunk of rows copied and rotated while
//                     in cache (one pass; what the engine does)
// Prints a table and writes bench/results/rope_shift.{md,csv}. The shift needs only the
// model's RoPE settings and KV shape, so the backend is built from a config without
// weights (nothing else is run).
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/summary.h"
#include "engine/backend.h"
#include "engine/memory.h"
#include "engine/stopwatch.h"

ABSL_FLAG(std::string, tokens, "2048,8192,32768", "prompt lengths (cached tokens) to time");
ABSL_FLAG(int, passage_tokens, 150, "tokens per cached block");
ABSL_FLAG(int, repeats, 7, "timed runs per cell (median, min, max reported)");
ABSL_FLAG(std::string, out, "bench/results", "folder for rope_shift.md and .csv");
ABSL_FLAG(std::string, tag, "rope_shift", "result file name (without extension)");

namespace be = blockserve::engine;
namespace {

struct Shape {
  std::string name;
  int64_t layers, kv_heads, head_dim;
};

std::string Load() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return absl::StrCat(a, " ", b, " ", c);
}

std::unique_ptr<be::Backend> ShiftOnlyBackend(const Shape& s) {
  be::ModelWeights w;
  w.config.num_hidden_layers = s.layers;
  w.config.num_key_value_heads = s.kv_heads;
  w.config.num_attention_heads = s.kv_heads;
  w.config.head_dim = s.head_dim;
  w.config.hidden_size = s.kv_heads * s.head_dim;
  w.config.rope_theta = 500000;
  return be::CreateCpuBackend(std::move(w), {.num_threads = 1});
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Times copying cached KV blocks into a sequence with and without the RoPE shift,\n"
      "and the fused copy+shift. Usage: rope_shift_bench [--tokens 2048,8192,32768]");
  absl::ParseCommandLine(argc, argv);
  blockserve::KeepFreedMemoryForReuse();  // as the services run: no page faults per request
  std::vector<int64_t> lengths;
  for (absl::string_view t : absl::StrSplit(absl::GetFlag(FLAGS_tokens), ',')) {
    int64_t n = 0;
    if (!absl::SimpleAtoi(t, &n) || n <= 0) {
      std::cerr << "rope_shift_bench: bad --tokens entry \"" << std::string(t) << "\"\n";
      return 2;
    }
    lengths.push_back(n);
  }
  const int p = absl::GetFlag(FLAGS_passage_tokens), repeats = absl::GetFlag(FLAGS_repeats);
  if (p <= 0 || repeats <= 0) {
    std::cerr << "rope_shift_bench: --passage_tokens and --repeats must be positive\n";
    return 2;
  }
  const std::vector<Shape> shapes = {{"small (4 x 2 x 32)", 4, 2, 32},
                                     {"llama3-8b (32 x 8 x 128)", 32, 8, 128}};
  const std::string load_before = Load();
  std::string table =
      "| KV shape (layers x KV heads x head dim) | KV dtype | tokens | KV MB | copy only ms | "
      "copy, then shift ms | fused ms | shift cost (copy, then shift) | shift cost (fused) |\n"
      "|---|---|---:|---:|---:|---:|---:|---:|---:|\n";
  std::string csv = "shape,dtype,tokens,kv_bytes,variant,median_ms,min_ms,max_ms\n";
  std::cout << table << std::flush;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> value(-2, 2);
  for (const Shape& s : shapes) {
    std::unique_ptr<be::Backend> backend = ShiftOnlyBackend(s);
    const be::KvShape kv_shape{s.layers, s.kv_heads, s.head_dim};
    for (be::DType dtype : {be::DType::kF32, be::DType::kBF16}) {
      for (int64_t len : lengths) {
        // The 8B shape at 32K is 4 GB of fp32 KV per copy: keep that shape to 8K.
        if (s.layers * s.kv_heads * s.head_dim * len * 2 * 4 > (int64_t{3} << 30)) continue;
        const int64_t blocks = (len + p - 1) / p;
        be::KvCache block(kv_shape, dtype);
        block.Append(std::vector<int32_t>(p, 1));
        for (int64_t l = 0; l < s.layers; ++l) {
          std::vector<float> f(p * kv_shape.row());
          for (float& x : f) x = value(rng);
          be::ConvertFromF32(dtype, f.data(), f.size(), block.k_data(l));
          be::ConvertFromF32(dtype, f.data(), f.size(), block.v_data(l));
        }
        auto time = [&](auto&& assemble) {
          std::vector<double> ms;
          for (int r = 0; r < repeats; ++r) {
            be::KvCache seq(kv_shape, dtype);
            seq.Reserve(blocks * p);
            const blockserve::Stopwatch clock;
            for (int64_t b = 0; b < blocks; ++b) assemble(seq, block, b * p);
            ms.push_back(clock.ElapsedMs());
          }
          return blockserve::bench::Summarize(ms);
        };
        const auto copy = time([](be::KvCache& seq, const be::KvCache& b, int64_t) {
          seq.AppendCopy(b);
        });
        const auto two_pass = time([&](be::KvCache& seq, const be::KvCache& b, int64_t at) {
          backend->Backend::AppendShifted(seq, b, at);  // the base class: copy, then shift
        });
        const auto fused = time([&](be::KvCache& seq, const be::KvCache& b, int64_t at) {
          backend->AppendShifted(seq, b, at);
        });
        const double mb = static_cast<double>(block.bytes()) * blocks / 1e6;
        const std::string row = absl::StrFormat(
            "| %s | %s | %d | %.0f | %.2f | %.2f | %.2f | %+.0f%% | %+.0f%% |\n", s.name,
            std::string(be::DTypeName(dtype)), blocks * p, mb, copy.median, two_pass.median,
            fused.median, 100 * (two_pass.median / copy.median - 1),
            100 * (fused.median / copy.median - 1));
        std::cout << row << std::flush;
        table += row;
        for (auto [name, sum] : {std::pair{"copy", copy}, std::pair{"copy_then_shift", two_pass},
                                 std::pair{"fused", fused}}) {
          absl::StrAppend(&csv, absl::StrFormat("%s,%s,%d,%.0f,%s,%.3f,%.3f,%.3f\n", s.name,
                                                std::string(be::DTypeName(dtype)), blocks * p,
                                                mb * 1e6, name, sum.median, sum.min, sum.max));
        }
      }
    }
  }
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  const std::string md = absl::StrCat(
      "# RoPE re-encoding of cached blocks: cost on the CPU\n\n",
      "Cached blocks of ", p, " tokens copied into one sequence KV, one thread, median of ",
      repeats,
      " runs in ms. \"Shift cost\" is the time over the plain copy. Load average (1, 5, 15 "
      "min) before: ",
      load_before, "; after: ", Load(), ". ", std::thread::hardware_concurrency(),
      " hardware threads.\nCommand: `bazel run -c opt //bench/rope_shift:rope_shift_bench`",
      (argc > 1 ? " with flags" : ""), ".\n\n", table);
  const std::string out = absl::GetFlag(FLAGS_out), tag = absl::GetFlag(FLAGS_tag);
  std::filesystem::create_directories(out);
  std::ofstream(out + "/" + tag + ".md") << md;
  std::ofstream(out + "/" + tag + ".csv") << csv;
  std::cerr << "wrote " << out << "/" << tag << ".{md,csv}\n";
  return 0;
}
