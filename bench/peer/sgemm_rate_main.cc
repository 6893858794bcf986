// sgemm_rate: the machine's measured fp32 GEMM rate (OpenBLAS cblas_sgemm, C = A B with
// A [m, k], B [k, n]) for each thread count and size, as CSV on stdout:
//   threads,m,n,k,runs,median_gflops,max_gflops
// bench/peer/run.sh divides ttft_bench's analytic FLOPs by the best rate to draw the
// FLOPs floor of the cost-growth plot. Each cell: one untimed warm-up call, then calls
// until --seconds have passed (at least 3); GFLOP/s = 2 m n k / time.
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

ABSL_FLAG(std::string, threads, "1,2", "OpenBLAS thread counts");
ABSL_FLAG(std::string, sizes, "256x768x256,512x768x256,512x256x768,1024x1024x1024",
          "m x n x k shapes; the first three are the small shape's prefill GEMMs on a "
          "512-token batch (q/gate/up, down)");
ABSL_FLAG(double, seconds, 1.0, "time per cell");

namespace {

std::vector<int64_t> Ints(const std::string& list, char sep) {
  std::vector<int64_t> out;
  for (absl::string_view s : absl::StrSplit(list, sep)) {
    int64_t v;
    if (!absl::SimpleAtoi(s, &v) || v < 1) return {};
    out.push_back(v);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Measures OpenBLAS sgemm GFLOP/s.\nUsage: sgemm_rate [--threads 1,2] [--sizes MxNxK,...]");
  absl::ParseCommandLine(argc, argv);
  const std::vector<int64_t> threads = Ints(absl::GetFlag(FLAGS_threads), ',');
  if (threads.empty()) return std::fprintf(stderr, "sgemm_rate: bad --threads\n"), 2;
  std::printf("threads,m,n,k,runs,median_gflops,max_gflops\n");
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  for (int64_t t : threads) {
    openblas_set_num_threads(static_cast<int>(t));
    for (absl::string_view shape : absl::StrSplit(absl::GetFlag(FLAGS_sizes), ',')) {
      const std::vector<int64_t> mnk = Ints(std::string(shape), 'x');
      if (mnk.size() != 3) return std::fprintf(stderr, "sgemm_rate: bad size '%s'\n", std::string(shape).c_str()), 2;
      const int64_t m = mnk[0], n = mnk[1], k = mnk[2];
      std::vector<float> a(m * k), b(k * n), c(m * n);
      for (float& x : a) x = u(rng);
      for (float& x : b) x = u(rng);
      auto gemm = [&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a.data(), k, b.data(), n,
                    0.0f, c.data(), n);
      };
      gemm();
      std::vector<double> gflops;
      const auto begin = std::chrono::steady_clock::now();
      while (gflops.size() < 3 ||
             std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count() <
                 absl::GetFlag(FLAGS_seconds)) {
        const auto t0 = std::chrono::steady_clock::now();
        gemm();
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        gflops.push_back(2.0 * m * n * k / s / 1e9);
      }
      std::sort(gflops.begin(), gflops.end());
      std::printf("%ld,%ld,%ld,%ld,%zu,%.2f,%.2f\n", static_cast<long>(t), static_cast<long>(m),
                  static_cast<long>(n), static_cast<long>(k), gflops.size(), gflops[gflops.size() / 2],
                  gflops.back());
    }
  }
  return 0;
}
