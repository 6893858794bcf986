#include "common/metrics.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace blockserve {
namespace {

void AtomicAdd(std::atomic<double>& a, double v) {
  double cur = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {
  }
}

std::string Num(double v) { return absl::StrFormat("%.17g", v); }

}  // namespace

void Counter::Add(double v) { AtomicAdd(value_, v); }

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<int64_t>[bounds_.size() + 1]) {
  std::sort(bounds_.begin(), bounds_.end());
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i] = 0;
}

void Histogram::Observe(double v) {
  const size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, v);
}

std::vector<int64_t> Histogram::bucket_counts() const {
  std::vector<int64_t> out(bounds_.size() + 1);
  for (size_t i = 0; i < out.size(); ++i) out[i] = counts_[i].load(std::memory_order_relaxed);
  return out;
}

int64_t Histogram::count() const {
  int64_t n = 0;
  for (int64_t c : bucket_counts()) n += c;
  return n;
}

std::vector<double> LatencyBucketsMs() {
  return {0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000};
}

Counter* MetricsRegistry::GetCounter(const std::string& name, const std::string& help) {
  absl::MutexLock lock(&mu_);
  Entry& e = entries_[name];
  if (!e.counter) e.counter = std::make_unique<Counter>(), e.help = help;
  return e.counter.get();
}

Gauge* MetricsRegistry::GetGauge(const std::string& name, const std::string& help) {
  absl::MutexLock lock(&mu_);
  Entry& e = entries_[name];
  if (!e.gauge) e.gauge = std::make_unique<Gauge>(), e.help = help;
  return e.gauge.get();
}

Histogram* MetricsRegistry::GetHistogram(const std::string& name, const std::string& help,
                                         std::vector<double> bounds) {
  absl::MutexLock lock(&mu_);
  Entry& e = entries_[name];
  if (!e.histogram) e.histogram = std::make_unique<Histogram>(std::move(bounds)), e.help = help;
  return e.histogram.get();
}

void MetricsRegistry::AddCollector(std::function<void()> collect) {
  absl::MutexLock lock(&mu_);
  collectors_.push_back(std::move(collect));
}

std::string MetricsRegistry::RenderText() const {
  std::vector<std::function<void()>> collectors;
  {
    absl::MutexLock lock(&mu_);
    collectors = collectors_;
  }
  for (const std::function<void()>& collect : collectors) collect();
  absl::MutexLock lock(&mu_);
  std::string out;
  for (const auto& [name, e] : entries_) {
    absl::StrAppend(&out, "# HELP ", name, " ", e.help, "\n");
    if (e.counter) {
      absl::StrAppend(&out, "# TYPE ", name, " counter\n", name, " ", Num(e.counter->value()), "\n");
    } else if (e.gauge) {
      absl::StrAppend(&out, "# TYPE ", name, " gauge\n", name, " ", Num(e.gauge->value()), "\n");
    } else if (e.histogram) {
      absl::StrAppend(&out, "# TYPE ", name, " histogram\n");
      const std::vector<int64_t> counts = e.histogram->bucket_counts();
      int64_t cumulative = 0;
      for (size_t i = 0; i < counts.size(); ++i) {
        cumulative += counts[i];
        const std::string le = i < e.histogram->bounds().size() ? Num(e.histogram->bounds()[i]) : "+Inf";
        absl::StrAppend(&out, name, "_bucket{le=\"", le, "\"} ", cumulative, "\n");
      }
      absl::StrAppend(&out, name, "_sum ", Num(e.histogram->sum()), "\n", name, "_count ",
                      cumulative, "\n");
    }
  }
  return out;
}

}  // namespace blockserve
