// attention_bench: the CPU attention kernel (engine/cpu_attention.h) alone, on the shapes
// the engine runs: a small model's heads (8 query / 2 KV heads, d = 32) and Llama-3-8B's
// (32 / 8, d = 128). Three kinds of call:
//   prefill  causal attention of T new rows over themselves (past = 0),
//   query    a 50-row query over `past` cached rows (the block-cached TTFT path),
//   decode   one row over `past` cached rows.
// Each cell reports the median (min-max) time of --repeats runs and attention GFLOP/s,
// counting 4 * rows * keys * head_dim * heads (QK^T and PV, 2 FLOPs per multiply-add),
// halved for the causal triangle of prefill. Next to it, as the ceiling, the same run
// measures OpenBLAS's cblas_sgemm on a GEMM of the score product's shape (rows of one
// KV group x keys x head_dim, capped in size) on one thread and on two (the columns split
// in halves, one single-threaded call each, the way the CPU backend runs its GEMMs).
// --kv=bf16 runs the bf16 K/V overload instead (K and V rounded to bf16 first).
// Writes <out>/<tag>.md and .csv.
#include <cblas.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <ctime>
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
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/summary.h"
#include "engine/cpu_attention.h"
#include "engine/dtype.h"
#include "engine/thread_pool.h"

ABSL_FLAG(std::string, shapes, "small,llama8b", "head shapes: small (8/2, d 32), llama8b (32/8, d 128)");
ABSL_FLAG(std::string, prefill, "512,2048,8192", "causal prefill lengths T (m = T, past = 0)");
ABSL_FLAG(std::string, query_past, "512,2048,8192,32768", "cached rows under the query");
ABSL_FLAG(int, query_rows, 50, "rows of the query");
ABSL_FLAG(std::string, decode_past, "2048,32768", "cached rows under one decode row");
ABSL_FLAG(int, repeats, 5, "timed runs per cell");
ABSL_FLAG(double, max_cell_seconds, 20, "a cell whose first run takes longer runs once");
ABSL_FLAG(int, threads, 2, "attention thread pool size");
ABSL_FLAG(std::string, kv, "f32", "K/V element type: f32, or bf16 for the bf16 overload");
ABSL_FLAG(std::string, out, "bench/results", "folder for the result files");
ABSL_FLAG(std::string, tag, "attention", "result file name: <tag>.md and <tag>.csv");

namespace {

namespace be = blockserve::engine;
using blockserve::bench::Summarize;
using blockserve::bench::Summary;

struct Shape {
  std::string name;
  be::AttentionShape heads;
};

std::vector<int64_t> Ints(const std::string& s) {
  std::vector<int64_t> v;
  for (absl::string_view p : absl::StrSplit(s, ',', absl::SkipEmpty())) {
    int64_t x;
    if (!absl::SimpleAtoi(p, &x) || x <= 0) {
      std::cerr << "attention_bench: bad number '" << std::string(p) << "'\n";
      std::exit(2);
    }
    v.push_back(x);
  }
  return v;
}

// Times fn: --repeats runs, or one if the first one took over --max_cell_seconds.
template <typename F>
std::vector<double> TimeMs(F&& fn) {
  std::vector<double> ms;
  const int repeats = absl::GetFlag(FLAGS_repeats);
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    if (r == 0 && ms[0] > 1000 * absl::GetFlag(FLAGS_max_cell_seconds)) break;
  }
  return ms;
}

std::vector<float> Random(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> g(0, 1);
  std::vector<float> x(n);
  for (float& f : x) f = g(rng);
  return x;
}

// GFLOP/s of C[M,N] = A[M,K] B[K,N]^T on one thread (pool of 1) or with the columns
// split over the pool's threads; the median of the runs.
double GemmGflops(int64_t M, int64_t N, int64_t K, be::ThreadPool& pool, std::mt19937& rng) {
  std::vector<float> a = Random(M * K, rng), b = Random(N * K, rng), c(M * N);
  const int parts = pool.size();
  auto run = [&] {
    pool.ParallelFor(parts, [&](int64_t t) {
      const int64_t n0 = N * t / parts, n1 = N * (t + 1) / parts;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, n1 - n0, K, 1.0f, a.data(), K,
                  b.data() + n0 * K, K, 0.0f, c.data() + n0, N);
    });
  };
  run();  // warm-up: page in C
  std::vector<double> ms;
  for (int r = 0; r < std::max(3, absl::GetFlag(FLAGS_repeats)); ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return 2.0 * M * N * K / (Summarize(ms).median * 1e6);
}

std::string LoadAverage() {
  double l[3] = {0, 0, 0};
  if (getloadavg(l, 3) != 3) return "unknown";
  return absl::StrFormat("%.2f, %.2f, %.2f", l[0], l[1], l[2]);
}

std::string CpuModel() {
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown CPU";
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "attention_bench [--shapes small,llama8b] [--prefill 512,2048,8192] "
      "[--query_past ...] [--query_rows 50] [--decode_past ...] [--repeats 5] "
      "[--max_cell_seconds 20] [--threads 2] [--out DIR] [--tag attention]");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() > 1) {
    std::cerr << "attention_bench: unexpected argument " << args[1] << "\n";
    return 2;
  }
  std::string command_line = "attention_bench";
  for (int i = 1; i < argc; ++i) absl::StrAppend(&command_line, " ", argv[i]);
  const std::string load_before = LoadAverage();
  const std::string kv_type = absl::GetFlag(FLAGS_kv);
  if (kv_type != "f32" && kv_type != "bf16") {
    std::cerr << "attention_bench: --kv must be f32 or bf16\n";
    return 2;
  }

  std::vector<Shape> shapes;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_shapes), ',', absl::SkipEmpty())) {
    if (s == "small") {
      shapes.push_back({"small", {8, 2, 32}});
    } else if (s == "llama8b") {
      shapes.push_back({"llama8b", {32, 8, 128}});
    } else {
      std::cerr << "attention_bench: unknown shape '" << std::string(s) << "'\n";
      return 2;
    }
  }
  struct Kind {
    std::string name;
    int64_t rows;  // 0: rows = keys (prefill)
    std::vector<int64_t> sizes;
  };
  const std::vector<Kind> kinds = {{"prefill", 0, Ints(absl::GetFlag(FLAGS_prefill))},
                                   {"query", absl::GetFlag(FLAGS_query_rows), Ints(absl::GetFlag(FLAGS_query_past))},
                                   {"decode", 1, Ints(absl::GetFlag(FLAGS_decode_past))}};

  openblas_set_num_threads(1);  // as the CPU backend does: parallelism is the pool's
  be::ThreadPool pool(absl::GetFlag(FLAGS_threads)), one(1), two(2);
  std::mt19937 rng(1);
  const std::string header =
      "| shape | kind | rows | past | keys | ms median (min-max) | n | attention GFLOP/s | "
      "sgemm 1 thread GFLOP/s | sgemm 2 threads GFLOP/s |\n"
      "|---|---|---:|---:|---:|---|---:|---:|---:|---:|\n";
  std::string table = header;
  std::string csv =
      "shape,kind,rows,past,keys,heads,kv_heads,head_dim,median_ms,min_ms,max_ms,runs,flops,"
      "gflops,sgemm1_gflops,sgemm2_gflops\n";
  std::cout << header << std::flush;
  for (const Shape& shape : shapes) {
    const be::AttentionShape& s = shape.heads;
    for (const Kind& kind : kinds) {
      for (int64_t size : kind.sizes) {
        const int64_t m = kind.rows == 0 ? size : kind.rows;
        const int64_t past = kind.rows == 0 ? 0 : size;
        const int64_t keys = past + m;
        std::vector<float> q = Random(m * s.num_heads * s.head_dim, rng);
        std::vector<float> k = Random(keys * s.num_kv_heads * s.head_dim, rng);
        std::vector<float> v = Random(keys * s.num_kv_heads * s.head_dim, rng);
        std::vector<float> out(q.size());
        std::vector<uint16_t> kb, vb;
        if (kv_type == "bf16") {
          for (float x : k) kb.push_back(be::F32ToBF16(x));
          for (float x : v) vb.push_back(be::F32ToBF16(x));
        }
        auto attend = [&] {
          if (kv_type == "bf16") {
            be::CausalAttention(q.data(), m, kb.data(), vb.data(), past, s, out.data(), pool);
          } else {
            be::CausalAttention(q.data(), m, k.data(), v.data(), past, s, out.data(), pool);
          }
        };
        // Every (row, key) pair a row sees: the causal triangle counts once.
        const double pairs = kind.rows == 0 ? 0.5 * m * (m + 1) : double(m) * keys;
        const double flops = 4.0 * pairs * s.head_dim * s.num_heads;
        attend();  // warm-up
        const std::vector<double> ms = TimeMs(attend);
        const Summary t = Summarize(ms);
        const int64_t gm = std::min<int64_t>(m * (s.num_heads / s.num_kv_heads), 1024);
        const int64_t gn = std::min<int64_t>(keys, 4096);
        const double g1 = GemmGflops(gm, gn, s.head_dim, one, rng);
        const double g2 = GemmGflops(gm, gn, s.head_dim, two, rng);
        const double gflops = flops / (t.median * 1e6);
        const std::string row = absl::StrFormat(
            "| %s | %s | %d | %d | %d | %.2f (%.2f-%.2f) | %d | %.1f | %.1f | %.1f |\n", shape.name,
            kind.name, m, past, keys, t.median, t.min, t.max, ms.size(), gflops, g1, g2);
        std::cout << row << std::flush;
        table += row;
        absl::StrAppend(&csv, absl::StrFormat("%s,%s,%d,%d,%d,%d,%d,%d,%.4f,%.4f,%.4f,%d,%.6g,%.3f,%.3f,%.3f\n",
                                              shape.name, kind.name, m, past, keys, s.num_heads,
                                              s.num_kv_heads, s.head_dim, t.median, t.min, t.max,
                                              ms.size(), flops, gflops, g1, g2));
      }
    }
  }
  const std::time_t now = std::time(nullptr);
  char date[64];
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  const std::string md = absl::StrFormat(
      "# CPU attention kernel (%s)\n\n"
      "engine/cpu_attention.h CausalAttention on random q/k/v, K/V in %s, %d-thread pool. "
      "Shapes: small = 8 heads / 2 KV heads, d 32; llama8b = 32 / 8, d 128. prefill: m = T "
      "rows, past 0; query: %d rows over `past` cached rows; decode: 1 row.\n"
      "ms: median (min-max) of n runs after one warm-up (a cell whose first run took over "
      "%.0f s ran once). Attention GFLOP/s counts 4 * rows * keys * d * heads (causal "
      "triangle for prefill). sgemm: OpenBLAS cblas_sgemm, C[M,N] = A[M,d] B[N,d]^T with M "
      "= rows * heads / kv_heads (max 1024), N = keys (max 4096), on 1 thread and on 2 "
      "(columns halved), median of the same run.\n"
      "Machine: %s, %d hardware threads. Date: %s. Load average (1, 5, 15 min): %s before, "
      "%s after.\nCommand: %s\n\n%s",
      absl::GetFlag(FLAGS_tag), kv_type, absl::GetFlag(FLAGS_threads), absl::GetFlag(FLAGS_query_rows),
      absl::GetFlag(FLAGS_max_cell_seconds), CpuModel(), std::thread::hardware_concurrency(), date,
      load_before, LoadAverage(), command_line, table);
  const std::string dir = absl::GetFlag(FLAGS_out);
  std::filesystem::create_directories(dir);
  const std::string tag = absl::GetFlag(FLAGS_tag);
  std::ofstream(dir + "/" + tag + ".md") << md;
  std::ofstream(dir + "/" + tag + ".csv") << csv;
  std::cerr << "wrote " << dir << "/" << tag << ".{md,csv}\n";
  return 0;
}
