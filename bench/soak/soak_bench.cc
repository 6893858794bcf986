// soak_bench: does any service's memory keep growing under a long mixed load? The four
// services run as real processes on loopback, as deployed (mTLS, tokens) over a real
// redis-server, and `--clients` threads send `--requests` requests drawn from a mix:
//   normal      named passages, a few new tokens
//   new text    an inline passage never seen (a miss, encoded and written back)
//   cancelled   the client cancels after the first tokens
//   deadline    a deadline too short to finish (cancelled by gRPC mid-flight)
//   invalid     an empty query or an unknown passage id
// while Redis is SIGSTOPped for `--fault_ms` every `--fault_every_s` (stuck store:
// timeouts, back-off, recompute). Every second it records each service's resident
// memory (VmRSS and RssAnon from /proc/<pid>/status). The table gives, per service, RSS
// after the warm-up tenth of the run, at half-way and at the end, and the growth over
// the second half; <out>/soak.md and soak.csv (the whole curve) are written.
//
// It reuses the end-to-end tests' process launcher (tests/blockserve_system.h), which is
// test-only code, so this binary is testonly; run it with `bazel run -c opt`.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "engine/tiny_model.h"
#include "kv_store/redis/testing/redis_server.h"
#include "tests/blockserve_system.h"

ABSL_FLAG(int, requests, 4000, "requests in all");
ABSL_FLAG(int, clients, 6, "concurrent client threads");
ABSL_FLAG(int, fault_every_s, 10, "how often Redis is stopped (0: never)");
ABSL_FLAG(int, fault_ms, 500, "how long Redis stays stopped each time");
ABSL_FLAG(std::string, out, "bench/results", "folder for soak.{md,csv}");

namespace bs = blockserve;
namespace v1 = blockserve::v1;

namespace {

struct Memory {
  int64_t rss_kb = 0;
  int64_t anon_kb = 0;
};

Memory MemoryOf(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  Memory m;
  std::string key;
  int64_t value = 0;
  std::string unit;
  while (in >> key) {
    if (key == "VmRSS:" && in >> value >> unit) m.rss_kb = value;
    if (key == "RssAnon:" && in >> value >> unit) m.anon_kb = value;
  }
  return m;
}

enum class Kind { kNormal, kNewText, kCancelled, kDeadline, kInvalid };
constexpr const char* kKindNames[] = {"normal", "new text", "cancelled", "deadline", "invalid"};

Kind Draw(std::mt19937_64& rng) {
  const int r = std::uniform_int_distribution<int>(0, 99)(rng);
  if (r < 55) return Kind::kNormal;
  if (r < 70) return Kind::kNewText;
  if (r < 80) return Kind::kCancelled;
  if (r < 90) return Kind::kDeadline;
  return Kind::kInvalid;
}

// Sends one request of `kind`; returns its final gRPC code.
grpc::StatusCode Send(v1::Router::Stub& router, Kind kind, const std::vector<std::string>& ids,
                      std::mt19937_64& rng, int serial) {
  v1::GenerateRequest request;
  request.set_query("What is this passage about? Answer:");
  request.mutable_sampling()->set_max_new_tokens(12);
  request.mutable_sampling()->set_ignore_eos(true);
  for (int i = 0; i < 3; ++i) {
    request.add_passages()->set_passage_id(
        ids[std::uniform_int_distribution<size_t>(0, ids.size() - 1)(rng)]);
  }
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
  switch (kind) {
    case Kind::kNormal:
      break;
    case Kind::kNewText:
      request.add_passages()->set_text(absl::StrCat("A passage written for request ", serial,
                                                    ", never seen before."));
      break;
    case Kind::kCancelled:
      request.mutable_sampling()->set_max_new_tokens(200);
      break;
    case Kind::kDeadline:
      request.mutable_sampling()->set_max_new_tokens(200);
      context.set_deadline(absl::ToChronoTime(
          absl::Now() + absl::Milliseconds(std::uniform_int_distribution<int>(5, 60)(rng))));
      break;
    case Kind::kInvalid:
      if (serial % 2 == 0) {
        request.clear_query();
      } else {
        request.mutable_passages(0)->set_passage_id("no-such-passage");
      }
      break;
  }
  std::unique_ptr<grpc::ClientReader<v1::GenerateEvent>> reader =
      router.Generate(&context, request);
  v1::GenerateEvent event;
  int chunks = 0;
  while (reader->Read(&event)) {
    if (kind == Kind::kCancelled && ++chunks == 2) context.TryCancel();
  }
  return reader->Finish().error_code();
}

int Run() {
  bs::engine::TinyModelOptions o;
  o.hidden_size = 128, o.intermediate_size = 384, o.num_layers = 2, o.num_heads = 4,
  o.num_kv_heads = 2;
  o.max_position_embeddings = 2048;
  const std::string model_dir =
      (std::filesystem::temp_directory_path() / "blockserve-soak-model").string();
  if (absl::Status s = bs::engine::WriteTinyModel(model_dir, o); !s.ok()) {
    return std::cerr << s << "\n", 1;
  }
  absl::StatusOr<std::unique_ptr<bs::kv_store::testing::RedisServer>> redis =
      bs::kv_store::testing::RedisServer::Start();
  if (!redis.ok()) return std::cerr << "redis: " << redis.status() << "\n", 1;
  bs::testing::SystemOptions so;
  so.model_dir = model_dir;
  so.store = "redis";
  so.redis_port = (*redis)->port();
  absl::StatusOr<std::unique_ptr<bs::testing::BlockServeSystem>> started =
      bs::testing::BlockServeSystem::Start(so);
  if (!started.ok()) return std::cerr << "starting the services: " << started.status() << "\n", 1;
  bs::testing::BlockServeSystem& sys = **started;

  std::vector<v1::Passage> passages(40);
  std::vector<std::string> ids;
  for (size_t i = 0; i < passages.size(); ++i) {
    passages[i].set_id(absl::StrCat("soak-", i));
    passages[i].set_text(absl::StrCat("Passage ", i, " tells of the harbour town number ", i,
                                      " and of the ships that sail from it every morning."));
    ids.push_back(passages[i].id());
  }
  if (absl::StatusOr<v1::IngestResponse> r = sys.Ingest(passages); !r.ok()) {
    return std::cerr << "ingest: " << r.status() << "\n", 1;
  }

  const std::map<std::string, pid_t> services = {{"router", sys.router_process().pid()},
                                                 {"query_prefill", sys.prefill(0).pid()},
                                                 {"decoder", sys.decoder(0).pid()},
                                                 {"passage_encoder", sys.encoder().pid()}};
  const int total = absl::GetFlag(FLAGS_requests);
  std::atomic<int> next{0}, done{0};
  std::mutex mu;
  std::map<std::pair<int, int>, int> outcomes;  // (kind, code) -> count
  std::vector<std::thread> clients;
  const absl::Time start = absl::Now();
  for (int c = 0; c < absl::GetFlag(FLAGS_clients); ++c) {
    clients.emplace_back([&, c] {
      std::mt19937_64 rng(1000 + c);
      for (int serial; (serial = next.fetch_add(1)) < total;) {
        const Kind kind = Draw(rng);
        const grpc::StatusCode code = Send(sys.router(), kind, ids, rng, serial);
        {
          std::lock_guard<std::mutex> lock(mu);
          ++outcomes[{static_cast<int>(kind), static_cast<int>(code)}];
        }
        done.fetch_add(1);
      }
    });
  }

  std::string csv = "seconds,requests_done,service,rss_kb,anon_kb\n";
  struct Sample {
    double seconds;
    int done;
    Memory memory;
  };
  std::map<std::string, std::vector<Sample>> curve;
  const absl::Duration fault_every = absl::Seconds(absl::GetFlag(FLAGS_fault_every_s));
  absl::Time next_fault = start + fault_every;
  int faults = 0;
  while (done.load() < total) {
    absl::SleepFor(absl::Seconds(1));
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    for (const auto& [name, pid] : services) {
      const Memory m = MemoryOf(pid);
      curve[name].push_back({seconds, done.load(), m});
      absl::StrAppend(&csv, absl::StrFormat("%.1f,%d,%s,%d,%d\n", seconds, done.load(), name,
                                            m.rss_kb, m.anon_kb));
    }
    if (fault_every > absl::ZeroDuration() && absl::Now() >= next_fault) {
      (*redis)->Pause();
      absl::SleepFor(absl::Milliseconds(absl::GetFlag(FLAGS_fault_ms)));
      (*redis)->Resume();
      ++faults;
      next_fault = absl::Now() + fault_every;
    }
    std::cerr << "\r" << done.load() << " / " << total << " requests" << std::flush;
  }
  std::cerr << "\n";
  for (std::thread& t : clients) t.join();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const absl::Status shutdown = sys.Shutdown();

  // RSS at a point of the run: the first sample with at least `fraction` of the requests.
  auto at = [&](const std::vector<Sample>& s, double fraction) {
    for (const Sample& x : s) {
      if (x.done >= fraction * total) return x.memory;
    }
    return s.back().memory;
  };
  std::string table =
      "| service | RSS at 10% MB | RSS at 50% MB | RSS at end MB | anon at 50% → end MB | "
      "growth over the second half |\n|---|---:|---:|---:|---:|---:|\n";
  for (const auto& [name, samples] : curve) {
    if (samples.empty()) continue;
    const Memory a = at(samples, 0.1), b = at(samples, 0.5), e = samples.back().memory;
    absl::StrAppend(&table, absl::StrFormat("| %s | %.1f | %.1f | %.1f | %.1f → %.1f | %+.1f%% |\n",
                                            name, a.rss_kb / 1024.0, b.rss_kb / 1024.0,
                                            e.rss_kb / 1024.0, b.anon_kb / 1024.0,
                                            e.anon_kb / 1024.0,
                                            100.0 * (e.rss_kb - b.rss_kb) / b.rss_kb));
  }
  std::string mix = "| request kind | status | count |\n|---|---|---:|\n";
  for (const auto& [key, count] : outcomes) {
    absl::StrAppend(&mix, absl::StrFormat(
                              "| %s | %s | %d |\n", kKindNames[key.first],
                              absl::StatusCodeToString(static_cast<absl::StatusCode>(key.second)),
                              count));
  }
  const std::string setup = absl::StrFormat(
      "%d requests from %d clients in %.0f s over the four services (mTLS, tokens) and a real "
      "redis-server, which was SIGSTOPped for %d ms %d times. Random-weight 2-layer model, "
      "CPU. Shutdown: %s.",
      total, absl::GetFlag(FLAGS_clients), seconds, absl::GetFlag(FLAGS_fault_ms), faults,
      shutdown.ok() ? "every service exited 0" : std::string(shutdown.message()));
  std::cout << setup << "\n\n" << table << "\n" << mix;
  const std::string out = absl::GetFlag(FLAGS_out);
  std::filesystem::create_directories(out);
  std::ofstream(out + "/soak.md") << "# Soak: resident memory under a long mixed load\n\n"
                                  << setup << "\n\n" << table << "\n" << mix;
  std::ofstream(out + "/soak.csv") << csv;
  std::cerr << "wrote " << out << "/soak.{md,csv}\n";
  return shutdown.ok() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Resident memory of every service under thousands of mixed requests and store faults.\n"
      "Usage: bazel run -c opt //bench/soak:soak_bench -- --out $PWD/bench/results");
  absl::ParseCommandLine(argc, argv);
  return Run();
}
