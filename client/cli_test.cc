#include "client/cli.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "router/backend_pool.h"
#include "router/fake_backends.h"
#include "router/router_core.h"
#include "router/router_service.h"

namespace blockserve::client {
namespace {

using router::testing::FakeDecoder;
using router::testing::FakeEncoder;
using router::testing::FakePrefill;
using router::testing::FakeServer;

// A real router (core + gRPC service) in front of fake backends, all in-process.
class CliTest : public ::testing::Test {
 protected:
  CliTest() : prefill_server_({&prefill_}), decoder_server_({&decoder_}), encoder_server_({&encoder_}) {
    prefill_.set_address(prefill_server_.address());
    decoder_.set_address(decoder_server_.address());
    router::BackendPoolOptions o;
    o.prefill = {prefill_server_.address()};
    o.decoder = {decoder_server_.address()};
    o.encoder = {encoder_server_.address()};
    pool_ = std::make_unique<router::BackendPool>(o);
    pool_->CheckAllNow();
    core_ = std::make_unique<router::RouterCore>(pool_.get(), router::RouterOptions{}, &metrics_);
    service_ = std::make_unique<router::RouterService>(core_.get(), /*tenants=*/nullptr);
    router_server_ = std::make_unique<FakeServer>(std::vector<grpc::Service*>{service_.get()});
  }

  struct Run {
    int code;
    std::string out, err;
  };
  // The fake router here is plaintext: every run says --insecure (see CliRaw).
  Run Cli(std::vector<std::string> args) {
    args.insert(args.begin(), "--insecure");
    return CliRaw(std::move(args));
  }
  Run CliRaw(const std::vector<std::string>& args, const std::string& job_index = "") {
    std::ostringstream out, err;
    CliEnv env{.out = &out, .err = &err, .default_router = router_server_->address()};
    env.job_completion_index = job_index;
    const int code = RunCli(args, env);
    return {code, out.str(), err.str()};
  }

  std::string WriteCorpus(const std::string& text) {
    const std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/corpus.jsonl";
    std::ofstream(path) << text;
    return path;
  }

  FakePrefill prefill_;
  FakeDecoder decoder_;
  FakeEncoder encoder_;
  FakeServer prefill_server_, decoder_server_, encoder_server_;
  MetricsRegistry metrics_;
  std::unique_ptr<router::BackendPool> pool_;
  std::unique_ptr<router::RouterCore> core_;
  std::unique_ptr<router::RouterService> service_;
  std::unique_ptr<FakeServer> router_server_;
};

TEST_F(CliTest, HelpListsTheCommands) {
  Run r = Cli({"--help"});
  EXPECT_EQ(r.code, kExitOk);
  for (const char* word : {"ingest", "ask", "stats", "wait", "Exit codes"}) {
    EXPECT_NE(r.out.find(word), std::string::npos) << word;
  }
}

TEST_F(CliTest, UsageErrorsExitWithTwo) {
  EXPECT_EQ(Cli({}).code, kExitUsage);
  EXPECT_EQ(Cli({"fly"}).code, kExitUsage);
  EXPECT_EQ(Cli({"ask"}).code, kExitUsage);                       // no question
  EXPECT_EQ(Cli({"ask", "--mode=sideways", "q?"}).code, kExitUsage);
  EXPECT_EQ(Cli({"ask", "--temperature=-1", "q?"}).code, kExitUsage);
  EXPECT_EQ(Cli({"ask", "--batch=3", "q?"}).code, kExitUsage);     // ingest's flag
  EXPECT_EQ(Cli({"ask", "--nope", "q?"}).code, kExitUsage);
  EXPECT_EQ(Cli({"ask", "bad \xff utf8"}).code, kExitUsage);
  EXPECT_EQ(Cli({"ingest"}).code, kExitUsage);
  EXPECT_EQ(Cli({"ingest", "/nonexistent.jsonl"}).code, kExitUsage);
  EXPECT_EQ(prefill_.calls(), 0);
}

TEST_F(CliTest, IngestReportsNewThenCachedPassages) {
  const std::string corpus = WriteCorpus(
      "{\"id\": \"a\", \"text\": \"Alpha.\"}\n{\"id\": \"b\", \"text\": \"Beta.\"}\n"
      "{\"id\": \"c\", \"text\": \"Gamma.\"}\n");
  Run first = Cli({"ingest", corpus, "--batch=2"});
  EXPECT_EQ(first.code, kExitOk) << first.err;
  EXPECT_NE(first.out.find("ingested 3 passages"), std::string::npos) << first.out;
  EXPECT_NE(first.out.find("3 encoded"), std::string::npos) << first.out;
  EXPECT_NE(first.err.find("ingest 2/3 passages"), std::string::npos) << first.err;
  EXPECT_NE(first.err.find("ETA"), std::string::npos) << first.err;
  Run second = Cli({"ingest", corpus});
  EXPECT_EQ(second.code, kExitOk);
  EXPECT_NE(second.out.find("0 encoded"), std::string::npos) << second.out;
  EXPECT_NE(second.out.find("3 already cached"), std::string::npos) << second.out;
}

// The counts of the final line "ingested N passages ...: E encoded ..., C already cached".
struct Counts {
  int total = -1, encoded = -1, cached = -1;
};
Counts ParseSummary(const std::string& out) {
  Counts c;
  const size_t at = out.find("ingested ");
  if (at == std::string::npos) return c;
  std::sscanf(out.c_str() + at, "ingested %d", &c.total);
  const size_t colon = out.find(" s: ", at);  // after "in 0.01 s"
  if (colon == std::string::npos) return c;
  std::sscanf(out.c_str() + colon, " s: %d encoded", &c.encoded);
  const size_t cached = out.find("), ", colon);
  if (cached != std::string::npos) std::sscanf(out.c_str() + cached, "), %d already cached", &c.cached);
  return c;
}

TEST_F(CliTest, ShardsSplitTheCorpusAndARerunResumes) {
  auto corpus_of = [&](const std::string& prefix) {
    std::string text;
    for (int i = 0; i < 40; ++i) {
      text += "{\"id\": \"" + prefix + std::to_string(i) + "\", \"text\": \"" + prefix +
              " text " + std::to_string(i) + ".\"}\n";
    }
    return WriteCorpus(text);
  };
  for (int count : {1, 3, 5}) {
    // Passages new to the store: a passage that two shards both sent would be reported
    // as cached by the second, one that no shard sent would be missing from the sum.
    const std::string corpus = corpus_of("c" + std::to_string(count) + "-");
    int encoded = 0;
    for (int index = 0; index < count; ++index) {
      Run r = Cli({"ingest", corpus, "--shard=" + std::to_string(index) + "/" + std::to_string(count)});
      ASSERT_EQ(r.code, kExitOk) << r.err;
      const Counts c = ParseSummary(r.out);
      EXPECT_EQ(c.encoded, c.total) << r.out;
      EXPECT_EQ(c.cached, 0) << r.out;
      encoded += c.encoded;
      if (count > 1) {
        EXPECT_NE(r.out.find("(shard " + std::to_string(index) + "/" + std::to_string(count) +
                             ": "),
                  std::string::npos)
            << r.out;
        EXPECT_NE(r.err.find("ingest shard " + std::to_string(index) + "/"), std::string::npos)
            << r.err;
      }
    }
    EXPECT_EQ(encoded, 40) << count << " shards";
  }
  const std::string corpus = corpus_of("c3-");
  // The index from $JOB_COMPLETION_INDEX (an indexed Job's pod), as --shard=1/3 would.
  Run by_flag = Cli({"ingest", corpus, "--shard=1/3"});
  Run by_env = CliRaw({"--insecure", "ingest", corpus, "--shards=3"}, /*job_index=*/"1");
  ASSERT_EQ(by_env.code, kExitOk) << by_env.err;
  EXPECT_EQ(ParseSummary(by_env.out).total, ParseSummary(by_flag.out).total);
  // Resumable: a rerun of a shard finds all its passages cached and encodes none.
  const Counts rerun = ParseSummary(by_env.out);
  EXPECT_EQ(rerun.encoded, 0) << by_env.out;
  EXPECT_EQ(rerun.cached, rerun.total) << by_env.out;
}

TEST_F(CliTest, BadShardFlagsAreUsageErrors) {
  const std::string corpus = WriteCorpus("{\"id\": \"a\", \"text\": \"Alpha.\"}\n");
  for (const char* bad : {"--shard=3/3", "--shard=-1/3", "--shard=1", "--shard=0/0", "--shard=a/b"}) {
    Run r = Cli({"ingest", corpus, bad});
    EXPECT_EQ(r.code, kExitUsage) << bad;
    EXPECT_NE(r.err.find("--shard"), std::string::npos) << r.err;
  }
  Run no_index = Cli({"ingest", corpus, "--shards=2"});  // no $JOB_COMPLETION_INDEX
  EXPECT_EQ(no_index.code, kExitUsage);
  EXPECT_NE(no_index.err.find("JOB_COMPLETION_INDEX"), std::string::npos) << no_index.err;
  EXPECT_EQ(CliRaw({"--insecure", "ingest", corpus, "--shards=2"}, "2").code, kExitUsage);
  EXPECT_EQ(Cli({"ingest", corpus, "--shard=0/2", "--shards=2"}).code, kExitUsage);
  EXPECT_EQ(Cli({"ask", "--shard=0/2", "q?"}).code, kExitUsage);  // ingest's flag
  // None of them sent anything: the passage is new to the store now.
  Run r = Cli({"ingest", corpus});
  EXPECT_EQ(ParseSummary(r.out).encoded, 1) << r.out;
}

TEST_F(CliTest, ProgressInALogIsThrottledButTheLastBatchIsAlwaysShown) {
  std::string text;
  for (int i = 0; i < 10; ++i) {
    text += "{\"id\": \"q" + std::to_string(i) + "\", \"text\": \"T" + std::to_string(i) + ".\"}\n";
  }
  const std::string corpus = WriteCorpus(text);
  auto lines = [](const std::string& err) {
    int n = 0;
    for (size_t at = err.find("ingest "); at != std::string::npos; at = err.find("ingest ", at + 1)) ++n;
    return n;
  };
  // Not a terminal, 10 batches of 1 well inside an hour: the first and the last line only.
  Run quiet = Cli({"ingest", corpus, "--batch=1", "--progress_s=3600"});
  ASSERT_EQ(quiet.code, kExitOk) << quiet.err;
  EXPECT_EQ(lines(quiet.err), 2) << quiet.err;
  EXPECT_NE(quiet.err.find("ingest 1/10 passages"), std::string::npos) << quiet.err;
  EXPECT_NE(quiet.err.find("ingest 10/10 passages"), std::string::npos) << quiet.err;
  // --progress_s=0: a line per batch.
  Run every = Cli({"ingest", corpus, "--batch=1", "--progress_s=0"});
  EXPECT_EQ(lines(every.err), 10) << every.err;
  // Several files are one corpus.
  const std::string second = std::string(std::getenv("TEST_TMPDIR")) + "/second.jsonl";
  std::ofstream(second) << "{\"id\": \"z\", \"text\": \"Zed.\"}\n";
  Run both = Cli({"ingest", corpus, second});
  ASSERT_EQ(both.code, kExitOk) << both.err;
  EXPECT_NE(both.out.find("ingested 11 passages from 2 files"), std::string::npos) << both.out;
  // A folder is its *.jsonl files (other files are not read).
  const std::string dir = std::string(std::getenv("TEST_TMPDIR")) + "/corpus_dir";
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/b.jsonl") << "{\"id\": \"d1\", \"text\": \"D one.\"}\n";
  std::ofstream(dir + "/a.jsonl") << "{\"id\": \"d2\", \"text\": \"D two.\"}\n";
  std::ofstream(dir + "/notes.txt") << "not a passage\n";
  Run folder = Cli({"ingest", dir});
  ASSERT_EQ(folder.code, kExitOk) << folder.err;
  EXPECT_NE(folder.out.find("ingested 2 passages from 2 files"), std::string::npos) << folder.out;
  EXPECT_EQ(Cli({"ingest", std::string(std::getenv("TEST_TMPDIR"))}).code, kExitOk);  // has corpus.jsonl
  const std::string empty = std::string(std::getenv("TEST_TMPDIR")) + "/empty_dir";
  std::filesystem::create_directories(empty);
  EXPECT_EQ(Cli({"ingest", empty}).code, kExitUsage);
}

TEST_F(CliTest, IngestWithRejectedPassagesExitsWithOne) {
  const std::string corpus = WriteCorpus("{\"id\": \"a\", \"text\": \"\"}\n");
  Run r = Cli({"ingest", corpus});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_NE(r.err.find("rejected a: INVALID_ARGUMENT"), std::string::npos) << r.err;
}

TEST_F(CliTest, AskStreamsTheAnswerThenTheSummary) {
  Run r = Cli({"ask", "--passage", "a", "--passage=b,c", "--max_new_tokens=3", "Who", "wrote", "it?"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "<100><101><102>\n");
  EXPECT_NE(r.err.find("TTFT"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("15 reused from cache"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("saved"), std::string::npos) << r.err;
  const v1::PrefillRequest sent = prefill_.last_request();
  EXPECT_EQ(sent.query(), "Who wrote it?");
  ASSERT_EQ(sent.passages_size(), 3);
  EXPECT_EQ(sent.passages(2).passage_id(), "c");
  EXPECT_EQ(sent.block_options().mode(), v1::ATTENTION_MODE_BLOCK);
}

TEST(TerminalSafeTest, ReplacesControlCharactersButNewlinesAndTabs) {
  EXPECT_EQ(TerminalSafe("a\tb\nc"), "a\tb\nc");
  EXPECT_EQ(TerminalSafe("\x1b[31mred\x7f"), "\xef\xbf\xbd[31mred\xef\xbf\xbd");
  EXPECT_EQ(TerminalSafe("caf\xc3\xa9"), "caf\xc3\xa9");
}

TEST_F(CliTest, AskJsonAndFullMode) {
  Run r = Cli({"ask", "--json", "--mode=full", "--max_new_tokens=2", "q?"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_NE(r.out.find("\"text\":\"<100><101>\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"ttft_ms\""), std::string::npos) << r.out;
  EXPECT_EQ(prefill_.last_request().block_options().mode(), v1::ATTENTION_MODE_FULL);
}

TEST_F(CliTest, ServerErrorsExitWithOneAndUnreachableWithThree) {
  prefill_.FailNext(grpc::StatusCode::NOT_FOUND);
  Run r = Cli({"ask", "--passage=missing", "q?"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_NE(r.err.find("NOT_FOUND"), std::string::npos) << r.err;
  Run down = Cli({"--router=127.0.0.1:1", "--timeout_s=5", "stats"});
  EXPECT_EQ(down.code, kExitUnreachable);
  EXPECT_NE(down.err.find("is the router running"), std::string::npos) << down.err;
}

TEST_F(CliTest, StatsAndWaitSeeTheBackends) {
  ASSERT_EQ(Cli({"ask", "q?"}).code, kExitOk);
  Run stats = Cli({"stats"});
  EXPECT_EQ(stats.code, kExitOk);
  EXPECT_NE(stats.out.find("requests 1 (0 failed"), std::string::npos) << stats.out;
  EXPECT_NE(stats.out.find("decoder"), std::string::npos) << stats.out;
  EXPECT_NE(stats.out.find("healthy"), std::string::npos) << stats.out;
  Run wait = Cli({"wait", "--timeout_s=5"});
  EXPECT_EQ(wait.code, kExitOk) << wait.err;
  EXPECT_NE(wait.out.find("3 healthy backends"), std::string::npos) << wait.out;
}

TEST_F(CliTest, TheRouterIsReachedOverTlsUnlessInsecureIsSaidAndATokenNeverInPlaintext) {
  // Neither --tls_ca nor --insecure: a usage error that says what to give.
  Run r = CliRaw({"stats"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_NE(r.err.find("--tls_ca"), std::string::npos) << r.err;
  // A token with --insecure would travel in plaintext: refused before any call.
  const std::string token = WriteCorpus("secret-token\n");
  r = CliRaw({"--insecure", "--token_file=" + token, "stats"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_NE(r.err.find("plaintext"), std::string::npos) << r.err;
  // An unreadable token file is a usage error naming it.
  r = CliRaw({"--tls_ca=" + token, "--token_file=/nonexistent/token", "stats"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_NE(r.err.find("/nonexistent/token"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace blockserve::client
