// tls_overhead_bench: what the trust boundary costs. Two copies of the whole system run
// side by side on loopback — one plaintext (--insecure), one as deployed (mutual TLS
// between services, TLS and a bearer token at the router) — over the same random-weight
// model, and the same requests alternate between them:
//   - TTFT of a block-cached request (passages ingested, one new token): as the router
//     measures it (request received -> first token sent), and as the client sees it
//     (call start -> answer, which adds the client's own TLS hop);
//   - KV handoff throughput prefill -> decoder: QueryPrefill.Prefill called as a router
//     with a long inline prompt; PrefillStats.handoff_ms and kv_bytes_handed_off.
// Medians (min–max) per mode and the TLS / plaintext ratio go to a table and to
// <out>/tls_overhead.{md,csv}; the machine's load average is printed with them.
//
// It reuses the end-to-end tests' process launcher (tests/blockserve_system.h), which
// is test-only code, so this binary is testonly; run it with `bazel run -c opt`.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "engine/tiny_model.h"
#include "bench/summary.h"
#include "tests/blockserve_system.h"

ABSL_FLAG(int, passages, 8, "passages per TTFT request (all cached)");
ABSL_FLAG(int, passage_tokens, 150, "tokens per passage");
ABSL_FLAG(int, handoff_tokens, 2048, "prompt tokens of each handoff request");
ABSL_FLAG(int, repeats, 15, "requests per mode and measure");
ABSL_FLAG(std::string, out, "bench/results", "folder for tls_overhead.{md,csv}");

namespace bs = blockserve;
namespace v1 = blockserve::v1;
using bs::security::Role;

namespace {

using Cell = blockserve::bench::Summary;
using blockserve::bench::Summarize;

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return absl::StrCat(one, " ", five, " ", fifteen);
}

// Prefill of `request` straight to the system's first prefill, as its router would call
// it, handing off to its first decoder. The response's stats, or the error.
absl::StatusOr<v1::PrefillStats> PrefillAsRouter(bs::testing::BlockServeSystem& sys,
                                                 v1::PrefillRequest request) {
  request.mutable_decoder()->set_address(sys.decoder(0).address());
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Minutes(5)));
  v1::PrefillResponse response;
  const grpc::Status s =
      v1::QueryPrefill::NewStub(
          sys.InternalChannel(Role::kRouter, Role::kPrefill, sys.prefill(0).address()))
          ->Prefill(&context, request, &response);
  if (!s.ok()) return absl::UnavailableError(s.error_message());
  return response.stats();
}

int Run() {
  bs::engine::TinyModelOptions o;
  o.hidden_size = 256, o.intermediate_size = 768, o.num_layers = 4, o.num_heads = 8,
  o.num_kv_heads = 2;
  o.max_position_embeddings = 8192;
  const std::string model_dir =
      (std::filesystem::temp_directory_path() / "blockserve-tls-bench-small").string();
  if (absl::Status s = bs::engine::WriteTinyModel(model_dir, o); !s.ok()) {
    return std::cerr << s << "\n", 1;
  }
  const std::string load_before = LoadAverage();
  std::unique_ptr<bs::testing::BlockServeSystem> systems[2];  // [0] plaintext, [1] TLS
  for (int tls = 0; tls < 2; ++tls) {
    bs::testing::SystemOptions so;
    so.model_dir = model_dir;
    so.tls = tls == 1;
    so.encoder_args = {"--kv_dtype=f32"};
    so.prefill_args = so.encoder_args;
    absl::StatusOr<std::unique_ptr<bs::testing::BlockServeSystem>> sys =
        bs::testing::BlockServeSystem::Start(so);
    if (!sys.ok()) return std::cerr << "starting the services: " << sys.status() << "\n", 1;
    systems[tls] = *std::move(sys);
  }

  std::mt19937_64 rng(1);
  std::uniform_int_distribution<int32_t> byte(0, 255);  // byte tokens: every id is valid
  std::vector<v1::Passage> passages(absl::GetFlag(FLAGS_passages));
  v1::GenerateRequest ask;
  ask.set_query("Which of the passages above mention the river? Answer:");
  ask.mutable_sampling()->set_max_new_tokens(1);
  for (size_t i = 0; i < passages.size(); ++i) {
    passages[i].set_id(absl::StrCat("p-", i));
    for (int t = 0; t < absl::GetFlag(FLAGS_passage_tokens); ++t) {
      passages[i].mutable_token_ids()->add_ids(byte(rng));
    }
    ask.add_passages()->set_passage_id(passages[i].id());
  }
  v1::PrefillRequest handoff;
  handoff.set_query("Summarize.");
  handoff.mutable_sampling()->set_max_new_tokens(2);  // 1 would end at the prefill
  v1::PassageRef* long_passage = handoff.add_passages();
  for (int t = 0; t < absl::GetFlag(FLAGS_handoff_tokens); ++t) {
    long_passage->mutable_token_ids()->add_ids(byte(rng));
  }

  std::vector<double> router_ttft[2], client_ttft[2], handoff_mbps[2], handoff_ms[2];
  uint64_t handoff_bytes = 0;
  for (int tls = 0; tls < 2; ++tls) {
    if (absl::StatusOr<v1::IngestResponse> r = systems[tls]->Ingest(passages); !r.ok()) {
      return std::cerr << "ingest: " << r.status() << "\n", 1;
    }
  }
  const int repeats = absl::GetFlag(FLAGS_repeats);
  for (int r = -1; r < repeats; ++r) {  // r = -1: warm-up (connections, first cache fill)
    for (int i = 0; i < 2; ++i) {
      const int tls = (r + i) % 2 == 0 ? 0 : 1;  // alternate which mode goes first
      bs::testing::GenerateResult g =
          bs::testing::Generate(systems[tls]->router(), ask, absl::Minutes(5));
      if (!g.status.ok() || !g.summary) {
        return std::cerr << "generate: " << g.status.error_message() << "\n", 1;
      }
      absl::StatusOr<v1::PrefillStats> h = PrefillAsRouter(*systems[tls], handoff);
      if (!h.ok()) return std::cerr << "prefill: " << h.status() << "\n", 1;
      if (r < 0) continue;
      router_ttft[tls].push_back(g.summary->ttft_ms());
      client_ttft[tls].push_back(g.seconds * 1e3);
      handoff_ms[tls].push_back(h->handoff_ms());
      handoff_mbps[tls].push_back(h->kv_bytes_handed_off() / 1e6 / (h->handoff_ms() / 1e3));
      handoff_bytes = h->kv_bytes_handed_off();
    }
  }
  for (auto& sys : systems) {
    if (absl::Status s = sys->Shutdown(); !s.ok()) std::cerr << "shutdown: " << s << "\n";
  }
  const std::string load_after = LoadAverage();

  std::string table =
      "| measure | plaintext | mTLS + token | TLS / plaintext (medians) |\n|---|---:|---:|---:|\n";
  std::string csv = "measure,mode,median,min,max\n";
  const struct {
    const char* name;
    std::vector<double>* values;
  } rows[] = {{"TTFT at the router, ms", router_ttft},
              {"TTFT at the client, ms", client_ttft},
              {"handoff time, ms", handoff_ms},
              {"handoff throughput, MB/s", handoff_mbps}};
  for (const auto& row : rows) {
    const Cell plain = Summarize(row.values[0]), tls = Summarize(row.values[1]);
    absl::StrAppend(&table, absl::StrFormat("| %s | %.2f (%.2f–%.2f) | %.2f (%.2f–%.2f) | %.2f |\n",
                                            row.name, plain.median, plain.min, plain.max,
                                            tls.median, tls.min, tls.max,
                                            tls.median / plain.median));
    for (int m = 0; m < 2; ++m) {
      const Cell c = m == 0 ? plain : tls;
      absl::StrAppend(&csv, absl::StrFormat("\"%s\",%s,%.3f,%.3f,%.3f\n", row.name,
                                            m == 0 ? "plaintext" : "mtls", c.median, c.min,
                                            c.max));
    }
  }
  const std::string setup = absl::StrFormat(
      "Random-weight small model (4 layers, hidden 256, 8/2 heads), CPU, each system's four "
      "services as processes on loopback, shared-memory store (f32). TTFT: %d cached "
      "passages of %d tokens and a short query, 1 new token. Handoff: a %d-token prompt, %.1f "
      "MB of F32 KV per handoff. %d requests per mode, alternating; median (min–max). Load "
      "average before: %s; after: %s.",
      absl::GetFlag(FLAGS_passages), absl::GetFlag(FLAGS_passage_tokens),
      absl::GetFlag(FLAGS_handoff_tokens), handoff_bytes / 1e6, repeats, load_before, load_after);
  std::cout << setup << "\n\n" << table;
  const std::string out = absl::GetFlag(FLAGS_out);
  std::filesystem::create_directories(out);
  std::ofstream(out + "/tls_overhead.md")
      << "# What TLS costs: plaintext vs mutual TLS and bearer tokens, same run\n\n"
      << setup << "\n\n" << table;
  std::ofstream(out + "/tls_overhead.csv") << csv;
  std::cerr << "wrote " << out << "/tls_overhead.{md,csv}\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "TTFT and KV-handoff throughput with and without the trust boundary (mTLS, tokens).\n"
      "Usage: bazel run -c opt //bench/security:tls_overhead_bench -- --out $PWD/bench/results");
  absl::ParseCommandLine(argc, argv);
  return Run();
}
