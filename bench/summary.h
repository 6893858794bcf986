// What the benchmarks report of repeated measurements: median, min and max.
#ifndef BLOCKSERVE_BENCH_SUMMARY_H_
#define BLOCKSERVE_BENCH_SUMMARY_H_

#include <algorithm>
#include <vector>

namespace blockserve::bench {

struct Summary {
  double median = 0, min = 0, max = 0;
};

// The median (the upper one of an even count), min and max of `v`; zeros when empty.
inline Summary Summarize(std::vector<double> v) {
  if (v.empty()) return {};
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

}  // namespace blockserve::bench

#endif  // BLOCKSERVE_BENCH_SUMMARY_H_
