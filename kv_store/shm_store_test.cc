#include "kv_store/shm_store.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kv_store/source.h"

namespace blockserve::kv_store {
namespace {

using engine::KvCache;
using engine::KvShape;

constexpr KvShape kShape{.num_layers = 2, .num_kv_heads = 2, .head_dim = 4};
constexpr uint64_t kFingerprint = 0x5eed5eed12345678ULL;

// A block whose every token and float is a function of (seed, n), so any reader can
// check every byte of what it got back.
KvCache MakeKv(int seed, int num_tokens) {
  KvCache kv(kShape);
  std::vector<int32_t> tokens(num_tokens);
  for (int i = 0; i < num_tokens; ++i) tokens[i] = seed * 1000 + i;
  kv.Append(tokens);
  const int64_t n = num_tokens * kShape.row();
  for (int64_t l = 0; l < kShape.num_layers; ++l) {
    for (int64_t i = 0; i < n; ++i) {
      kv.k(l)[i] = static_cast<float>(seed * 31 + l * 7 + i) * 0.5f;
      kv.v(l)[i] = -static_cast<float>(seed * 17 + l * 5 + i) * 0.25f;
    }
  }
  return kv;
}

BlockKey KeyOf(const KvCache& kv) { return MakeBlockKey(kFingerprint, kv.tokens()); }

// Empty if `kv` is exactly MakeKv(seed, num_tokens); otherwise what differs.
std::string Mismatch(const KvCache& kv, int seed, int num_tokens) {
  const KvCache want = MakeKv(seed, num_tokens);
  if (!(kv.shape() == want.shape())) return "shape";
  if (kv.tokens() != want.tokens()) return "tokens";
  const size_t bytes = num_tokens * kShape.row() * sizeof(float);
  for (int64_t l = 0; l < kShape.num_layers; ++l) {
    if (std::memcmp(kv.k(l), want.k(l), bytes) != 0) return absl::StrCat("K of layer ", l);
    if (std::memcmp(kv.v(l), want.v(l), bytes) != 0) return absl::StrCat("V of layer ", l);
  }
  return "";
}

size_t ValueBytes(int num_tokens) {
  return EncodedValueBytes(kShape, num_tokens, engine::DType::kF32);
}

// Waits for a forked child; returns its exit code, or 128 + signal.
int Wait(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

class ShmStoreTest : public testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    name_ = absl::StrCat("/bs-kv-test-", getpid(), "-", counter++);
    ASSERT_TRUE(ShmStore::Remove(name_).ok());
  }
  void TearDown() override { EXPECT_TRUE(ShmStore::Remove(name_).ok()); }

  ShmStoreOptions Options() const {
    ShmStoreOptions o;
    o.name = name_;
    o.capacity_bytes = 64 << 10;
    o.page_bytes = 1024;
    o.max_entries = 64;
    o.max_passages = 16;
    o.codec = CodecOptions{.model_fingerprint = kFingerprint, .shape = kShape,
                           .dtype = engine::DType::kF32};
    return o;
  }

  std::unique_ptr<ShmStore> OpenStore(const ShmStoreOptions& o) {
    absl::StatusOr<std::unique_ptr<ShmStore>> s = ShmStore::Open(o);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }

  std::string name_;
};

TEST_F(ShmStoreTest, GetReturnsExactlyWhatWasPut) {
  auto store = OpenStore(Options());
  const KvCache kv = MakeKv(1, 10);
  ASSERT_TRUE(store->Put(KeyOf(kv), kv).ok());
  EXPECT_TRUE(store->Contains(KeyOf(kv)));
  absl::StatusOr<KvCache> got = store->Get(KeyOf(kv));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(Mismatch(*got, 1, 10), "");
  const StoreMetrics m = store->metrics();
  EXPECT_EQ(m.puts, 1);
  EXPECT_EQ(m.hits, 1);
  EXPECT_EQ(m.bytes_written, static_cast<int64_t>(ValueBytes(10)));
  EXPECT_EQ(m.bytes_read, static_cast<int64_t>(ValueBytes(10)));
}

TEST_F(ShmStoreTest, AbsentKeyIsNotFoundAndCountedAsMiss) {
  auto store = OpenStore(Options());
  absl::StatusOr<KvCache> got = store->Get(KeyOf(MakeKv(2, 3)));
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(store->Contains(KeyOf(MakeKv(2, 3))));
  EXPECT_EQ(store->metrics().misses, 1);
  EXPECT_EQ(store->metrics().corrupt, 0);
}

TEST_F(ShmStoreTest, GetManyAnswersEachKeyInOrder) {
  auto store = OpenStore(Options());
  const KvCache a = MakeKv(1, 4), c = MakeKv(3, 6);
  ASSERT_TRUE(store->Put(KeyOf(a), a).ok());
  ASSERT_TRUE(store->Put(KeyOf(c), c).ok());
  const std::vector<BlockKey> keys = {KeyOf(a), KeyOf(MakeKv(2, 5)), KeyOf(c)};
  std::vector<absl::StatusOr<KvCache>> got = store->GetMany(keys);
  ASSERT_EQ(got.size(), 3u);
  ASSERT_TRUE(got[0].ok());
  EXPECT_EQ(Mismatch(*got[0], 1, 4), "");
  EXPECT_EQ(got[1].status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(got[2].ok());
  EXPECT_EQ(Mismatch(*got[2], 3, 6), "");
}

TEST_F(ShmStoreTest, PutOfAnotherShapeIsInvalidArgument) {
  auto store = OpenStore(Options());
  KvCache kv(KvShape{.num_layers = 2, .num_kv_heads = 1, .head_dim = 4});
  kv.Append(std::vector<int32_t>{1, 2});
  EXPECT_EQ(store->Put(KeyOf(kv), kv).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(store->Contains(KeyOf(kv)));
}

TEST_F(ShmStoreTest, SourceRoundTripsAndIsAbsentUntilPut) {
  auto store = OpenStore(Options());
  const KvCache kv = MakeKv(1, 5);
  EXPECT_EQ(store->GetSource(KeyOf(kv)).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(store->PutSource(KeyOf(kv), kv.tokens()).ok());
  absl::StatusOr<std::vector<int32_t>> tokens = store->GetSource(KeyOf(kv));
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(*tokens, kv.tokens());
}

TEST_F(ShmStoreTest, SourceOutlivesItsEvictedBlock) {
  auto store = OpenStore(Options());
  const KvCache named = MakeKv(1, 5);
  ASSERT_TRUE(store->Put(KeyOf(named), named).ok());
  ASSERT_TRUE(store->PutSource(KeyOf(named), named.tokens()).ok());
  // Use the named block among others, then push it out with new blocks.
  int seed = 100;
  for (int i = 0; i < 5; ++i) {
    const KvCache other = MakeKv(seed++, 5);
    ASSERT_TRUE(store->Put(KeyOf(other), other).ok());
  }
  ASSERT_TRUE(store->Get(KeyOf(named)).ok());
  while (store->Contains(KeyOf(named))) {
    const KvCache other = MakeKv(seed++, 5);
    ASSERT_TRUE(store->Put(KeyOf(other), other).ok());
    ASSERT_LT(seed, 1000) << "the block was never evicted";
  }
  EXPECT_TRUE(store->Contains(SourceKey(KeyOf(named))));
  absl::StatusOr<std::vector<int32_t>> tokens = store->GetSource(KeyOf(named));
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(*tokens, named.tokens());
}

TEST_F(ShmStoreTest, ValueLargerThanCapacityIsResourceExhausted) {
  ShmStoreOptions o = Options();
  o.capacity_bytes = 4096;
  auto store = OpenStore(o);
  const KvCache big = MakeKv(1, 40);  // ~5.3 KB encoded
  ASSERT_GT(ValueBytes(40), 4096u);
  absl::Status s = store->Put(KeyOf(big), big).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_EQ(store->Usage().entries, 0);
}

TEST_F(ShmStoreTest, OpenWithoutCreateIsNotFoundWhenAbsent) {
  ShmStoreOptions o = Options();
  o.create = false;
  EXPECT_EQ(ShmStore::Open(o).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ShmStoreTest, BadNameIsInvalidArgument) {
  ShmStoreOptions o = Options();
  o.name = "no-leading-slash";
  EXPECT_EQ(ShmStore::Open(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.name = "/a/b";
  EXPECT_EQ(ShmStore::Open(o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ShmStoreTest, LaterOpenerAdoptsTheCreatorsGeometryAndData) {
  auto first = OpenStore(Options());
  const KvCache kv = MakeKv(4, 8);
  ASSERT_TRUE(first->Put(KeyOf(kv), kv).ok());
  ShmStoreOptions o = Options();
  o.capacity_bytes = 1 << 20;  // ignored: the segment exists
  o.max_entries = 7;
  auto second = OpenStore(o);
  absl::StatusOr<KvCache> got = second->Get(KeyOf(kv));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(Mismatch(*got, 4, 8), "");
  EXPECT_EQ(second->Usage().capacity_bytes, 64 << 10);
  EXPECT_EQ(second->Usage().max_entries, 64);
}

TEST_F(ShmStoreTest, ForeignSegmentIsRejected) {
  const int fd = shm_open(name_.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 1 << 16), 0);
  ASSERT_EQ(pwrite(fd, "NOTOURS!", 8, 0), 8);
  close(fd);
  absl::StatusOr<std::unique_ptr<ShmStore>> s = ShmStore::Open(Options());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.status().message().find("not a BlockServe KV segment"), std::string_view::npos)
      << s.status();
}

TEST_F(ShmStoreTest, SegmentWhoseCreatorNeverFinishedTimesOut) {
  const int fd = shm_open(name_.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 1 << 16), 0);  // sized, but the magic never written
  close(fd);
  ShmStoreOptions o = Options();
  o.init_timeout_ms = 50;
  absl::StatusOr<std::unique_ptr<ShmStore>> s = ShmStore::Open(o);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.status().message().find("never initialized"), std::string_view::npos) << s.status();
}

TEST_F(ShmStoreTest, ConcurrentOpenersAgreeOnOneSegment) {
  // Several processes race to create the same name; all must end up sharing it.
  std::vector<pid_t> children;
  for (int c = 0; c < 4; ++c) {
    const pid_t pid = fork();
    if (pid == 0) {
      absl::StatusOr<std::unique_ptr<ShmStore>> s = ShmStore::Open(Options());
      if (!s.ok()) _exit(1);
      const KvCache kv = MakeKv(100 + c, 3);
      _exit((*s)->Put(KeyOf(kv), kv).ok() ? 0 : 2);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) EXPECT_EQ(Wait(pid), 0);
  auto store = OpenStore(Options());
  for (int c = 0; c < 4; ++c) {
    absl::StatusOr<KvCache> got = store->Get(KeyOf(MakeKv(100 + c, 3)));
    ASSERT_TRUE(got.ok()) << c << ": " << got.status();
    EXPECT_EQ(Mismatch(*got, 100 + c, 3), "");
  }
}

TEST_F(ShmStoreTest, AnotherProcessReadsWhatOneProcessWrote) {
  auto store = OpenStore(Options());
  const pid_t writer = fork();
  if (writer == 0) {
    ShmStoreOptions o = Options();
    o.create = false;
    absl::StatusOr<std::unique_ptr<ShmStore>> s = ShmStore::Open(o);
    if (!s.ok()) _exit(1);
    const KvCache kv = MakeKv(7, 20);
    _exit((*s)->Put(KeyOf(kv), kv).ok() ? 0 : 2);
  }
  ASSERT_EQ(Wait(writer), 0);
  absl::StatusOr<KvCache> got = store->Get(KeyOf(MakeKv(7, 20)));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(Mismatch(*got, 7, 20), "");

  const KvCache mine = MakeKv(8, 5);
  ASSERT_TRUE(store->Put(KeyOf(mine), mine).ok());
  const pid_t reader = fork();
  if (reader == 0) {
    ShmStoreOptions o = Options();
    o.create = false;
    absl::StatusOr<std::unique_ptr<ShmStore>> s = ShmStore::Open(o);
    if (!s.ok()) _exit(1);
    absl::StatusOr<KvCache> kv = (*s)->Get(KeyOf(MakeKv(8, 5)));
    _exit(!kv.ok() ? 2 : Mismatch(*kv, 8, 5).empty() ? 0 : 3);
  }
  EXPECT_EQ(Wait(reader), 0);
}

TEST_F(ShmStoreTest, EvictsLeastRecentlyUsedAndGetRefreshes) {
  ShmStoreOptions o = Options();
  o.max_entries = 3;
  auto store = OpenStore(o);
  const KvCache a = MakeKv(1, 2), b = MakeKv(2, 2), c = MakeKv(3, 2), d = MakeKv(4, 2);
  ASSERT_TRUE(store->Put(KeyOf(a), a).ok());
  ASSERT_TRUE(store->Put(KeyOf(b), b).ok());
  ASSERT_TRUE(store->Put(KeyOf(c), c).ok());
  ASSERT_TRUE(store->Get(KeyOf(a)).ok());  // a is now the most recent; b the least
  ASSERT_TRUE(store->Put(KeyOf(d), d).ok());
  EXPECT_TRUE(store->Contains(KeyOf(a)));
  EXPECT_FALSE(store->Contains(KeyOf(b)));
  EXPECT_TRUE(store->Contains(KeyOf(c)));
  EXPECT_TRUE(store->Contains(KeyOf(d)));
  EXPECT_EQ(store->metrics().evictions, 1);
  // Contains does not refresh: c is now the least recent.
  const KvCache e = MakeKv(5, 2);
  ASSERT_TRUE(store->Put(KeyOf(e), e).ok());
  EXPECT_FALSE(store->Contains(KeyOf(c)));
  EXPECT_TRUE(store->Contains(KeyOf(a)));
}

TEST_F(ShmStoreTest, PutReturnsTheBytesItWroteAndZeroForAPresentKey) {
  auto store = OpenStore(Options());
  const KvCache kv = MakeKv(1, 10);
  absl::StatusOr<uint64_t> first = store->Put(KeyOf(kv), kv);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(*first, ValueBytes(10));
  EXPECT_EQ(store->ValueBytes(kv), ValueBytes(10));
  absl::StatusOr<uint64_t> again = store->Put(KeyOf(kv), kv);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, 0u);
}

TEST_F(ShmStoreTest, RemoveTakesTheBlockAndKeepsItsSource) {
  auto store = OpenStore(Options());
  const KvCache kv = MakeKv(1, 10);
  ASSERT_TRUE(store->Put(KeyOf(kv), kv).ok());
  ASSERT_TRUE(store->PutSource(KeyOf(kv), kv.tokens()).ok());
  ASSERT_TRUE(store->Remove(KeyOf(kv)).ok());
  EXPECT_FALSE(store->Contains(KeyOf(kv)));
  EXPECT_TRUE(store->GetSource(KeyOf(kv)).ok());
  EXPECT_TRUE(store->Remove(KeyOf(kv)).ok()) << "removing an absent key is OK";
  absl::StatusOr<uint64_t> again = store->Put(KeyOf(kv), kv);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, ValueBytes(10)) << "after Remove, Put writes again";
}

TEST_F(ShmStoreTest, PutOfPresentKeyRefreshesWithoutWriting) {
  ShmStoreOptions o = Options();
  o.max_entries = 2;
  auto store = OpenStore(o);
  const KvCache a = MakeKv(1, 2), b = MakeKv(2, 2), c = MakeKv(3, 2);
  ASSERT_TRUE(store->Put(KeyOf(a), a).ok());
  ASSERT_TRUE(store->Put(KeyOf(b), b).ok());
  ASSERT_TRUE(store->Put(KeyOf(a), a).ok());
  EXPECT_EQ(store->metrics().bytes_written, static_cast<int64_t>(2 * ValueBytes(2)));
  ASSERT_TRUE(store->Put(KeyOf(c), c).ok());
  EXPECT_TRUE(store->Contains(KeyOf(a)));
  EXPECT_FALSE(store->Contains(KeyOf(b)));
}

TEST_F(ShmStoreTest, EvictsByBytesToStayWithinCapacity) {
  ShmStoreOptions o = Options();
  o.capacity_bytes = 8 * 1024;  // 8 pages
  auto store = OpenStore(o);
  // 20 tokens = 2696 bytes = 3 pages: two fit, a third evicts the oldest.
  const KvCache a = MakeKv(1, 20), b = MakeKv(2, 20), c = MakeKv(3, 20);
  ASSERT_TRUE(store->Put(KeyOf(a), a).ok());
  ASSERT_TRUE(store->Put(KeyOf(b), b).ok());
  EXPECT_EQ(store->Usage().used_bytes, 6 * 1024);
  ASSERT_TRUE(store->Put(KeyOf(c), c).ok());
  EXPECT_FALSE(store->Contains(KeyOf(a)));
  EXPECT_TRUE(store->Contains(KeyOf(b)));
  EXPECT_TRUE(store->Contains(KeyOf(c)));
  EXPECT_EQ(store->Usage().used_bytes, 6 * 1024);
  EXPECT_EQ(store->Usage().value_bytes, static_cast<int64_t>(2 * ValueBytes(20)));
}

TEST_F(ShmStoreTest, CapacityAndEntryBoundsHoldUnderRandomPuts) {
  ShmStoreOptions o = Options();
  o.capacity_bytes = 16 * 1024;
  o.max_entries = 9;
  auto store = OpenStore(o);
  std::mt19937 rng(5);
  for (int i = 0; i < 400; ++i) {
    const KvCache kv = MakeKv(i, 1 + rng() % 60);
    ASSERT_TRUE(store->Put(KeyOf(kv), kv).ok());
    const ShmUsage u = store->Usage();
    ASSERT_LE(u.used_bytes, 16 * 1024);
    ASSERT_LE(u.entries, 9);
    ASSERT_TRUE(store->Contains(KeyOf(kv)));  // the newest always fits
  }
  EXPECT_GT(store->metrics().evictions, 0);
}

TEST_F(ShmStoreTest, CatalogMapsPassageIdsLastWriteWins) {
  auto store = OpenStore(Options());
  const BlockKey k1 = KeyOf(MakeKv(1, 2)), k2 = KeyOf(MakeKv(2, 2));
  EXPECT_FALSE(store->GetPassage("doc-1").has_value());
  ASSERT_TRUE(store->PutPassage("doc-1", k1).ok());
  EXPECT_EQ(store->GetPassage("doc-1"), k1);
  ASSERT_TRUE(store->PutPassage("doc-1", k2).ok());
  EXPECT_EQ(store->GetPassage("doc-1"), k2);
  auto other = OpenStore(Options());
  EXPECT_EQ(other->GetPassage("doc-1"), k2);
  EXPECT_EQ(other->Usage().passages, 1);
}

TEST_F(ShmStoreTest, CatalogRejectsEmptyAndOverlongIds) {
  auto store = OpenStore(Options());
  const BlockKey k = KeyOf(MakeKv(1, 2));
  EXPECT_EQ(store->PutPassage("", k).code(), absl::StatusCode::kInvalidArgument);
  constexpr size_t kMax = ShmStore::kMaxPassageIdBytes;
  EXPECT_EQ(store->PutPassage(std::string(kMax + 1, 'x'), k).code(),
            absl::StatusCode::kInvalidArgument);
  // The longest id a request may name, in the longest tenant namespace, fits.
  const std::string longest = std::string(64, 'n') + '\x1f' + std::string(256, 'x');
  ASSERT_LE(longest.size(), kMax);
  ASSERT_TRUE(store->PutPassage(longest, k).ok());
  EXPECT_EQ(store->GetPassage(longest), k);
}

TEST_F(ShmStoreTest, FullCatalogIsResourceExhaustedButUpdatesStillWork) {
  auto store = OpenStore(Options());  // 16 slots
  const BlockKey k = KeyOf(MakeKv(1, 2));
  for (int i = 0; i < 16; ++i) ASSERT_TRUE(store->PutPassage(absl::StrCat("p", i), k).ok());
  EXPECT_EQ(store->PutPassage("p16", k).code(), absl::StatusCode::kResourceExhausted);
  const BlockKey k2 = KeyOf(MakeKv(2, 2));
  ASSERT_TRUE(store->PutPassage("p3", k2).ok());
  EXPECT_EQ(store->GetPassage("p3"), k2);
}

// Workers share one segment; each op picks a random seed, Puts its block or Gets it
// and checks every byte. Returns the number of bad reads.
int StressWorker(const ShmStoreOptions& o, int worker, int ops) {
  absl::StatusOr<std::unique_ptr<ShmStore>> s = ShmStore::Open(o);
  if (!s.ok()) return 1000;
  std::mt19937 rng(worker);
  int bad = 0;
  for (int i = 0; i < ops; ++i) {
    const int seed = static_cast<int>(rng() % 48);
    const int n = 1 + seed * 7 % 80;  // 1..80 tokens: 1 to 42 pages
    if (rng() % 2 == 0) {
      const KvCache kv = MakeKv(seed, n);
      if (!(*s)->Put(KeyOf(kv), kv).ok()) ++bad;
    } else {
      absl::StatusOr<KvCache> kv = (*s)->Get(KeyOf(MakeKv(seed, n)));
      if (kv.ok() && !Mismatch(*kv, seed, n).empty()) ++bad;
      if (!kv.ok() && kv.status().code() != absl::StatusCode::kNotFound) ++bad;
    }
  }
  const StoreMetrics m = (*s)->metrics();
  if (m.hits == 0) ++bad;  // the test must exercise reads
  return bad + static_cast<int>(m.corrupt);
}

TEST_F(ShmStoreTest, ConcurrentThreadsAndProcessesNeverSeeTornValues) {
  ShmStoreOptions o = Options();
  o.capacity_bytes = 24 * 1024;  // a few blocks of the 48: pages are reused constantly
  o.page_bytes = 256;            // and each block spans up to 42 of them
  o.max_entries = 16;
  auto store = OpenStore(o);
  constexpr int kOps = 20000;
  std::vector<pid_t> children;
  for (int c = 0; c < 2; ++c) {
    const pid_t pid = fork();
    if (pid == 0) _exit(std::min(StressWorker(o, 100 + c, kOps), 100));
    children.push_back(pid);
  }
  std::vector<int> bad(3, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) threads.emplace_back([&, t] { bad[t] = StressWorker(o, t, kOps); });
  for (std::thread& t : threads) t.join();
  for (int t = 0; t < 3; ++t) EXPECT_EQ(bad[t], 0) << "thread " << t;
  for (pid_t pid : children) EXPECT_EQ(Wait(pid), 0);
  const ShmUsage u = store->Usage();
  EXPECT_LE(u.used_bytes, 24 * 1024);
  EXPECT_LE(u.entries, 16);
  EXPECT_EQ(u.recoveries, 0);
}

// A child opens the store with a hook that SIGKILLs it at `point`, then Puts.
void PutAndDieAt(const ShmStoreOptions& base, const std::string& point, const KvCache& kv) {
  const pid_t pid = fork();
  if (pid == 0) {
    ShmStoreOptions o = base;
    o.create = false;
    o.test_hook = [point](std::string_view at) {
      if (at == point) raise(SIGKILL);
    };
    absl::StatusOr<std::unique_ptr<ShmStore>> s = ShmStore::Open(o);
    if (!s.ok()) _exit(1);
    (void)(*s)->Put(KeyOf(kv), kv);
    _exit(0);  // the hook did not fire
  }
  ASSERT_EQ(Wait(pid), 128 + SIGKILL) << "child was not killed at " << point;
}

class WriterKilledTest : public ShmStoreTest, public testing::WithParamInterface<std::string> {};

TEST_P(WriterKilledTest, LeavesNoVisibleEntryAndReclaimsItsSpace) {
  auto store = OpenStore(Options());
  const KvCache kept = MakeKv(1, 10);
  ASSERT_TRUE(store->Put(KeyOf(kept), kept).ok());
  const ShmUsage before = store->Usage();

  const KvCache doomed = MakeKv(2, 30);  // 4 pages
  PutAndDieAt(Options(), GetParam(), doomed);

  EXPECT_FALSE(store->Contains(KeyOf(doomed)));
  EXPECT_EQ(store->Get(KeyOf(doomed)).status().code(), absl::StatusCode::kNotFound);
  const ShmUsage after = store->Usage();
  EXPECT_EQ(after.recoveries, 1);
  EXPECT_EQ(after.entries, before.entries);
  EXPECT_EQ(after.used_bytes, before.used_bytes);
  absl::StatusOr<KvCache> got = store->Get(KeyOf(kept));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(Mismatch(*got, 1, 10), "");
  // The store keeps working, to its full capacity.
  ASSERT_TRUE(store->Put(KeyOf(doomed), doomed).ok());
  got = store->Get(KeyOf(doomed));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(Mismatch(*got, 2, 30), "");
  EXPECT_EQ(store->metrics().corrupt, 0);
}

INSTANTIATE_TEST_SUITE_P(AtEachStep, WriterKilledTest,
                         testing::Values("allocated", "mid_copy", "before_publish"),
                         [](const testing::TestParamInfo<std::string>& info) { return info.param; });

TEST_F(ShmStoreTest, ProcessKilledMidEvictionLeavesAConsistentStore) {
  ShmStoreOptions o = Options();
  o.max_entries = 4;
  auto store = OpenStore(o);
  for (int seed = 1; seed <= 4; ++seed) {
    const KvCache kv = MakeKv(seed, 10);
    ASSERT_TRUE(store->Put(KeyOf(kv), kv).ok());
  }
  PutAndDieAt(o, "mid_evict", MakeKv(5, 10));  // dies evicting seed 1

  EXPECT_FALSE(store->Contains(KeyOf(MakeKv(1, 10))));
  EXPECT_FALSE(store->Contains(KeyOf(MakeKv(5, 10))));
  const ShmUsage u = store->Usage();
  EXPECT_EQ(u.recoveries, 1);
  EXPECT_EQ(u.entries, 3);
  EXPECT_EQ(u.used_bytes, 3 * 2 * 1024);  // 10 tokens = 1376 bytes = 2 pages each
  for (int seed = 2; seed <= 4; ++seed) {
    absl::StatusOr<KvCache> got = store->Get(KeyOf(MakeKv(seed, 10)));
    ASSERT_TRUE(got.ok()) << seed << ": " << got.status();
    EXPECT_EQ(Mismatch(*got, seed, 10), "");
  }
  for (int seed = 5; seed <= 9; ++seed) {
    const KvCache kv = MakeKv(seed, 10);
    ASSERT_TRUE(store->Put(KeyOf(kv), kv).ok());
  }
  EXPECT_EQ(store->Usage().entries, 4);
}

// Flips one byte of the K payload of the stored copy of `kv`, found by its header.
void CorruptStoredValue(const std::string& name, const KvCache& kv, const CodecOptions& codec) {
  const std::string value = EncodeBlockValue(kv, codec);
  const size_t payload_at = kValueHeaderBytes + 4 * kv.num_tokens();
  const int fd = shm_open(name.c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  void* base = mmap(nullptr, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT_NE(base, MAP_FAILED);
  char* found = static_cast<char*>(memmem(base, st.st_size, value.data(), payload_at));
  ASSERT_NE(found, nullptr);
  found[payload_at + 5] ^= 0x10;
  munmap(base, st.st_size);
  close(fd);
}

// A value past kParallelHashMinBytes (on a machine with two cores, hashed on a second
// thread while it is copied, and written with streaming stores): exact, and a flipped
// byte is still caught.
TEST_F(ShmStoreTest, ALargeValueIsExactAndStillChecked) {
  ShmStoreOptions o = Options();
  o.capacity_bytes = 24 << 20;
  o.page_bytes = 16 << 10;
  auto store = OpenStore(o);
  const int tokens = 70000;  // 128 bytes a token in f32: 8.5 MiB
  ASSERT_GE(ValueBytes(tokens), kParallelHashMinBytes);
  const KvCache kv = MakeKv(9, tokens);
  ASSERT_TRUE(store->Put(KeyOf(kv), kv).ok());
  absl::StatusOr<KvCache> got = store->Get(KeyOf(kv));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(Mismatch(*got, 9, tokens), "");
  CorruptStoredValue(name_, kv, o.codec);
  testing::internal::CaptureStderr();
  EXPECT_EQ(store->Get(KeyOf(kv)).status().code(), absl::StatusCode::kNotFound);
  const std::string log = testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("checksum mismatch"), std::string::npos) << log;
  EXPECT_EQ(store->metrics().corrupt, 1);
}

TEST_F(ShmStoreTest, CorruptBytesAreAMissCountedLoggedOnceAndDropped) {
  auto store = OpenStore(Options());
  const KvCache kv = MakeKv(3, 12);
  ASSERT_TRUE(store->Put(KeyOf(kv), kv).ok());
  CorruptStoredValue(name_, kv, Options().codec);

  testing::internal::CaptureStderr();
  EXPECT_EQ(store->Get(KeyOf(kv)).status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(store->Contains(KeyOf(kv)));  // dropped
  ASSERT_TRUE(store->Put(KeyOf(kv), kv).ok());
  CorruptStoredValue(name_, kv, Options().codec);
  EXPECT_EQ(store->GetMany({KeyOf(kv)})[0].status().code(), absl::StatusCode::kNotFound);
  const std::string log = testing::internal::GetCapturedStderr();

  const StoreMetrics m = store->metrics();
  EXPECT_EQ(m.corrupt, 2);
  EXPECT_EQ(m.misses, 2);
  EXPECT_EQ(m.hits, 0);
  const std::string hex = KeyOf(kv).Hex();
  ASSERT_NE(log.find(hex), std::string::npos) << log;
  EXPECT_EQ(log.find(hex), log.rfind(hex)) << "logged more than once:\n" << log;
  EXPECT_NE(log.find("checksum mismatch"), std::string::npos) << log;
  // A fresh copy is served again.
  ASSERT_TRUE(store->Put(KeyOf(kv), kv).ok());
  absl::StatusOr<KvCache> got = store->Get(KeyOf(kv));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(Mismatch(*got, 3, 12), "");
}

TEST_F(ShmStoreTest, StoredValuesInBf16DecodeWithinTolerance) {
  ShmStoreOptions o = Options();
  o.codec.dtype = engine::DType::kBF16;
  auto store = OpenStore(o);
  const KvCache kv = MakeKv(2, 9);
  ASSERT_TRUE(store->Put(KeyOf(kv), kv).ok());
  absl::StatusOr<KvCache> got = store->Get(KeyOf(kv));
  ASSERT_TRUE(got.ok()) << got.status();
  for (int64_t i = 0; i < 9 * kShape.row(); ++i) {
    ASSERT_NEAR(got->k(1)[i], kv.k(1)[i], std::abs(kv.k(1)[i]) / 128) << i;
    ASSERT_NEAR(got->v(0)[i], kv.v(0)[i], std::abs(kv.v(0)[i]) / 128) << i;
  }
}

// MakeKv(seed, n)'s tokens with every float negated: the same key, another value.
KvCache OtherValueOf(int seed, int num_tokens) {
  KvCache kv = MakeKv(seed, num_tokens);
  for (int64_t l = 0; l < kShape.num_layers; ++l) {
    for (int64_t i = 0; i < num_tokens * kShape.row(); ++i) {
      kv.k(l)[i] = -kv.k(l)[i] - 1;
      kv.v(l)[i] = -kv.v(l)[i] - 1;
    }
  }
  return kv;
}

bool SameKv(const KvCache& a, const KvCache& b) {
  if (a.tokens() != b.tokens()) return false;
  const size_t bytes = a.num_tokens() * kShape.row() * sizeof(float);
  for (int64_t l = 0; l < kShape.num_layers; ++l) {
    if (std::memcmp(a.k(l), b.k(l), bytes) != 0 || std::memcmp(a.v(l), b.v(l), bytes) != 0) {
      return false;
    }
  }
  return true;
}

// A GetInto destination: `out` made anew for the value's tokens, decoded into in place.
absl::StatusOr<KvDestination> Into(KvCache& out, const ValueHeader& h,
                                   absl::Span<const int32_t> tokens) {
  out = KvCache(kShape);
  out.Append(tokens);
  out.set_start_position(h.start_position);
  return CacheDestination(out);
}

TEST_F(ShmStoreTest, ValueReplacedBetweenHeaderAndPayloadIsReadAgainWhole) {
  auto store = OpenStore(Options());
  const KvCache a = MakeKv(4, 30), b = OtherValueOf(4, 30);
  const BlockKey key = KeyOf(a);
  ASSERT_TRUE(store->Put(key, a).ok());
  KvCache out;
  int calls = 0;
  // The destination callback runs between the two lock holds: replacing the value there
  // is exactly the race the entry's seq check is for.
  const absl::Status s =
      store->GetInto(key, [&](const ValueHeader& h, absl::Span<const int32_t> tokens) {
        if (++calls == 1) {
          EXPECT_TRUE(store->Remove(key).ok());
          EXPECT_TRUE(store->Put(key, b).ok());
        }
        return Into(out, h, tokens);
      });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(calls, 2);
  EXPECT_TRUE(SameKv(out, b)) << "not the replacing value, read whole";
}

TEST_F(ShmStoreTest, ValueReplacedOnEveryAttemptIsAMissNeverAMix) {
  auto store = OpenStore(Options());
  const KvCache a = MakeKv(4, 30), b = OtherValueOf(4, 30);
  const BlockKey key = KeyOf(a);
  ASSERT_TRUE(store->Put(key, a).ok());
  KvCache out;
  int calls = 0;
  const absl::Status s =
      store->GetInto(key, [&](const ValueHeader& h, absl::Span<const int32_t> tokens) {
        EXPECT_TRUE(store->Remove(key).ok());
        EXPECT_TRUE(store->Put(key, ++calls % 2 == 1 ? b : a).ok());
        return Into(out, h, tokens);
      });
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_EQ(calls, 2);
  // Removed while the destination was being made: a miss too.
  const absl::Status gone =
      store->GetInto(key, [&](const ValueHeader& h, absl::Span<const int32_t> tokens) {
        EXPECT_TRUE(store->Remove(key).ok());
        return Into(out, h, tokens);
      });
  EXPECT_EQ(gone.code(), absl::StatusCode::kNotFound) << gone;
}

TEST_F(ShmStoreTest, ConcurrentReplaceWhileReadingReturnsOneWholeValueOrAMiss) {
  ShmStoreOptions o = Options();
  o.page_bytes = 256;  // a value spans many pages: a torn read would mix them
  auto store = OpenStore(o);
  const KvCache a = MakeKv(6, 40), b = OtherValueOf(6, 40);
  const BlockKey key = KeyOf(a);
  ASSERT_TRUE(store->Put(key, a).ok());
  // Each thread opens the segment on its own, as processes do (and so that the only
  // synchronization between threads is the segment's, which ThreadSanitizer sees).
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    auto mine = OpenStore(o);
    for (int i = 0; !stop.load(); ++i) {
      ASSERT_TRUE(mine->Remove(key).ok());
      ASSERT_TRUE(mine->Put(key, i % 2 == 0 ? b : a).ok());
      // A breath between replacements: a read that sees its value replaced on both of
      // its attempts is a miss by design, so a writer that never paused would starve
      // every reader and the test would check nothing.
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  });
  std::atomic<int> as{0}, bs{0}, misses{0}, wrong{0}, corrupt{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&] {
      auto mine = OpenStore(o);
      for (int i = 0; i < 400; ++i) {
        absl::StatusOr<KvCache> got = mine->Get(key);
        if (!got.ok()) {
          if (got.status().code() != absl::StatusCode::kNotFound) ++wrong;
          ++misses;
        } else if (SameKv(*got, a)) {
          ++as;
        } else if (SameKv(*got, b)) {
          ++bs;
        } else {
          ++wrong;
        }
      }
      corrupt += static_cast<int>(mine->metrics().corrupt);
    });
  }
  for (std::thread& t : readers) t.join();
  stop = true;
  writer.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(as.load() + bs.load(), 0) << misses.load() << " misses";
  EXPECT_EQ(corrupt.load(), 0);
}

TEST_F(ShmStoreTest, GetIntoABf16DestinationCopiesTheStoredBytes) {
  ShmStoreOptions o = Options();
  o.codec.dtype = engine::DType::kBF16;
  auto store = OpenStore(o);
  const KvCache kv = MakeKv(7, 50);  // 50 tokens of bf16 span several 1 KiB pages
  ASSERT_TRUE(store->Put(KeyOf(kv), kv).ok());
  const size_t elements = 50 * kShape.row();
  std::vector<std::vector<uint16_t>> k(kShape.num_layers), v(kShape.num_layers);
  std::vector<int32_t> tokens_seen;
  const absl::Status s =
      store->GetInto(KeyOf(kv), [&](const ValueHeader& h, absl::Span<const int32_t> tokens) {
        EXPECT_EQ(h.dtype, engine::DType::kBF16);
        tokens_seen.assign(tokens.begin(), tokens.end());
        KvDestination d{.dtype = engine::DType::kBF16};
        for (int64_t l = 0; l < kShape.num_layers; ++l) {
          k[l].assign(elements, 0);
          v[l].assign(elements, 0);
          d.k.push_back(k[l].data());
          d.v.push_back(v[l].data());
        }
        return absl::StatusOr<KvDestination>(d);
      });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(tokens_seen, kv.tokens());
  std::vector<uint16_t> want(elements);
  for (int64_t l = 0; l < kShape.num_layers; ++l) {
    engine::ConvertFromF32(engine::DType::kBF16, kv.k(l), elements, want.data());
    EXPECT_EQ(k[l], want) << "K of layer " << l;
    engine::ConvertFromF32(engine::DType::kBF16, kv.v(l), elements, want.data());
    EXPECT_EQ(v[l], want) << "V of layer " << l;
  }
  EXPECT_EQ(store->metrics().hits, 1);
}

TEST_F(ShmStoreTest, DestinationErrorsAreReturnedAsTheyAre) {
  auto store = OpenStore(Options());
  const KvCache kv = MakeKv(8, 5);
  ASSERT_TRUE(store->Put(KeyOf(kv), kv).ok());
  const absl::Status s = store->GetInto(KeyOf(kv), [](const ValueHeader&, absl::Span<const int32_t>) {
    return absl::StatusOr<KvDestination>(absl::ResourceExhaustedError("no room"));
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_TRUE(store->Contains(KeyOf(kv)));  // not mistaken for corruption
}

}  // namespace
}  // namespace blockserve::kv_store
