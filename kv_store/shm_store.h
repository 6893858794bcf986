// ShmStore: the embedded KvStore — one POSIX shared-memory segment per node that
// every BlockServe process on the node maps (the encoder writes, prefill reads). No
// server: the segment holds the data and its own lock.
//
// Segment layout (offsets, never pointers, so each process may map it anywhere):
//   header | entry table | entry hash buckets | page chain | catalog | catalog buckets | data pages
// The header carries a magic, a layout version and the geometry; the first opener
// creates the segment with O_EXCL, sizes it, initializes everything and stores the
// magic last (release); later openers wait for the magic (acquire, up to
// init_timeout_ms), then check the version and that the geometry matches the file, and
// adopt the creator's geometry (capacity options only matter to the creator).
//
// Allocation: the data area is split into fixed pages of `page_bytes`; a value occupies
// a chain of pages (next-page links in the page chain table, like a FAT). No external
// fragmentation ever: a value fits whenever enough pages are free, wherever they are;
// the waste is internal, under one page per value. Eviction is exact LRU (Get
// refreshes, Contains does not) and runs until both a free entry and enough free pages
// exist, so `capacity_bytes` and `max_entries` are hard bounds.
//
// Locking: every operation on the segment holds one process-shared robust pthread
// mutex stored in the header. Writes encode outside it and copy in under it. Reads
// (GetInto, and Get through it) decode straight out of the segment's pages under it, in
// one pass with the checksum (codec.h ValueDecoder), with no intermediate copy (a
// value of kParallelHashMinBytes or more: copied on the caller's thread and hashed on a
// second one, both under the mutex, codec.h ConsumeInParallel); the destination is
// allocated outside it. Why a reader never sees a torn or half-replaced
// value: a live entry's pages are written only before it is published and recycled only
// after it is unpublished, both under the mutex, so while a reader holds the mutex the
// pages of the entry it found are exactly the published value. A read takes the mutex
// twice (header and token ids, then the payload, with the allocation in between); the
// entry's `seq` (a fresh tick at every publication) is compared across the two, so a
// value replaced or evicted in between is read again, never mixed with the new one.
//
// Crash safety: an entry becomes visible only when its `state` word is set to live,
// after its bytes and page chain are complete; while live its pages are never touched;
// it is marked free before its pages are recycled. Everything else (free lists, hash
// buckets, LRU list, counters) is derived. So when a process dies holding the lock
// (the next locker gets EOWNERDEAD), that locker rebuilds all derived state from the
// live entries — pages a dead writer had taken but not published are simply not owned
// by any live entry and return to the free list — then marks the mutex consistent.
// The catalog works the same way; its slots carry a check hash so a torn in-place
// update is dropped on recovery rather than trusted.
//
// Sources (SourceStore::PutSource): stored as ordinary entries under SourceKey(key), in
// the same LRU. Every use of a block (Get, GetMany, Put) also refreshes its source just
// after it, and a Put makes room only after refreshing the source, so a source is always
// more recent than its block: the block is evicted first, and its source stays for as
// long as the entries used after it leave room (until a re-encode refreshes both). A
// source costs one entry slot and ceil((4 × tokens + 24) / page_bytes) pages (one page
// for any passage under ~4000 tokens at the default 16 KiB pages), i.e. at most one
// extra page per named passage. Sources are not counted in hits/misses.
//
// Corruption: values are validated by the codec on every Get; a bad one is a miss,
// counted in `corrupt`, logged to stderr once per key per process, and removed.
// Metrics are per ShmStore object (per process), not shared through the segment.
#ifndef BLOCKSERVE_KV_STORE_SHM_STORE_H_
#define BLOCKSERVE_KV_STORE_SHM_STORE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "kv_store/kv_store.h"
#include "kv_store/codec.h"

namespace blockserve::kv_store {

struct ShmStoreOptions {
  std::string name = "/blockserve-kv";  // POSIX shm name: "/" then no other "/"
  // Geometry, used only by the opener that creates the segment.
  size_t capacity_bytes = size_t{1} << 30;  // data area; rounded down to whole pages
  size_t max_entries = 65536;
  size_t page_bytes = 16 << 10;
  size_t max_passages = 65536;  // catalog slots
  CodecOptions codec;
  bool create = true;  // false: open an existing segment only (NotFound otherwise)
  int init_timeout_ms = 5000;  // how long to wait for another process's initialization

  // Test-only: called under the segment lock at points of a write or an eviction
  // ("allocated", "mid_copy", "before_publish", "mid_evict") so a test can kill the
  // process there. Leave empty in production.
  std::function<void(std::string_view point)> test_hook;
};

// Occupancy of the whole segment (all processes), read under the lock.
struct ShmUsage {
  int64_t entries = 0;
  int64_t max_entries = 0;
  int64_t value_bytes = 0;     // sum of stored value sizes
  int64_t used_bytes = 0;      // pages held by entries * page_bytes
  int64_t capacity_bytes = 0;  // pages * page_bytes
  int64_t passages = 0;
  int64_t recoveries = 0;      // times a dead lock owner's state was repaired
};

class ShmStore : public KvStore {
 public:
  // Creates or opens `o.name`. InvalidArgument for bad options; NotFound when
  // !o.create and it does not exist; FailedPrecondition for a segment of another
  // layout or one whose creator never finished; ResourceExhausted when /dev/shm
  // cannot hold it (memory is reserved up front so later writes cannot SIGBUS).
  static absl::StatusOr<std::unique_ptr<ShmStore>> Open(const ShmStoreOptions& o);

  // Unlinks the segment name; mappings already open stay valid. OK if it did not exist.
  static absl::Status Remove(const std::string& name);

  ~ShmStore() override;
  ShmStore(const ShmStore&) = delete;
  ShmStore& operator=(const ShmStore&) = delete;

  absl::StatusOr<engine::KvCache> Get(const BlockKey& key) override;

  // Decodes `key`'s value into a destination of the caller's choosing, e.g. a bf16
  // cache, where a stored bf16 value is then one copy out of shared memory.
  // `make_destination` runs outside the segment lock with the validated header and the
  // token ids, and returns where to write (codec.h KvDestination; it may also fail, and
  // that error is returned as is). It may run twice when the value is replaced between
  // reading its header and its payload; only the last destination is written. Errors as
  // Get; on any error the destination may hold partial data.
  using DestinationFn = std::function<absl::StatusOr<KvDestination>(
      const ValueHeader& header, absl::Span<const int32_t> tokens)>;
  absl::Status GetInto(const BlockKey& key, const DestinationFn& make_destination);
  std::vector<absl::StatusOr<engine::KvCache>> GetMany(absl::Span<const BlockKey> keys) override;
  // InvalidArgument if kv.shape() differs from the codec shape; ResourceExhausted if
  // the encoded value is larger than the whole data area. Putting a key that is already
  // present refreshes it and writes nothing, returning 0 (content addressing: same key,
  // same value).
  absl::StatusOr<uint64_t> Put(const BlockKey& key, const engine::KvCache& kv) override;
  uint64_t ValueBytes(const engine::KvCache& kv) const override;
  bool Contains(const BlockKey& key) override;  // does not refresh LRU
  absl::Status Remove(const BlockKey& key) override;
  absl::Status Ping() override;

  // Ids of 1..kMaxPassageIdBytes bytes (else InvalidArgument); ResourceExhausted when
  // all catalog slots hold other ids.
  absl::Status PutPassage(std::string_view passage_id, const BlockKey& key) override;
  absl::StatusOr<BlockKey> LookupPassage(std::string_view passage_id) override;
  // ResourceExhausted when the source is larger than the whole data area.
  absl::Status PutSource(const BlockKey& key, absl::Span<const int32_t> tokens) override;
  absl::StatusOr<std::vector<int32_t>> GetSource(const BlockKey& key) override;

  StoreMetrics metrics() const override;
  ShmUsage Usage();

  // A passage id of the request contract (256 bytes) in a tenant namespace of up to 64
  // bytes (blocks/key_space.h StoredPassageId: "<ns>\x1f<id>").
  static constexpr size_t kMaxPassageIdBytes = 384;

 private:
  class Segment;  // views and operations on the mapped layout (shm_store.cc)
  struct Copy;    // a value copied out of the segment
  class Locked;   // RAII holder of the segment mutex

  ShmStore(const ShmStoreOptions& o, int fd, void* base, size_t bytes);

  std::optional<Copy> CopyOut(const BlockKey& key);
  // GetInto without the metrics' time.
  absl::Status ReadInto(const BlockKey& key, const DestinationFn& make_destination);
  absl::Status Miss(const BlockKey& key);
  void DropCorrupt(const BlockKey& key, uint64_t seq, const absl::Status& why);

  const ShmStoreOptions options_;
  const int fd_;
  void* const base_;
  const size_t bytes_;
  std::unique_ptr<Segment> seg_;

  mutable absl::Mutex mu_;
  StoreMetrics metrics_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> logged_corrupt_ ABSL_GUARDED_BY(mu_);
};

}  // namespace blockserve::kv_store

#endif  // BLOCKSERVE_KV_STORE_SHM_STORE_H_
