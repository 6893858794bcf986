#include "common/metrics.h"

#include <thread>

#include <gtest/gtest.h>

namespace blockserve {
namespace {

TEST(MetricsTest, CountersAddAcrossThreads) {
  MetricsRegistry r;
  Counter* c = r.GetCounter("requests_total", "requests");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back([c] { for (int i = 0; i < 1000; ++i) c->Add(); });
  for (auto& t : threads) t.join();
  EXPECT_EQ(c->value(), 4000);
  EXPECT_EQ(r.GetCounter("requests_total", "ignored"), c);  // same name, same metric
}

TEST(MetricsTest, HistogramBucketsAreCumulativeInTheTextFormat) {
  MetricsRegistry r;
  Histogram* h = r.GetHistogram("ttft_ms", "time to first token", {1, 10, 100});
  for (double v : {0.5, 5.0, 5.0, 50.0, 500.0}) h->Observe(v);
  EXPECT_EQ(h->count(), 5);
  EXPECT_DOUBLE_EQ(h->sum(), 560.5);
  const std::string text = r.RenderText();
  EXPECT_NE(text.find("# TYPE ttft_ms histogram"), std::string::npos) << text;
  EXPECT_NE(text.find("ttft_ms_bucket{le=\"1\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("ttft_ms_bucket{le=\"10\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("ttft_ms_bucket{le=\"100\"} 4\n"), std::string::npos) << text;
  EXPECT_NE(text.find("ttft_ms_bucket{le=\"+Inf\"} 5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("ttft_ms_count 5\n"), std::string::npos) << text;
}

TEST(MetricsTest, GaugesRenderTheirLastValue) {
  MetricsRegistry r;
  r.GetGauge("active_sequences", "sequences decoding")->Set(7);
  EXPECT_NE(r.RenderText().find("active_sequences 7\n"), std::string::npos);
}

TEST(MetricsTest, CollectorsCopyOutsideCountsAtEveryRender) {
  MetricsRegistry r;
  double outside = 3;  // a count kept by someone else (e.g. a KV store)
  r.AddCollector([&r, &outside] {
    r.GetCounter("store_hits_total", "hits of the store")->SetTotal(outside);
  });
  EXPECT_NE(r.RenderText().find("store_hits_total 3\n"), std::string::npos);
  outside = 11;
  EXPECT_NE(r.RenderText().find("store_hits_total 11\n"), std::string::npos);
}

}  // namespace
}  // namespace blockserve
