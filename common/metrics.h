// Process metrics in the Prometheus text exposition format: counters, gauges and
// fixed-bucket histograms, registered by name once and updated lock-free on hot paths.
#ifndef BLOCKSERVE_COMMON_METRICS_H_
#define BLOCKSERVE_COMMON_METRICS_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace blockserve {

class Counter {
 public:
  void Add(double v = 1);
  // For a count kept elsewhere and copied here by a collector (MetricsRegistry::
  // AddCollector): sets the total, which must never go down.
  void SetTotal(double total) { value_.store(total, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Cumulative histogram over ascending upper bounds (an implicit +Inf bucket follows).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);
  const std::vector<double>& bounds() const { return bounds_; }
  // Counts per bucket (non-cumulative; size bounds()+1), sum and count.
  std::vector<int64_t> bucket_counts() const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }
  int64_t count() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<int64_t>[]> counts_;
  std::atomic<double> sum_{0};
};

// Latency buckets in milliseconds, 0.5 ms .. 60 s.
std::vector<double> LatencyBucketsMs();

class MetricsRegistry {
 public:
  // Returns the metric of that name, creating it on first use. Names follow Prometheus
  // rules ([a-zA-Z_:][a-zA-Z0-9_:]*); `help` is kept from the first call.
  Counter* GetCounter(const std::string& name, const std::string& help);
  Gauge* GetGauge(const std::string& name, const std::string& help);
  Histogram* GetHistogram(const std::string& name, const std::string& help,
                          std::vector<double> bounds);

  // `collect` runs at the start of every RenderText, before anything is rendered, to
  // copy values kept elsewhere (e.g. a KV store's own counters) into metrics of this
  // registry. It may call Get*; it must not call RenderText.
  void AddCollector(std::function<void()> collect);

  std::string RenderText() const;

 private:
  struct Entry {
    std::string help;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
  };
  mutable absl::Mutex mu_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> collectors_ ABSL_GUARDED_BY(mu_);
};

}  // namespace blockserve

#endif  // BLOCKSERVE_COMMON_METRICS_H_
