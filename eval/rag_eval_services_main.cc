// rag_eval_services: the accuracy experiment end to end through the services. It starts
// passage_encoder, query_prefill, decoder and router as real processes on loopback (one
// shared-memory KV store, f32 blocks), ingests the passages of the first --limit examples
// of --data through the router, and asks every question through the router greedily, in
// block mode and in full mode. Answers are scored exactly as rag_eval scores the
// in-process engine, and each one is compared with the in-process engine's answer to the
// same example in the same mode (they must agree token for token). Prints a Markdown
// table; with --out, appends it to that file.
//
// It reuses the end-to-end tests' process launcher (tests/blockserve_system.h), which is
// test-only code, so this binary is marked testonly; run it with `bazel run`:
//
//   bazel run -c opt //eval:rag_eval_services -- --limit 50
//   bazel run -c opt //eval:rag_eval_services -- --out eval/results/accuracy.md
#include <filesystem>
#include <fstream>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/router_client.h"
#include "engine/engine.h"
#include "engine/stopwatch.h"
#include "eval/rag_eval.h"
#include "eval/rag_services.h"
#include "tests/blockserve_system.h"

ABSL_FLAG(std::string, model, "models/blockserve-tiny-rag",
          "model folder (config.json, *.safetensors, tokenizer.json) the services and the "
          "in-process engine load");
ABSL_FLAG(std::string, data, "eval/data/test.jsonl", "held-out examples (JSONL, see eval/rag_eval.h)");
ABSL_FLAG(int64_t, limit, 100, "use the first N examples of --data (>= 1)");
ABSL_FLAG(std::string, out, "",
          "Markdown file to append the section to (\"\": only print)");
ABSL_FLAG(int, threads, 0, "compute threads of each service and of the in-process engine (0: all cores)");

namespace blockserve::eval {
namespace {

constexpr int64_t kMaxNewTokens = 16;  // as rag_eval

absl::Status Run() {
  const int64_t limit = absl::GetFlag(FLAGS_limit);
  const int threads = absl::GetFlag(FLAGS_threads);
  if (limit < 1) return absl::InvalidArgumentError(absl::StrCat("--limit must be >= 1, got ", limit));
  if (threads < 0) {
    return absl::InvalidArgumentError(absl::StrCat("--threads must be >= 0, got ", threads));
  }
  // The services are other processes: they get an absolute path.
  const std::string model_dir =
      std::filesystem::absolute(RepoPath(absl::GetFlag(FLAGS_model))).lexically_normal().string();
  if (!std::filesystem::is_regular_file(model_dir + "/config.json")) {
    return absl::NotFoundError(absl::StrCat("no model folder at ", model_dir,
                                            " (config.json missing); pass --model DIR"));
  }
  absl::StatusOr<std::vector<RagExample>> examples =
      LoadRagExamples(RepoPath(absl::GetFlag(FLAGS_data)));
  if (!examples.ok()) return examples.status();
  if (examples->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(absl::GetFlag(FLAGS_data), " has no examples"));
  }
  if (static_cast<int64_t>(examples->size()) > limit) examples->resize(limit);

  absl::StatusOr<std::unique_ptr<engine::Engine>> engine =
      engine::Engine::Load(model_dir, engine::EngineOptions{threads});
  if (!engine.ok()) return engine.status();

  std::cerr << "starting the services on " << model_dir << "\n";
  testing::SystemOptions so;
  so.model_dir = model_dir;
  if (threads > 0) {
    const std::string t = absl::StrCat("--num_threads=", threads);
    so.encoder_args = so.prefill_args = so.decoder_args = {t};
  }
  absl::StatusOr<std::unique_ptr<testing::BlockServeSystem>> sys =
      testing::BlockServeSystem::Start(so);
  if (!sys.ok()) {
    return absl::Status(sys.status().code(),
                        absl::StrCat("starting the services: ", sys.status().message()));
  }
  client::RouterClient router((*sys)->RouterChannel());

  const std::vector<v1::Passage> passages = PassagesOf(*examples);
  absl::StatusOr<client::IngestProgress> ingested = router.Ingest(
      passages, client::IngestOptions{}, [](const client::IngestProgress& p) {
        std::cerr << absl::StrFormat("\ringest: %d/%d passages (%d encoded, %d cached)", p.done,
                                     p.total, p.encoded, p.cached);
      });
  std::cerr << "\n";
  if (!ingested.ok()) return ingested.status();
  if (ingested->failed > 0) {
    return absl::InternalError(absl::StrCat(ingested->failed, " passages were not ingested; first: ",
                                            ingested->failures.front()));
  }

  std::vector<ModeResult> results;
  for (v1::AttentionMode mode : {v1::ATTENTION_MODE_BLOCK, v1::ATTENTION_MODE_FULL}) {
    ModeResult r;
    r.mode = ModeName(mode);
    blockserve::Stopwatch clock;
    for (size_t i = 0; i < examples->size(); ++i) {
      const RagExample& ex = (*examples)[i];
      absl::StatusOr<ComparedExample> c = CompareExample(router, **engine, ex, mode, kMaxNewTokens);
      if (!c.ok()) {
        return absl::Status(c.status().code(), absl::StrCat(r.mode, " mode, example ", i + 1, ": ",
                                                            c.status().message()));
      }
      if (!c->agree) {
        std::cerr << absl::StrFormat(
            "\n  %s example %d differs: services '%s'%s, in-process engine '%s'%s\n", r.mode, i + 1,
            c->services.generated, c->services.ended_at_eos ? "" : " (no EOS)",
            c->engine.generated, c->engine.ended_at_eos ? "" : " (no EOS)");
      }
      r.Add(*c);
      std::cerr << absl::StrFormat("\r%-5s %d/%d: %.1f%% correct, %d agree", r.mode, i + 1,
                                   examples->size(), r.accuracy.percent(), r.agreements);
    }
    std::cerr << absl::StrFormat(" (%.1fs)\n", clock.ElapsedMs() / 1000);
    results.push_back(std::move(r));
  }
  if (absl::Status s = (*sys)->Shutdown(); !s.ok()) std::cerr << "shutdown: " << s << "\n";

  const std::string section = absl::StrCat(
      "## Through the services\n\n",
      "The same questions asked end to end: passage_encoder, query_prefill, decoder and router "
      "as separate processes on loopback over one shared-memory KV store (f32 blocks), the "
      "passages ingested through the router beforehand, greedy answers of at most ",
      kMaxNewTokens,
      " tokens scored by exact match as rag_eval scores them. \"Same answer\" counts the answers whose "
      "tokens equal the in-process engine's (`engine::Generate`) for the same example and "
      "mode; TTFT is the router's (request received -> first token sent). Produced by "
      "`bazel run -c opt //eval:rag_eval_services -- --model ",
      absl::GetFlag(FLAGS_model), " --data ", absl::GetFlag(FLAGS_data), " --limit ", limit,
      " --threads ", threads, "` (", examples->size(), " examples).\n\n",
      RenderServicesTable(results));
  std::cout << section;
  const std::string out = absl::GetFlag(FLAGS_out);
  if (!out.empty()) {
    std::ofstream file(RepoPath(out), std::ios::app);
    file << "\n" << section;
    file.close();
    if (!file) return absl::InternalError(absl::StrCat("cannot append to ", RepoPath(out)));
    std::cerr << "appended to " << RepoPath(out) << "\n";
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace blockserve::eval

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Asks the held-out RAG questions end to end through the four services (block and full "
      "mode),\nscores them by exact match and checks every answer against the in-process "
      "engine's.\n"
      "Usage: bazel run -c opt //eval:rag_eval_services -- [--model DIR] [--data FILE] "
      "[--limit N] [--out FILE] [--threads N]\n"
      "Relative paths are taken from the repository root under `bazel run`.");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::cerr << "rag_eval_services: unexpected argument '" << rest[1] << "' (see --help)\n";
    return 2;
  }
  if (absl::Status s = blockserve::eval::Run(); !s.ok()) {
    std::cerr << "rag_eval_services: " << s << "\n";
    return 1;
  }
  return 0;
}
