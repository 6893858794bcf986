#include "client/cli.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <filesystem>
#include <iterator>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/router_client.h"

namespace blockserve::client {
namespace {

struct FlagSpec {
  std::string_view name;
  bool takes_value;
};

constexpr FlagSpec kFlags[] = {
    {"router", true},        {"timeout_s", true},   {"help", false},     {"json", false},
    {"batch", true},         {"force", false},      {"passage", true},   {"mode", true},
    {"max_new_tokens", true}, {"temperature", true}, {"top_p", true},     {"top_k", true},
    {"seed", true},          {"system", true},      {"global_blocks", true}, {"stop", true},
    {"ignore_eos", false},   {"request_id", true},   {"tls_ca", true},    {"token_file", true},
    {"insecure", false},     {"shard", true},       {"shards", true},    {"progress_s", true},
};

const std::map<std::string, std::set<std::string>>& CommandFlags() {
  static const auto* m = new std::map<std::string, std::set<std::string>>{
      {"ingest", {"batch", "force", "shard", "shards", "progress_s"}},
      {"ask",
       {"passage", "mode", "max_new_tokens", "temperature", "top_p", "top_k", "seed", "system",
        "global_blocks", "stop", "ignore_eos", "request_id"}},
      {"stats", {}},
      {"wait", {}},
  };
  return *m;
}

struct Args {
  std::string command;
  std::vector<std::string> positional;          // after the command
  std::map<std::string, std::vector<std::string>> flags;  // every occurrence, in order

  bool Has(const std::string& name) const { return flags.contains(name); }
  std::string Get(const std::string& name, std::string fallback = "") const {
    auto it = flags.find(name);
    return it == flags.end() ? fallback : it->second.back();
  }
  bool Bool(const std::string& name) const {
    const std::string v = Get(name, "false");
    return v == "true" || v == "1" || v == "";
  }
};

absl::StatusOr<Args> ParseArgs(const std::vector<std::string>& argv) {
  Args a;
  bool only_positional = false;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (!only_positional && arg == "--") {
      only_positional = true;
      continue;
    }
    if (!only_positional && (arg == "-h" || arg == "--help")) {
      a.flags["help"].push_back("true");
      continue;
    }
    if (only_positional || arg.size() < 3 || arg.rfind("--", 0) != 0) {
      if (a.command.empty()) {
        a.command = arg;
      } else {
        a.positional.push_back(arg);
      }
      continue;
    }
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (const size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    const FlagSpec* spec = nullptr;
    for (const FlagSpec& f : kFlags) {
      if (f.name == name) spec = &f;
    }
    if (spec == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    if (spec->takes_value && !value) {
      if (i + 1 >= argv.size()) {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
      }
      value = argv[++i];
    }
    if (!spec->takes_value && value && *value != "true" && *value != "false" && *value != "1" &&
        *value != "0") {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " takes no value (or true/false)"));
    }
    a.flags[name].push_back(value.value_or("true"));
  }
  return a;
}

template <typename T>
absl::StatusOr<T> Number(const Args& a, const std::string& name, T fallback, T lo, T hi) {
  if (!a.Has(name)) return fallback;
  T v{};
  const std::string text = a.Get(name);
  bool ok = false;
  if constexpr (std::is_floating_point_v<T>) {
    ok = absl::SimpleAtod(text, &v);
  } else {
    ok = absl::SimpleAtoi(text, &v);
  }
  if (!ok || v < lo || v > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, " must be a number in [", lo, ", ", hi, "], found \"", text, "\""));
  }
  return v;
}

int ExitFor(const absl::Status& s) {
  if (s.code() == absl::StatusCode::kUnavailable || s.code() == absl::StatusCode::kDeadlineExceeded) {
    return kExitUnreachable;
  }
  return kExitFailed;
}

// The channel the flags ask for: TLS with the CA and token, or plaintext with --insecure.
absl::StatusOr<std::shared_ptr<grpc::Channel>> ConnectFromFlags(const Args& a, const CliEnv& env,
                                                                const std::string& router) {
  const bool insecure = a.Has("insecure");
  RouterCredentials credentials;
  credentials.ca_file = a.Get("tls_ca", insecure ? "" : env.default_tls_ca);
  const std::string token_file = a.Get("token_file", insecure ? "" : env.default_token_file);
  if (insecure && (!credentials.ca_file.empty() || !token_file.empty())) {
    return absl::InvalidArgumentError(
        "--insecure is plaintext without a token; it does not go with --tls_ca or --token_file");
  }
  if (!insecure && credentials.ca_file.empty()) {
    return absl::InvalidArgumentError(
        "the router is reached over TLS: give its CA with --tls_ca=FILE (or "
        "$BLOCKSERVE_TLS_CA), or --insecure for a local plaintext router");
  }
  if (!token_file.empty()) {
    absl::StatusOr<std::string> token = ReadTokenFile(token_file);
    if (!token.ok()) return token.status();
    credentials.token = *std::move(token);
  }
  return RouterClient::Connect(router, credentials);
}

int ReportRpcError(const CliEnv& env, const std::string& command, const std::string& router,
                   const absl::Status& s) {
  *env.err << "blockserve " << command << ": " << absl::StatusCodeToString(s.code()) << ": "
           << s.message() << "\n";
  if (s.code() == absl::StatusCode::kUnavailable) {
    *env.err << "  (is the router running at " << router << "? set it with --router=HOST:PORT)\n";
  } else if (s.code() == absl::StatusCode::kUnauthenticated) {
    *env.err << "  (give your token with --token_file=FILE or $BLOCKSERVE_TOKEN_FILE)\n";
  }
  return ExitFor(s);
}

std::string FinishName(v1::FinishReason r) {
  std::string name = v1::FinishReason_Name(r);
  if (name.empty()) name = "unspecified";
  return absl::AsciiStrToLower(absl::StripPrefix(name, "FINISH_REASON_"));
}

std::string RoleName(v1::BackendRole r) {
  return absl::AsciiStrToLower(absl::StripPrefix(v1::BackendRole_Name(r), "BACKEND_ROLE_"));
}

std::string Duration(double seconds) {
  if (seconds < 60) return absl::StrFormat("%.0fs", seconds);
  return absl::StrFormat("%dm%02ds", static_cast<int>(seconds) / 60, static_cast<int>(seconds) % 60);
}

// ─────────────────────────────────── ingest ──────────────────────────────────

// Which share of the corpus this process ingests: --shard=INDEX/COUNT, or --shards=COUNT
// with INDEX from $JOB_COMPLETION_INDEX (set by Kubernetes in each pod of an indexed
// Job). {0, 1} (everything) without either.
struct Shard {
  int index = 0;
  int count = 1;
};

absl::StatusOr<Shard> ShardFromFlags(const Args& a, const CliEnv& env) {
  constexpr int kMaxShards = 1 << 16;
  Shard shard;
  if (a.Has("shard") && a.Has("shards")) {
    return absl::InvalidArgumentError("give --shard=INDEX/COUNT or --shards=COUNT, not both");
  }
  std::string index_text;
  std::string count_text;
  std::string what;
  if (a.Has("shard")) {
    const std::string v = a.Get("shard");
    const size_t slash = v.find('/');
    if (slash == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--shard must be INDEX/COUNT (e.g. 0/4), found \"", v, "\""));
    }
    index_text = v.substr(0, slash);
    count_text = v.substr(slash + 1);
    what = absl::StrCat("--shard=", v);
  } else if (a.Has("shards")) {
    if (env.job_completion_index.empty()) {
      return absl::InvalidArgumentError(
          "--shards=COUNT takes this shard's index from $JOB_COMPLETION_INDEX (set in the pods "
          "of an indexed Kubernetes Job), which is not set; use --shard=INDEX/COUNT");
    }
    index_text = env.job_completion_index;
    count_text = a.Get("shards");
    what = absl::StrCat("--shards=", count_text, " with $JOB_COMPLETION_INDEX=", index_text);
  } else {
    return shard;
  }
  if (!absl::SimpleAtoi(count_text, &shard.count) || shard.count < 1 ||
      shard.count > kMaxShards || !absl::SimpleAtoi(index_text, &shard.index) ||
      shard.index < 0 || shard.index >= shard.count) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": COUNT must be in [1, ", kMaxShards, "] and INDEX in [0, COUNT)"));
  }
  return shard;
}

int Ingest(const Args& a, const CliEnv& env, RouterClient& client, const std::string& router) {
  if (a.positional.empty()) {
    *env.err << "blockserve ingest: expected one or more FILE.jsonl or folders (see --help)\n";
    return kExitUsage;
  }
  absl::StatusOr<int> batch = Number<int>(a, "batch", 32, 1, 1024);
  if (!batch.ok()) return *env.err << "blockserve ingest: " << batch.status().message() << "\n", kExitUsage;
  absl::StatusOr<double> progress_s = Number<double>(a, "progress_s", 10, 0, 86400);
  if (!progress_s.ok()) {
    *env.err << "blockserve ingest: " << progress_s.status().message() << "\n";
    return kExitUsage;
  }
  absl::StatusOr<Shard> shard = ShardFromFlags(a, env);
  if (!shard.ok()) {
    *env.err << "blockserve ingest: " << shard.status().message() << "\n";
    return kExitUsage;
  }
  // A folder stands for its *.jsonl files (not its subfolders), in name order.
  std::vector<std::string> files;
  for (const std::string& arg : a.positional) {
    std::error_code ec;
    if (!std::filesystem::is_directory(arg, ec)) {
      files.push_back(arg);
      continue;
    }
    std::vector<std::string> in_dir;
    for (const auto& entry : std::filesystem::directory_iterator(arg, ec)) {
      if (entry.path().extension() == ".jsonl" && !entry.is_directory()) {
        in_dir.push_back(entry.path().string());
      }
    }
    if (ec || in_dir.empty()) {
      *env.err << "blockserve ingest: " << arg << ": a folder without *.jsonl files"
               << (ec ? absl::StrCat(" (", ec.message(), ")") : "") << "\n";
      return kExitUsage;
    }
    std::sort(in_dir.begin(), in_dir.end());
    files.insert(files.end(), in_dir.begin(), in_dir.end());
  }
  std::vector<v1::Passage> all;
  for (const std::string& file : files) {
    absl::StatusOr<std::vector<v1::Passage>> passages = ReadPassagesJsonl(file);
    if (!passages.ok()) {
      *env.err << "blockserve ingest: " << passages.status().message() << "\n";
      return kExitUsage;
    }
    all.insert(all.end(), std::make_move_iterator(passages->begin()),
               std::make_move_iterator(passages->end()));
  }
  const size_t in_files = all.size();
  const std::vector<v1::Passage> passages =
      shard->count > 1 ? PassagesOfShard(all, shard->index, shard->count) : std::move(all);
  const std::string from =
      files.size() == 1 ? files[0] : absl::StrCat(files.size(), " files");
  const std::string shard_note =
      shard->count > 1
          ? absl::StrFormat(" (shard %d/%d: %d of %d)", shard->index, shard->count,
                            passages.size(), in_files)
          : "";
  IngestOptions options;
  options.batch = *batch;
  options.force_reencode = a.Bool("force");
  // On a terminal one line is redrawn after every batch. Otherwise (a pipe, a file, a
  // pod's log) a line is written after the first batch, then at most every --progress_s
  // seconds, and after the last: a log of a long ingest stays readable.
  double last_line_s = -1;
  auto progress = [&](const IngestProgress& p) {
    const bool last = p.done == p.total;
    if (!env.err_is_terminal && last_line_s >= 0 && !last &&
        p.elapsed_s - last_line_s < *progress_s) {
      return;
    }
    last_line_s = p.elapsed_s;
    const double rate = p.elapsed_s > 0 ? p.done / p.elapsed_s : 0;
    const double tokens_rate = p.elapsed_s > 0 ? p.tokens_encoded / p.elapsed_s : 0;
    const std::string eta = rate > 0 ? Duration((p.total - p.done) / rate) : "?";
    *env.err << (env.err_is_terminal ? "\r" : "")
             << absl::StrFormat("ingest%s %d/%d passages (%d new, %d cached, %d failed) | "
                                "%.1f passages/s, %.0f tokens/s | elapsed %s, ETA %s",
                                shard->count > 1
                                    ? absl::StrFormat(" shard %d/%d", shard->index, shard->count)
                                    : "",
                                p.done, p.total, p.encoded, p.cached, p.failed, rate, tokens_rate,
                                Duration(p.elapsed_s), eta)
             << (env.err_is_terminal ? "" : "\n") << std::flush;
  };
  absl::StatusOr<IngestProgress> done = client.Ingest(passages, options, progress);
  if (env.err_is_terminal && !passages.empty()) *env.err << "\n";
  if (!done.ok()) return ReportRpcError(env, "ingest", router, done.status());
  *env.out << absl::StrFormat(
      "ingested %d passages%s from %s in %.2f s: %d encoded (%d tokens), %d already cached "
      "(%d tokens), %d failed%s\n",
      done->total, shard_note, from, done->elapsed_s, done->encoded, done->tokens_encoded,
      done->cached, done->tokens_cached, done->failed,
      done->encoder.empty() ? "" : absl::StrCat("; encoder ", done->encoder));
  for (size_t i = 0; i < done->failures.size() && i < 20; ++i) {
    *env.err << "  rejected " << done->failures[i] << "\n";
  }
  if (done->failures.size() > 20) *env.err << "  ... and " << done->failures.size() - 20 << " more\n";
  return done->failed == 0 ? kExitOk : kExitFailed;
}

// ──────────────────────────────────── ask ────────────────────────────────────

absl::StatusOr<v1::GenerateRequest> BuildRequest(const Args& a) {
  v1::GenerateRequest r;
  const std::string question = absl::StrJoin(a.positional, " ");
  if (question.empty()) return absl::InvalidArgumentError("ask needs a question");
  if (!IsValidUtf8(question)) return absl::InvalidArgumentError("the question is not valid UTF-8");
  r.set_query(question);
  if (auto it = a.flags.find("passage"); it != a.flags.end()) {
    for (const std::string& list : it->second) {
      for (absl::string_view id : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
        r.add_passages()->set_passage_id(std::string(absl::StripAsciiWhitespace(id)));
      }
    }
  }
  const std::string system = a.Get("system");
  if (!IsValidUtf8(system)) return absl::InvalidArgumentError("--system is not valid UTF-8");
  r.set_system_prompt(system);
  r.set_request_id(a.Get("request_id"));
  const std::string mode = a.Get("mode", "block");
  if (mode == "block") {
    r.mutable_block_options()->set_mode(v1::ATTENTION_MODE_BLOCK);
  } else if (mode == "full") {
    r.mutable_block_options()->set_mode(v1::ATTENTION_MODE_FULL);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("--mode must be block or full, found \"", mode, "\""));
  }
  absl::StatusOr<int> global = Number<int>(a, "global_blocks", 0, 0, 1 << 20);
  if (!global.ok()) return global.status();
  r.mutable_block_options()->set_global_blocks(*global);
  v1::SamplingParams* s = r.mutable_sampling();
  absl::StatusOr<int> max_new = Number<int>(a, "max_new_tokens", 0, 0, 1 << 20);
  absl::StatusOr<double> temperature = Number<double>(a, "temperature", 0, 0, 100);
  absl::StatusOr<double> top_p = Number<double>(a, "top_p", 0, 0, 1);
  absl::StatusOr<int> top_k = Number<int>(a, "top_k", 0, 0, 1 << 30);
  for (const absl::Status& st : {max_new.status(), temperature.status(), top_p.status(), top_k.status()}) {
    if (!st.ok()) return st;
  }
  s->set_max_new_tokens(*max_new);
  s->set_temperature(*temperature);
  s->set_top_p(*top_p);
  s->set_top_k(*top_k);
  if (a.Has("seed")) {
    absl::StatusOr<uint64_t> seed = Number<uint64_t>(a, "seed", 0, 0, ~uint64_t{0});
    if (!seed.ok()) return seed.status();
    s->set_seed(*seed);
  }
  if (auto it = a.flags.find("stop"); it != a.flags.end()) {
    for (const std::string& stop : it->second) s->add_stop(stop);
  }
  s->set_ignore_eos(a.Has("ignore_eos") && a.Bool("ignore_eos"));
  return r;
}

void PrintSummary(const v1::GenerateSummary& s, std::ostream& os) {
  os << absl::StrFormat("[TTFT %.1f ms | total %.1f ms | %d tokens, finish: %s]\n", s.ttft_ms(),
                        s.total_ms(), s.completion_tokens(), FinishName(s.finish_reason()));
  os << absl::StrFormat("[prompt %d tokens: %d reused from cache, %d computed | blocks: %d hits, "
                        "%d misses]\n",
                        s.prompt_tokens(), s.tokens_reused(), s.tokens_computed(), s.cache_hits(),
                        s.cache_misses());
  const double saved = s.flops_full_prefill() > 0
                           ? 100.0 * (1.0 - static_cast<double>(s.flops_to_first_token()) /
                                                static_cast<double>(s.flops_full_prefill()))
                           : 0;
  os << absl::StrFormat("[FLOPs to first token %.3g vs %.3g for a full prefill: %.1f%% saved]\n",
                        static_cast<double>(s.flops_to_first_token()),
                        static_cast<double>(s.flops_full_prefill()), saved);
  os << "[prefill " << s.prefill_server() << " -> decoder "
     << (s.decoder_server().empty() ? "(none)" : s.decoder_server()) << ", request "
     << s.request_id() << "]\n";
}

int Ask(const Args& a, const CliEnv& env, RouterClient& client, const std::string& router,
        absl::Duration timeout) {
  absl::StatusOr<v1::GenerateRequest> request = BuildRequest(a);
  if (!request.ok()) {
    *env.err << "blockserve ask: " << request.status().message() << " (see --help)\n";
    return kExitUsage;
  }
  const bool json = a.Bool("json") && a.Has("json");
  bool streamed = false;
  absl::StatusOr<Answer> answer =
      client.Ask(*request, timeout, [&](const v1::TokenChunk& chunk) {
        if (json) return;
        *env.out << (env.out_is_terminal ? TerminalSafe(chunk.text()) : chunk.text()) << std::flush;
        streamed = true;
      });
  if (streamed) *env.out << "\n" << std::flush;
  if (!answer.ok()) return ReportRpcError(env, "ask", router, answer.status());
  if (json) {
    std::string summary;
    google::protobuf::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    (void)google::protobuf::util::MessageToJsonString(answer->summary, &summary, options);
    nlohmann::json j;
    j["text"] = answer->text;
    j["token_ids"] = answer->token_ids;
    j["summary"] = nlohmann::json::parse(summary, nullptr, false);
    *env.out << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return kExitOk;
  }
  PrintSummary(answer->summary, *env.err);
  return kExitOk;
}

// ─────────────────────────────────── stats ───────────────────────────────────

void PrintStats(const v1::StatsResponse& s, std::ostream& os) {
  os << absl::StrFormat("router up %.1f s | requests %d (%d failed, %d active) | TTFT p50 %.1f ms, "
                        "p90 %.1f ms, p99 %.1f ms\n",
                        s.uptime_s(), s.requests_total(), s.requests_failed(), s.requests_active(),
                        s.ttft_p50_ms(), s.ttft_p90_ms(), s.ttft_p99_ms());
  os << absl::StrFormat("tokens: %d reused, %d computed, %d generated | blocks: %d hits, %d misses "
                        "(hit ratio %.1f%%) | passages ingested %d\n",
                        s.tokens_reused_total(), s.tokens_computed_total(),
                        s.tokens_generated_total(), s.cache_hits_total(), s.cache_misses_total(),
                        100 * s.cache_hit_ratio(), s.passages_ingested_total());
  os << absl::StrFormat("FLOPs to first token %.3g vs %.3g for full prefills\n",
                        static_cast<double>(s.flops_to_first_token_total()),
                        static_cast<double>(s.flops_full_prefill_total()));
  if (s.backends().empty()) return;
  os << "backends:\n";
  for (const v1::BackendStatus& b : s.backends()) {
    os << absl::StrFormat("  %-8s %-22s %-9s in flight %d, requests %d, failed %d\n",
                          RoleName(b.role()), b.address(), b.healthy() ? "healthy" : "UNHEALTHY",
                          b.in_flight(), b.requests_total(), b.requests_failed());
    if (!b.last_error().empty()) os << "           last error: " << b.last_error() << "\n";
  }
}

int Stats(const Args& a, const CliEnv& env, RouterClient& client, const std::string& router,
          absl::Duration timeout) {
  absl::StatusOr<v1::StatsResponse> stats = client.Stats(/*include_backends=*/true, timeout);
  if (!stats.ok()) return ReportRpcError(env, "stats", router, stats.status());
  if (a.Has("json") && a.Bool("json")) {
    std::string json;
    google::protobuf::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    (void)google::protobuf::util::MessageToJsonString(*stats, &json, options);
    *env.out << json << "\n";
  } else {
    PrintStats(*stats, *env.out);
  }
  return kExitOk;
}

// Polls GetStats until every backend the router knows is healthy.
int Wait(const CliEnv& env, RouterClient& client, const std::string& router,
         absl::Duration timeout) {
  const absl::Time give_up = absl::Now() + timeout;
  absl::Status last = absl::UnavailableError("no answer yet");
  while (absl::Now() < give_up) {
    absl::StatusOr<v1::StatsResponse> stats = client.Stats(true, absl::Seconds(2));
    if (stats.ok()) {
      std::vector<std::string> down;
      for (const v1::BackendStatus& b : stats->backends()) {
        if (!b.healthy()) down.push_back(absl::StrCat(RoleName(b.role()), " ", b.address()));
      }
      if (down.empty()) {
        *env.out << "router " << router << " ready with " << stats->backends_size()
                 << " healthy backends\n";
        return kExitOk;
      }
      last = absl::UnavailableError(absl::StrCat("not healthy yet: ", absl::StrJoin(down, ", ")));
    } else {
      last = stats.status();
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
  *env.err << "blockserve wait: gave up after " << absl::FormatDuration(timeout) << ": "
           << last.message() << "\n";
  return kExitUnreachable;
}

}  // namespace

std::string TerminalSafe(const std::string& text) {
  std::string out;
  for (char c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\n' && c != '\t') || u == 0x7f) {
      out += "\xef\xbf\xbd";
    } else {
      out += c;
    }
  }
  return out;
}

std::string CliUsage() {
  return R"(blockserve: the BlockServe command-line client (talks to the router).

Usage:
  blockserve [--router=HOST:PORT] ingest FILE.jsonl|FOLDER... [--batch=32] [--force]
             [--shard=INDEX/COUNT | --shards=COUNT] [--progress_s=10]
      Encodes and caches the passages of the FILEs (a FOLDER: its *.jsonl files), one
      {"id": ..., "text": ...} per line. Progress (passages/s, tokens/s, ETA) goes to stderr: one redrawn line on a
      terminal, else a line at most every --progress_s seconds. Passages already in
      the store are skipped (reported as cached) unless --force, so a rerun resumes.
      --shard=I/COUNT ingests only shard I of COUNT (by a hash of each passage's id):
      COUNT processes with I = 0..COUNT-1 ingest every passage exactly once.
      --shards=COUNT takes I from $JOB_COMPLETION_INDEX (an indexed Kubernetes Job).
  blockserve [--router=HOST:PORT] ask [--passage=ID]... [--mode=block|full]
             [--max_new_tokens=N] [--temperature=T] [--top_p=P] [--top_k=K] [--seed=S]
             [--system=TEXT] [--global_blocks=N] [--stop=STRING]... [--ignore_eos]
             [--json] "QUESTION"
      Answers QUESTION over the given passages (ids from ingest; --passage may repeat
      or hold a comma-separated list). The answer streams to stdout as it is
      generated; then TTFT, tokens reused/computed and FLOPs saved go to stderr.
      --json prints one JSON object {text, token_ids, summary} instead.
  blockserve [--router=HOST:PORT] stats [--json]
      Router counters and the health of every backend.
  blockserve [--router=HOST:PORT] wait [--timeout_s=60]
      Waits until the router answers and all its backends are healthy.

Common flags:
  --router=HOST:PORT   the router (default: $BLOCKSERVE_ROUTER, else localhost:50050)
  --timeout_s=N        deadline of each call (default 300; wait: 60)
  --tls_ca=FILE        CA bundle that the router's certificate must chain to; the call
                       goes over TLS (default: $BLOCKSERVE_TLS_CA)
  --token_file=FILE    file holding your bearer token (first line), sent with every
                       call (default: $BLOCKSERVE_TOKEN_FILE)
  --insecure           plaintext to a local --insecure router, without a token
One of --tls_ca and --insecure is required: a token is never sent in plaintext.

Exit codes: 0 ok; 1 the router answered with an error, or passages were rejected;
2 bad command line or input file; 3 router unreachable or call timed out.
)";
}

int RunCli(const std::vector<std::string>& argv, const CliEnv& env) {
  absl::StatusOr<Args> parsed = ParseArgs(argv);
  if (!parsed.ok()) {
    *env.err << "blockserve: " << parsed.status().message() << " (see --help)\n";
    return kExitUsage;
  }
  const Args& a = *parsed;
  if (a.Has("help")) {
    *env.out << CliUsage();
    return kExitOk;
  }
  if (a.command.empty()) {
    *env.err << CliUsage();
    return kExitUsage;
  }
  auto allowed = CommandFlags().find(a.command);
  if (allowed == CommandFlags().end()) {
    *env.err << "blockserve: unknown command \"" << a.command
             << "\" (expected ingest, ask, stats or wait; see --help)\n";
    return kExitUsage;
  }
  for (const auto& [name, values] : a.flags) {
    const bool global = name == "router" || name == "timeout_s" || name == "json" ||
                        name == "tls_ca" || name == "token_file" || name == "insecure";
    if (!global && !allowed->second.contains(name)) {
      *env.err << "blockserve " << a.command << ": flag --" << name
               << " does not apply to this command (see --help)\n";
      return kExitUsage;
    }
  }
  absl::StatusOr<double> timeout_s =
      Number<double>(a, "timeout_s", a.command == "wait" ? 60 : 300, 0.001, 86400);
  if (!timeout_s.ok()) {
    *env.err << "blockserve: " << timeout_s.status().message() << "\n";
    return kExitUsage;
  }
  const absl::Duration timeout = absl::Seconds(*timeout_s);
  const std::string router = a.Get("router", env.default_router);
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = ConnectFromFlags(a, env, router);
  if (!channel.ok()) {
    *env.err << "blockserve: " << channel.status().message() << " (see --help)\n";
    return kExitUsage;
  }
  RouterClient client(*std::move(channel));
  if (a.command == "ingest") return Ingest(a, env, client, router);
  if (a.command == "ask") return Ask(a, env, client, router, timeout);
  if (a.command == "stats") return Stats(a, env, client, router, timeout);
  if (!a.positional.empty()) {
    *env.err << "blockserve wait: unexpected argument \"" << a.positional[0] << "\"\n";
    return kExitUsage;
  }
  return Wait(env, client, router, timeout);
}

}  // namespace blockserve::client
