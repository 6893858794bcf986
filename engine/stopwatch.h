// Wall time since construction, in milliseconds, on the monotonic clock: the one way
// BlockServe times requests (TTFT, fetch / shift / compute splits, benchmarks).
#ifndef BLOCKSERVE_ENGINE_STOPWATCH_H_
#define BLOCKSERVE_ENGINE_STOPWATCH_H_

#include <chrono>

namespace blockserve {

class Stopwatch {
 public:
  double ElapsedMs() const {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_)
        .count();
  }

 private:
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace blockserve

#endif  // BLOCKSERVE_ENGINE_STOPWATCH_H_
