// ingest_bench: batch-ingestion throughput (passages/s) with 1 and with 2 passage
// encoders behind the router, the way the ingest Job drives it (k8s/ingest/): the
// services run as real processes on loopback, as deployed (mTLS, tokens) over a real
// redis-server, and `--clients` concurrent clients send Router.Ingest batches of
// `--batch` new passages each (the Job's pods), `--repeats` times per encoder count with
// fresh passages each time. Then the same passages again: a rerun of the Job, which
// must find everything cached. Each encoder runs `--encoder_threads` compute threads, so
// that two encoders can use more of the machine than one.
//
// Prints a table and writes <out>/ingest.{md,csv}. Test-only code (the process launcher
// of the end-to-end tests), so run it with `bazel run -c opt //bench/ingest:ingest_bench`.
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "bench/summary.h"
#include "engine/tiny_model.h"
#include "kv_store/redis/testing/redis_server.h"
#include "tests/blockserve_system.h"

ABSL_FLAG(int, passages, 192, "new passages per measurement");
ABSL_FLAG(int, words, 100, "words per passage (about as many tokens)");
ABSL_FLAG(int, clients, 4, "concurrent ingesting clients");
ABSL_FLAG(int, batch, 8, "passages per Ingest call");
ABSL_FLAG(std::string, encoders, "1,2", "encoder counts to measure");
ABSL_FLAG(int, encoder_threads, 1, "--num_threads of each encoder");
ABSL_FLAG(int, repeats, 3, "measurements per encoder count (the median is reported)");
ABSL_FLAG(std::string, out, "bench/results", "folder for ingest.{md,csv}");

namespace bs = blockserve;
namespace v1 = blockserve::v1;

namespace {

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return absl::StrCat(one, " ", five, " ", fifteen);
}

// `count` passages no earlier run has stored: ids and texts carry `tag`.
std::vector<v1::Passage> NewPassages(const std::string& tag, int count, int words) {
  static const char* kWords[] = {"harbour", "ship",   "morning", "island", "market", "salt",
                                 "bridge",  "lantern", "river",  "stone",  "valley", "weaver",
                                 "copper",  "orchard", "tide",   "signal"};
  std::vector<v1::Passage> passages(count);
  for (int i = 0; i < count; ++i) {
    std::string text = absl::StrCat("Record ", tag, "-", i, ":");
    for (int w = 0; w < words; ++w) {
      absl::StrAppend(&text, " ", kWords[(i * 7 + w * 3 + w / 5) % 16]);
    }
    passages[i].set_id(absl::StrCat("bench-", tag, "-", i));
    passages[i].set_text(text + ".");
  }
  return passages;
}

struct Pass {
  double seconds = 0;
  int encoded = 0, cached = 0, failed = 0;
};

// Ingests `passages` through the router from `clients` threads, `batch` at a time.
Pass IngestAll(bs::testing::BlockServeSystem& sys, const std::vector<v1::Passage>& passages,
               int clients, int batch) {
  std::atomic<size_t> next{0};
  std::atomic<int> encoded{0}, cached{0}, failed{0};
  const absl::Time start = absl::Now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&] {
      for (size_t first; (first = next.fetch_add(batch)) < passages.size();) {
        v1::IngestRequest request;
        for (size_t i = first; i < std::min(passages.size(), first + batch); ++i) {
          *request.add_passages() = passages[i];
        }
        grpc::ClientContext context;
        context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(120)));
        v1::IngestResponse response;
        if (!sys.router().Ingest(&context, request, &response).ok()) {
          failed.fetch_add(request.passages_size());
          continue;
        }
        for (const v1::EncodeResult& r : response.results()) {
          if (r.status().code() != 0) {
            failed.fetch_add(1);
          } else if (r.already_cached()) {
            cached.fetch_add(1);
          } else {
            encoded.fetch_add(1);
          }
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  return {absl::ToDoubleSeconds(absl::Now() - start), encoded.load(), cached.load(),
          failed.load()};
}

int Run() {
  bs::engine::TinyModelOptions o;
  o.hidden_size = 256, o.intermediate_size = 512, o.num_layers = 4, o.num_heads = 8,
  o.num_kv_heads = 2;
  o.max_position_embeddings = 2048;
  const std::string model_dir =
      (std::filesystem::temp_directory_path() / "blockserve-ingest-bench-model").string();
  if (absl::Status s = bs::engine::WriteTinyModel(model_dir, o); !s.ok()) {
    return std::cerr << s << "\n", 1;
  }
  const int count = absl::GetFlag(FLAGS_passages), words = absl::GetFlag(FLAGS_words);
  const int clients = absl::GetFlag(FLAGS_clients), batch = absl::GetFlag(FLAGS_batch);
  const std::string load_before = LoadAverage();

  std::string table =
      "| encoders | passages/s (median) | min | max | rerun: passages/s, all cached | "
      "encoded | failed |\n|---:|---:|---:|---:|---:|---:|---:|\n";
  std::string csv = "encoders,repeat,passages,seconds,passages_per_s,rerun_seconds,encoded,cached,failed\n";
  std::vector<double> medians;
  for (absl::string_view n_text : absl::StrSplit(absl::GetFlag(FLAGS_encoders), ',')) {
    int encoders = 0;
    if (!absl::SimpleAtoi(n_text, &encoders) || encoders < 1) {
      return std::cerr << "--encoders: expected counts like 1,2\n", 2;
    }
    absl::StatusOr<std::unique_ptr<bs::kv_store::testing::RedisServer>> redis =
        bs::kv_store::testing::RedisServer::Start();
    if (!redis.ok()) return std::cerr << "redis: " << redis.status() << "\n", 1;
    bs::testing::SystemOptions so;
    so.model_dir = model_dir;
    so.store = "redis";
    so.redis_port = (*redis)->port();
    so.encoders = encoders;
    so.encoder_args = {absl::StrCat("--num_threads=", absl::GetFlag(FLAGS_encoder_threads))};
    absl::StatusOr<std::unique_ptr<bs::testing::BlockServeSystem>> started =
        bs::testing::BlockServeSystem::Start(so);
    if (!started.ok()) return std::cerr << "starting the services: " << started.status() << "\n", 1;
    bs::testing::BlockServeSystem& sys = **started;

    std::vector<double> rates, rerun_rates;
    int encoded = 0, failed = 0;
    for (int r = 0; r < absl::GetFlag(FLAGS_repeats); ++r) {
      const std::vector<v1::Passage> passages =
          NewPassages(absl::StrCat(encoders, "e", r), count, words);
      const Pass first = IngestAll(sys, passages, clients, batch);
      const Pass rerun = IngestAll(sys, passages, clients, batch);
      rates.push_back(count / first.seconds);
      rerun_rates.push_back(count / rerun.seconds);
      encoded += first.encoded;
      failed += first.failed + rerun.failed + rerun.encoded;  // a rerun must encode nothing
      absl::StrAppend(&csv, absl::StrFormat("%d,%d,%d,%.3f,%.1f,%.3f,%d,%d,%d\n", encoders, r,
                                            count, first.seconds, count / first.seconds,
                                            rerun.seconds, first.encoded, rerun.cached,
                                            first.failed + rerun.failed));
      std::cerr << encoders << " encoder(s), run " << r << ": " << count / first.seconds
                << " passages/s\n";
    }
    const bs::bench::Summary s = bs::bench::Summarize(rates);
    medians.push_back(s.median);
    absl::StrAppend(&table, absl::StrFormat("| %d | %.1f | %.1f | %.1f | %.1f | %d | %d |\n",
                                            encoders, s.median, s.min, s.max,
                                            bs::bench::Summarize(rerun_rates).median, encoded,
                                            failed));
    if (absl::Status st = sys.Shutdown(); !st.ok()) {
      return std::cerr << "shutdown: " << st << "\n", 1;
    }
  }
  const std::string setup = absl::StrFormat(
      "%d new passages of ~%d words per measurement, Router.Ingest from %d clients in batches "
      "of %d, encoders with %d compute thread(s) each, over the services as deployed (mTLS, "
      "tokens) and a real redis-server. Random-weight 4-layer model (hidden 256), CPU, %d "
      "cores; load average before: %s, after: %s. Median of %d runs.",
      count, words, clients, batch, absl::GetFlag(FLAGS_encoder_threads),
      std::thread::hardware_concurrency(), load_before, LoadAverage(),
      absl::GetFlag(FLAGS_repeats));
  std::string ratio;
  if (medians.size() == 2) {
    ratio = absl::StrFormat("\n2 encoders / 1 encoder: ×%.2f\n", medians[1] / medians[0]);
  }
  std::cout << setup << "\n\n" << table << ratio;
  const std::string out = absl::GetFlag(FLAGS_out);
  std::filesystem::create_directories(out);
  std::ofstream(out + "/ingest.md") << "# Batch ingestion throughput\n\n"
                                    << setup << "\n\n" << table << ratio;
  std::ofstream(out + "/ingest.csv") << csv;
  std::cerr << "wrote " << out << "/ingest.{md,csv}\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Batch-ingestion throughput with 1 and 2 passage encoders behind the router.\n"
      "Usage: ingest_bench [--passages N] [--encoders 1,2] [--out DIR]");
  absl::ParseCommandLine(argc, argv);
  return Run();
}
