// A cluster on one machine (issue 18): 2 routers, 3 prefills, 2 decoders and 2 encoders,
// every prefill and encoder with a node-local shared-memory tier in front of a shared
// Redis Cluster (3 masters, 3 replicas, started by the test), all on loopback with mTLS
// and tokens; the routers and prefills find their peers through discovery files.
// Driven through both routers:
//  - answers equal those of a single-node system (one of each service, one shared-memory
//    store) for the same prompts, token for token (greedy, f32 KV);
//  - placement affinity holds across routers: a passage set asked again, through either
//    router, goes to the prefill that encoded it (≥ 90% of repeats), so the node-local
//    tier keeps hitting;
//  - while clients run, a prefill, a decoder and a Redis master are killed and a prefill
//    is added: no request is lost. What fails is UNAVAILABLE (the streams on the killed
//    decoder; a passage whose catalog entry is on the dead master, until its replica is
//    promoted) and succeeds when the client retries; no answer is wrong; the new prefill
//    takes load without any restart.
// The figures (requests, failures, hit rates per router, what each kill cost) are
// printed as a table.
#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/testing/sockets.h"
#include "kv_store/redis/testing/redis_server.h"
#include "tests/blockserve_system.h"

namespace blockserve::testing {
namespace {

constexpr int kNewTokens = 6;

engine::TinyModelOptions Model() {
  engine::TinyModelOptions o;
  o.seed = 18;
  return o;
}

// Passage sets of 2-4 passages from the test corpus, deterministic.
std::vector<std::vector<std::string>> PassageSets(const std::vector<v1::Passage>& passages,
                                                  int count) {
  std::vector<std::vector<std::string>> sets;
  const int n = static_cast<int>(passages.size());
  for (int s = 0; s < count; ++s) {
    std::vector<std::string> ids;
    const int size = 2 + s % 3;
    for (int k = 0; k < size; ++k) ids.push_back(passages[(s * 7 + k * 3) % n].id());
    sets.push_back(std::move(ids));
  }
  return sets;
}

v1::GenerateRequest Ask(const std::vector<std::string>& ids, int s) {
  v1::GenerateRequest r;
  for (const std::string& id : ids) r.add_passages()->set_passage_id(id);
  r.set_query(absl::StrCat("Question ", s, ": what do these passages say?"));
  r.mutable_sampling()->set_max_new_tokens(kNewTokens);
  r.mutable_sampling()->set_ignore_eos(true);
  return r;
}

// The answers of a single-node system to every set.
std::vector<std::vector<int32_t>> SingleNodeAnswers(const std::string& model_dir,
                                                    const std::vector<v1::Passage>& passages,
                                                    const std::vector<std::vector<std::string>>& sets) {
  std::vector<std::vector<int32_t>> answers;
  absl::StatusOr<std::unique_ptr<BlockServeSystem>> sys =
      BlockServeSystem::Start({.model_dir = model_dir});
  EXPECT_TRUE(sys.ok()) << sys.status();
  if (!sys.ok()) return answers;
  absl::StatusOr<v1::IngestResponse> ingested = (*sys)->Ingest(passages);
  EXPECT_TRUE(ingested.ok()) << ingested.status();
  for (size_t s = 0; s < sets.size(); ++s) {
    const GenerateResult r = Generate((*sys)->router(), Ask(sets[s], static_cast<int>(s)));
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
    answers.push_back(r.tokens);
  }
  EXPECT_TRUE((*sys)->Shutdown().ok());
  return answers;
}

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::string> dir = TinyModelDir(Model());
    ASSERT_TRUE(dir.ok()) << dir.status();
    model_dir_ = *dir;
    absl::StatusOr<std::vector<v1::Passage>> passages = TestPassages();
    ASSERT_TRUE(passages.ok()) << passages.status();
    passages_ = *passages;
    sets_ = PassageSets(passages_, 24);
  }

  absl::StatusOr<std::unique_ptr<BlockServeSystem>> StartCluster() {
    absl::StatusOr<std::unique_ptr<kv_store::testing::RedisCluster>> redis =
        kv_store::testing::RedisCluster::Start({.masters = 3, .replicas_per_master = 1});
    if (!redis.ok()) return redis.status();
    redis_ = *std::move(redis);
    return BlockServeSystem::Start({.model_dir = model_dir_,
                                    .store = "tiered",
                                    .redis_cluster = redis_->SeedAddresses(),
                                    .prefills = 3,
                                    .decoders = 2,
                                    .encoders = 2,
                                    .routers = 2,
                                    .metrics = true,
                                    .discovery_files = true});
  }

  std::string model_dir_;
  std::vector<v1::Passage> passages_;
  std::vector<std::vector<std::string>> sets_;
  std::unique_ptr<kv_store::testing::RedisCluster> redis_;
};

TEST_F(ClusterTest, AnswersAffinityAndKillsAcrossTwoRouters) {
  const std::vector<std::vector<int32_t>> reference =
      SingleNodeAnswers(model_dir_, passages_, sets_);
  ASSERT_EQ(reference.size(), sets_.size());

  absl::StatusOr<std::unique_ptr<BlockServeSystem>> started = StartCluster();
  ASSERT_TRUE(started.ok()) << started.status();
  BlockServeSystem& sys = **started;
  // Half the corpus through each router (each router spreads over both encoders).
  {
    const size_t half = passages_.size() / 2;
    std::vector<v1::Passage> first(passages_.begin(), passages_.begin() + half);
    std::vector<v1::Passage> second(passages_.begin() + half, passages_.end());
    grpc::ClientContext context;
    v1::IngestRequest request;
    for (const v1::Passage& p : second) *request.add_passages() = p;
    v1::IngestResponse response;
    ASSERT_TRUE(sys.Ingest(first).ok());
    const grpc::Status s = sys.router(1).Ingest(&context, request, &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  // 1. Every set once, alternating routers: the single node's answers, token for token.
  std::map<int, std::string> home;  // set → the prefill that served it first
  for (size_t s = 0; s < sets_.size(); ++s) {
    const GenerateResult r = Generate(sys.router(s % 2), Ask(sets_[s], static_cast<int>(s)));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.tokens, reference[s]) << "set " << s << " through router " << s % 2;
    ASSERT_TRUE(r.summary.has_value());
    home[static_cast<int>(s)] = r.summary->prefill_server();
  }

  // 2. Each set asked again 3 times through the other routers in turn: the same prefill,
  //    so its blocks come from that prefill's node-local tier, not the shared Redis.
  auto local_tier = [&sys](const char* what) {
    double total = 0;
    for (int p = 0; p < 3; ++p) {
      total += ScrapeMetric(sys.metrics_port(sys.prefill(p)),
                            absl::StrCat("blockserve_kv_store_local_", what, "_total"))
                   .value_or(-1e9);
    }
    return total;
  };
  const double local_hits_before = local_tier("hits"), local_misses_before = local_tier("misses");
  struct PerRouter {
    int requests = 0, same_prefill = 0;
    uint64_t hits = 0, misses = 0;
  };
  PerRouter per_router[2];
  for (int round = 0; round < 3; ++round) {
    for (size_t s = 0; s < sets_.size(); ++s) {
      const int router = static_cast<int>((s + round + 1) % 2);
      const GenerateResult r = Generate(sys.router(router), Ask(sets_[s], static_cast<int>(s)));
      ASSERT_TRUE(r.status.ok()) << r.status.error_message();
      EXPECT_EQ(r.tokens, reference[s]);
      PerRouter& pr = per_router[router];
      pr.requests += 1;
      pr.same_prefill += r.summary->prefill_server() == home[static_cast<int>(s)];
      pr.hits += r.summary->cache_hits();
      pr.misses += r.summary->cache_misses();
    }
  }
  std::string table = "\nrouter | repeats | same prefill | block hits | block misses\n";
  for (int router = 0; router < 2; ++router) {
    const PerRouter& pr = per_router[router];
    absl::StrAppend(&table,
                    absl::StrFormat("%6d | %7d | %5.1f%% | %10d | %12d\n", router, pr.requests,
                                    100.0 * pr.same_prefill / pr.requests, pr.hits, pr.misses));
    EXPECT_GE(pr.same_prefill, 0.9 * pr.requests) << "router " << router;
    EXPECT_GE(pr.hits, 0.9 * (pr.hits + pr.misses)) << "router " << router;
  }
  const double local_hits = local_tier("hits") - local_hits_before;
  const double local_misses = local_tier("misses") - local_misses_before;
  absl::StrAppend(&table, absl::StrFormat("node-local tier of the prefills: %.0f hits, %.0f misses "
                                          "(%.1f%% hits)\n",
                                          local_hits, local_misses,
                                          100 * local_hits / (local_hits + local_misses)));
  std::cout << table;
  EXPECT_GE(local_hits, 0.9 * (local_hits + local_misses));

  // 3. Clients on both routers while a prefill and a decoder are killed.
  std::atomic<bool> stop{false};
  std::atomic<int> requests{0}, failed{0}, retried{0}, wrong{0};
  absl::Mutex mu;
  std::map<std::string, int> failures;  // status → failed attempts
  std::map<std::string, int> served_by;  // prefill address → requests, after the addition
  std::atomic<bool> added{false};
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; !stop.load(); ++i) {
        const int s = (c * 5 + i) % static_cast<int>(sets_.size());
        const v1::GenerateRequest request = Ask(sets_[s], s);
        GenerateResult r = Generate(sys.router((c + i) % 2), request, absl::Seconds(30));
        requests.fetch_add(1);
        // The client's retry policy: UNAVAILABLE is retried through the other router,
        // up to 5 attempts 300 ms apart (a Redis failover takes about 2-3 s here).
        for (int attempt = 1; !r.status.ok(); ++attempt) {
          {
            absl::MutexLock lock(&mu);
            failures[absl::StrCat(r.status.error_code(), " ", r.status.error_message())] += 1;
          }
          if (r.status.error_code() != grpc::StatusCode::UNAVAILABLE || attempt == 5) break;
          retried.fetch_add(1);
          absl::SleepFor(absl::Milliseconds(300));
          r = Generate(sys.router((c + i + attempt) % 2), request, absl::Seconds(30));
        }
        if (!r.status.ok()) {
          failed.fetch_add(1);
          continue;
        }
        if (r.tokens != reference[s]) wrong.fetch_add(1);
        if (added.load() && r.summary.has_value()) {
          absl::MutexLock lock(&mu);
          served_by[r.summary->prefill_server()] += 1;
        }
      }
    });
  }
  absl::SleepFor(absl::Seconds(1));
  const int before_kills = requests.load();
  sys.prefill(0).Kill();
  absl::SleepFor(absl::Seconds(2));
  const int after_prefill_kill = requests.load();
  sys.decoder(0).Kill();
  absl::SleepFor(absl::Seconds(2));
  const int after_decoder_kill = requests.load();
  const int retried_before_redis = retried.load();
  // (No ASSERT while the clients run: their threads must be joined first.)
  absl::StatusOr<int> killed_master = redis_->KillMaster(0);
  EXPECT_TRUE(killed_master.ok()) << killed_master.status();
  const absl::Time master_killed = absl::Now();
  EXPECT_TRUE(redis_->WaitForFailover(absl::Seconds(20)).ok());
  const double failover_s = absl::ToDoubleSeconds(absl::Now() - master_killed);
  absl::SleepFor(absl::Seconds(1));
  const int retried_at_redis = retried.load() - retried_before_redis;
  const int after_redis_kill = requests.load();
  // A new prefill, listed where the routers look: no router restarts.
  absl::StatusOr<int> added_prefill = sys.AddPrefill();
  EXPECT_TRUE(added_prefill.ok()) << added_prefill.status();
  const std::string new_prefill =
      added_prefill.ok() ? sys.prefill(*added_prefill).address() : "(none)";
  added.store(true);
  absl::SleepFor(absl::Seconds(3));
  stop.store(true);
  for (std::thread& t : clients) t.join();

  std::cout << absl::StrFormat(
      "Redis master (node %d) killed: failover in %.1f s, %d requests meanwhile, %d client "
      "retries\n",
      killed_master.value_or(-1), failover_s, after_redis_kill - after_decoder_kill, retried_at_redis);
  std::cout << absl::StrFormat("requests after the addition: %d; served by prefill after %s was added:",
                               requests.load() - after_redis_kill, new_prefill);
  for (const auto& [address, n] : served_by) std::cout << " " << address << "=" << n;
  std::cout << "\n";
  EXPECT_GT(served_by[new_prefill], 0) << "the added prefill took no load";
  std::cout << absl::StrFormat(
      "requests %d (before the kills %d, after the prefill kill %d, after the decoder kill "
      "%d): %d client retries after UNAVAILABLE, %d failed after retries, %d wrong answers\n",
      requests.load(), before_kills, after_prefill_kill, after_decoder_kill, retried.load(),
      failed.load(), wrong.load());
  for (const auto& [what, n] : failures) std::cout << "  failed attempts: " << n << " × " << what << "\n";
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(requests.load(), after_prefill_kill) << "no request completed after the kills";
  // Every failure the clients saw was UNAVAILABLE (the streams on the killed decoder,
  // the catalog entries on the dead master until the failover).
  for (const auto& [what, n] : failures) {
    EXPECT_EQ(what.rfind(absl::StrCat(grpc::StatusCode::UNAVAILABLE, " "), 0), 0u) << what;
  }
  EXPECT_TRUE(sys.Shutdown().ok());
}

}  // namespace
}  // namespace blockserve::testing
