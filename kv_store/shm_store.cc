#include "kv_store/shm_store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/dtype.h"
#include "kv_store/codec.h"
#include "kv_store/hash.h"
#include "kv_store/source.h"

namespace blockserve::kv_store {
namespace {

constexpr uint64_t kSegmentMagic = 0x314d48535653424bULL;  // "KBSVSHM1" little-endian
constexpr uint32_t kLayoutVersion = 2;  // 2: catalog ids of up to 384 bytes
constexpr uint32_t kNil = 0xffffffffu;
// Entry and catalog slot states. Recovery trusts only kLive; any other word is free.
constexpr uint32_t kFree = 0;
constexpr uint32_t kLive = 0x4556494c;  // "LIVE"

struct Header {
  uint64_t magic;  // kSegmentMagic, stored last at initialization
  uint32_t layout_version;
  uint32_t mutex_bytes;  // sizeof(pthread_mutex_t) of the creator's ABI
  uint64_t segment_bytes;
  uint64_t page_bytes;
  uint64_t num_pages;
  uint64_t max_entries;
  uint64_t entry_buckets;
  uint64_t max_passages;
  uint64_t passage_buckets;
  uint64_t entries_at;
  uint64_t entry_buckets_at;
  uint64_t page_next_at;
  uint64_t passages_at;
  uint64_t passage_buckets_at;
  uint64_t data_at;

  alignas(64) pthread_mutex_t mutex;

  // Everything below is guarded by `mutex` and derived (rebuilt by recovery), except
  // `tick` and `recoveries`, which only need to grow.
  alignas(64) uint64_t tick;  // LRU clock and publication sequence
  uint64_t recoveries;
  uint64_t live_entries;
  uint64_t value_bytes;
  uint64_t free_pages;
  uint64_t live_passages;
  uint32_t lru_head;  // most recently used
  uint32_t lru_tail;  // least recently used: evicted first
  uint32_t free_entry_head;
  uint32_t free_page_head;
  uint32_t free_passage_head;
};

struct Entry {
  uint8_t key[16];
  uint64_t length;     // value bytes
  uint64_t last_used;  // tick of the last Put/Get; orders the LRU list on recovery
  uint64_t seq;        // tick of publication: identifies this copy of the key
  uint32_t first_page;
  uint32_t num_pages;
  uint32_t state;      // kLive once bytes and page chain are complete
  uint32_t hash_next;  // bucket chain when live, free list when free
  uint32_t lru_prev;
  uint32_t lru_next;
};

struct PassageSlot {
  uint32_t state;
  uint32_t id_len;
  uint32_t hash_next;
  uint32_t unused;
  uint64_t seq;
  uint64_t check;  // hash of id, key and seq: a torn in-place update fails it
  uint8_t key[16];
  char id[ShmStore::kMaxPassageIdBytes];
};

uint64_t AlignUp(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

// Where everything lives, computed from the four sizes alone so that any opener can
// check a header against it.
struct Geometry {
  uint64_t page_bytes = 0, num_pages = 0, max_entries = 0, max_passages = 0;
  uint64_t entry_buckets = 0, passage_buckets = 0;
  uint64_t entries_at = 0, entry_buckets_at = 0, page_next_at = 0, passages_at = 0,
           passage_buckets_at = 0, data_at = 0, segment_bytes = 0;

  static Geometry For(uint64_t page_bytes, uint64_t num_pages, uint64_t max_entries,
                      uint64_t max_passages) {
    Geometry g;
    g.page_bytes = page_bytes;
    g.num_pages = num_pages;
    g.max_entries = max_entries;
    g.max_passages = max_passages;
    g.entry_buckets = std::bit_ceil(max_entries);
    g.passage_buckets = std::bit_ceil(max_passages);
    uint64_t at = AlignUp(sizeof(Header), 64);
    auto place = [&at](uint64_t bytes) {
      const uint64_t here = at;
      at = AlignUp(at + bytes, 64);
      return here;
    };
    g.entries_at = place(max_entries * sizeof(Entry));
    g.entry_buckets_at = place(g.entry_buckets * 4);
    g.page_next_at = place(num_pages * 4);
    g.passages_at = place(max_passages * sizeof(PassageSlot));
    g.passage_buckets_at = place(g.passage_buckets * 4);
    g.data_at = AlignUp(at, 4096);
    g.segment_bytes = g.data_at + num_pages * page_bytes;
    return g;
  }

  bool Matches(const Header& h) const {
    return h.page_bytes == page_bytes && h.num_pages == num_pages &&
           h.max_entries == max_entries && h.max_passages == max_passages &&
           h.entry_buckets == entry_buckets && h.passage_buckets == passage_buckets &&
           h.entries_at == entries_at && h.entry_buckets_at == entry_buckets_at &&
           h.page_next_at == page_next_at && h.passages_at == passages_at &&
           h.passage_buckets_at == passage_buckets_at && h.data_at == data_at &&
           h.segment_bytes == segment_bytes;
  }
};

bool CountOk(uint64_t n) { return n >= 1 && n < kNil; }

absl::StatusOr<Geometry> GeometryFromOptions(const ShmStoreOptions& o) {
  if (o.page_bytes < 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("shm store: page_bytes must be at least 64, got ", o.page_bytes));
  }
  const uint64_t num_pages = o.capacity_bytes / o.page_bytes;
  if (!CountOk(num_pages)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shm store: capacity_bytes ", o.capacity_bytes, " / page_bytes ", o.page_bytes,
        " must give between 1 and ", kNil - 1, " pages"));
  }
  if (!CountOk(o.max_entries) || !CountOk(o.max_passages)) {
    return absl::InvalidArgumentError(
        absl::StrCat("shm store: max_entries (", o.max_entries, ") and max_passages (",
                     o.max_passages, ") must be between 1 and ", kNil - 1));
  }
  return Geometry::For(o.page_bytes, num_pages, o.max_entries, o.max_passages);
}

absl::Status ValidateName(const std::string& name) {
  if (name.size() < 2 || name[0] != '/' || name.find('/', 1) != std::string::npos ||
      name.size() > 255) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shm store: name \"", name, "\" must be \"/\" followed by 1..254 characters, no \"/\""));
  }
  return absl::OkStatus();
}

absl::Status ErrnoError(std::string_view what, const std::string& name, int err) {
  const std::string msg =
      absl::StrCat("shm store ", name, ": ", std::string(what), ": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(msg);
  if (err == ENOSPC || err == ENOMEM || err == EFBIG) return absl::ResourceExhaustedError(msg);
  if (err == EINVAL) return absl::InvalidArgumentError(msg);
  return absl::InternalError(msg);
}

// One glog-style line on stderr (Debian's Abseil predates absl/log).
void LogWarning(const std::string& msg) {
  const std::string line =
      absl::StrCat("W", absl::FormatTime("%m%d %H:%M:%E6S", absl::Now(), absl::LocalTimeZone()),
                   " ", getpid(), " shm_store.cc] ", msg, "\n");
  std::fwrite(line.data(), 1, line.size(), stderr);
}

void StoreRelease(uint32_t& word, uint32_t v) {
  std::atomic_ref<uint32_t>(word).store(v, std::memory_order_release);
}

uint64_t PagesFor(uint64_t length, uint64_t page_bytes) {
  return (length + page_bytes - 1) / page_bytes;
}

uint64_t PassageCheck(const PassageSlot& s) {
  uint8_t key_seq[24];
  std::memcpy(key_seq, s.key, 16);
  std::memcpy(key_seq + 16, &s.seq, 8);
  return Hash64(s.id, s.id_len, Hash64(key_seq, sizeof(key_seq), s.id_len));
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

// Typed views of the mapped segment and the operations on its structures. Every
// method except Init runs with the segment mutex held.
class ShmStore::Segment {
 public:
  Segment(void* base, const std::function<void(std::string_view)>* hook)
      : base_(static_cast<char*>(base)), h(reinterpret_cast<Header*>(base)), hook_(hook) {
    entries = reinterpret_cast<Entry*>(base_ + h->entries_at);
    buckets = reinterpret_cast<uint32_t*>(base_ + h->entry_buckets_at);
    next = reinterpret_cast<uint32_t*>(base_ + h->page_next_at);
    passages = reinterpret_cast<PassageSlot*>(base_ + h->passages_at);
    passage_buckets = reinterpret_cast<uint32_t*>(base_ + h->passage_buckets_at);
    data = base_ + h->data_at;
  }

  // Lays out an all-free segment (the header's geometry fields must already be set)
  // and initializes the robust process-shared mutex.
  absl::Status Init() {
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    int r = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    if (r == 0) r = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    if (r == 0) r = pthread_mutex_init(&h->mutex, &attr);
    pthread_mutexattr_destroy(&attr);
    if (r != 0) {
      return absl::InternalError(absl::StrCat("shm store: robust shared mutex: ", std::strerror(r)));
    }
    for (uint64_t e = 0; e < h->max_entries; ++e) entries[e].state = kFree;
    for (uint64_t s = 0; s < h->max_passages; ++s) passages[s].state = kFree;
    h->tick = 1;
    h->recoveries = 0;
    RebuildDerived(std::vector<uint32_t>(h->num_pages, kNil));
    return absl::OkStatus();
  }

  void Hook(const char* point) {
    if (*hook_) (*hook_)(point);
  }

  char* Page(uint32_t p) { return data + static_cast<uint64_t>(p) * h->page_bytes; }

  uint32_t& Bucket(const uint8_t* key) {
    uint64_t x;
    std::memcpy(&x, key, 8);
    return buckets[x & (h->entry_buckets - 1)];
  }

  uint32_t Find(const BlockKey& key) {
    for (uint32_t e = Bucket(key.bytes.data()); e != kNil; e = entries[e].hash_next) {
      if (std::memcmp(entries[e].key, key.bytes.data(), 16) == 0) return e;
    }
    return kNil;
  }

  void LruUnlink(uint32_t e) {
    Entry& x = entries[e];
    (x.lru_prev == kNil ? h->lru_head : entries[x.lru_prev].lru_next) = x.lru_next;
    (x.lru_next == kNil ? h->lru_tail : entries[x.lru_next].lru_prev) = x.lru_prev;
  }

  void LruPushFront(uint32_t e) {
    Entry& x = entries[e];
    x.lru_prev = kNil;
    x.lru_next = h->lru_head;
    (h->lru_head == kNil ? h->lru_tail : entries[h->lru_head].lru_prev) = e;
    h->lru_head = e;
  }

  void Touch(uint32_t e) {
    entries[e].last_used = ++h->tick;
    if (h->lru_head == e) return;
    LruUnlink(e);
    LruPushFront(e);
  }

  // Moves `key`'s source (if any) to the LRU front. Called after every use of the block,
  // so a source is always more recent than its block and outlives it.
  void TouchSourceOf(const BlockKey& key) {
    if (const uint32_t e = Find(SourceKey(key)); e != kNil) Touch(e);
  }

  void Link(uint32_t e) {
    uint32_t& head = Bucket(entries[e].key);
    entries[e].hash_next = head;
    head = e;
    LruPushFront(e);
    ++h->live_entries;
    h->value_bytes += entries[e].length;
  }

  // Live -> free: unpublish first, then recycle the pages and the slot.
  void Release(uint32_t e) {
    Entry& x = entries[e];
    for (uint32_t* link = &Bucket(x.key); *link != kNil; link = &entries[*link].hash_next) {
      if (*link == e) {
        *link = x.hash_next;
        break;
      }
    }
    LruUnlink(e);
    StoreRelease(x.state, kFree);
    Hook("mid_evict");
    uint32_t last = x.first_page;
    for (uint32_t i = 1; i < x.num_pages; ++i) last = next[last];
    next[last] = h->free_page_head;
    h->free_page_head = x.first_page;
    h->free_pages += x.num_pages;
    --h->live_entries;
    h->value_bytes -= x.length;
    x.hash_next = h->free_entry_head;
    h->free_entry_head = e;
  }

  // Evicts least recently used entries until a slot and `pages` pages are free.
  int64_t MakeRoom(uint64_t pages) {
    int64_t evicted = 0;
    while ((h->free_entry_head == kNil || h->free_pages < pages) && h->lru_tail != kNil) {
      Release(h->lru_tail);
      ++evicted;
    }
    return evicted;
  }

  // Writes `value` under `key` (room must have been made) and publishes it last.
  void Write(const BlockKey& key, std::string_view value) {
    const uint32_t num_pages = static_cast<uint32_t>(PagesFor(value.size(), h->page_bytes));
    const uint32_t e = h->free_entry_head;
    Entry& x = entries[e];
    h->free_entry_head = x.hash_next;
    const uint32_t first = h->free_page_head;
    uint32_t last = first;
    for (uint32_t i = 1; i < num_pages; ++i) last = next[last];
    h->free_page_head = next[last];
    next[last] = kNil;
    h->free_pages -= num_pages;
    Hook("allocated");

    // A large value goes into its pages with streaming stores, as a large decode comes
    // out of them (codec.h, kBypassCacheMinBytes): nothing reads it back soon, and it
    // leaves no cache full of dirty lines for the next get to write back. The fence
    // makes every byte visible before the entry is published below.
    const bool stream = value.size() >= kBypassCacheMinBytes;
    uint32_t p = first;
    for (uint32_t i = 0; i < num_pages; ++i, p = next[p]) {
      if (i == num_pages / 2) Hook("mid_copy");
      const uint64_t at = static_cast<uint64_t>(i) * h->page_bytes;
      const size_t n = std::min<uint64_t>(h->page_bytes, value.size() - at);
      if (stream) {
        engine::CopyBypassingCache(Page(p), value.data() + at, n);
      } else {
        std::memcpy(Page(p), value.data() + at, n);
      }
    }
    if (stream) engine::StreamingStoreFence();
    std::memcpy(x.key, key.bytes.data(), 16);
    x.length = value.size();
    x.first_page = first;
    x.num_pages = num_pages;
    x.seq = x.last_used = ++h->tick;
    Hook("before_publish");
    StoreRelease(x.state, kLive);
    Link(e);
  }

  // Copies bytes [offset, offset + n) of entry e's value (within its length) to `out`.
  void CopyRange(uint32_t e, uint64_t offset, uint64_t n, char* out) {
    uint32_t p = entries[e].first_page;
    for (uint64_t skip = offset / h->page_bytes; skip > 0; --skip) p = next[p];
    for (uint64_t at = offset % h->page_bytes; n > 0; at = 0, p = next[p]) {
      const uint64_t m = std::min<uint64_t>(h->page_bytes - at, n);
      std::memcpy(out, Page(p) + at, m);
      out += m;
      n -= m;
    }
  }

  // Hands entry e's value to `consume(data, n)` page by page, in order, from the pages
  // themselves (no copy).
  template <typename Consume>
  void ForEachPiece(uint32_t e, Consume&& consume) {
    const Entry& x = entries[e];
    uint32_t p = x.first_page;
    for (uint64_t at = 0; at < x.length; at += h->page_bytes, p = next[p]) {
      consume(Page(p), std::min<uint64_t>(h->page_bytes, x.length - at));
    }
  }

  void CopyValue(uint32_t e, char* out) {
    const Entry& x = entries[e];
    uint32_t p = x.first_page;
    for (uint64_t at = 0; at < x.length; at += h->page_bytes, p = next[p]) {
      std::memcpy(out + at, Page(p), std::min<uint64_t>(h->page_bytes, x.length - at));
    }
  }

  uint32_t& PassageBucket(std::string_view id) {
    return passage_buckets[Hash64(id.data(), id.size(), 0) & (h->passage_buckets - 1)];
  }

  uint32_t FindPassage(std::string_view id) {
    for (uint32_t s = PassageBucket(id); s != kNil; s = passages[s].hash_next) {
      if (std::string_view(passages[s].id, passages[s].id_len) == id) return s;
    }
    return kNil;
  }

  // Recovery after a lock owner died: keeps every live entry whose page chain is
  // intact and disjoint from the others (and the newest copy of a duplicated key),
  // every catalog slot whose check hash holds, and rebuilds all the rest.
  void Recover() {
    std::vector<uint32_t> owner(h->num_pages, kNil);
    absl::flat_hash_map<std::string, uint32_t> by_key;
    uint64_t max_tick = h->tick;
    for (uint32_t e = 0; e < h->max_entries; ++e) {
      Entry& x = entries[e];
      if (x.state != kLive) continue;
      if (!ClaimPages(e, owner)) {
        x.state = kFree;
        continue;
      }
      max_tick = std::max({max_tick, x.seq, x.last_used});
      auto [it, fresh] = by_key.try_emplace(std::string(reinterpret_cast<char*>(x.key), 16), e);
      if (fresh) continue;
      const uint32_t loser = entries[it->second].seq >= x.seq ? e : it->second;
      if (loser == it->second) it->second = e;
      entries[loser].state = kFree;
      std::replace(owner.begin(), owner.end(), loser, kNil);
    }
    absl::flat_hash_map<std::string_view, uint32_t> by_id;
    for (uint32_t s = 0; s < h->max_passages; ++s) {
      PassageSlot& slot = passages[s];
      if (slot.state != kLive) continue;
      if (slot.id_len == 0 || slot.id_len > kMaxPassageIdBytes || slot.check != PassageCheck(slot)) {
        slot.state = kFree;
        continue;
      }
      max_tick = std::max(max_tick, slot.seq);
      auto [it, fresh] = by_id.try_emplace(std::string_view(slot.id, slot.id_len), s);
      if (fresh) continue;
      const uint32_t loser = passages[it->second].seq >= slot.seq ? s : it->second;
      if (loser == it->second) it->second = s;
      passages[loser].state = kFree;
    }
    h->tick = max_tick + 1;
    ++h->recoveries;
    RebuildDerived(owner);
  }

 private:
  // Marks the pages of live entry `e` as owned by it; false (claiming nothing) if its
  // chain is malformed or overlaps another entry's.
  bool ClaimPages(uint32_t e, std::vector<uint32_t>& owner) {
    const Entry& x = entries[e];
    if (x.length == 0 || x.num_pages != PagesFor(x.length, h->page_bytes)) return false;
    uint32_t p = x.first_page;
    for (uint32_t i = 0; i < x.num_pages; ++i) {
      if (p >= h->num_pages || owner[p] != kNil) {
        std::replace(owner.begin(), owner.end(), e, kNil);
        return false;
      }
      owner[p] = e;
      if (i + 1 < x.num_pages) p = next[p];
    }
    return true;
  }

  // Rebuilds free lists, hash buckets, the LRU list and counters from the live
  // entries and slots; `owner[p]` is the entry holding page p (kNil if free).
  void RebuildDerived(const std::vector<uint32_t>& owner) {
    std::fill(buckets, buckets + h->entry_buckets, kNil);
    std::fill(passage_buckets, passage_buckets + h->passage_buckets, kNil);
    h->lru_head = h->lru_tail = kNil;
    h->live_entries = h->value_bytes = h->live_passages = 0;

    std::vector<uint32_t> live;
    h->free_entry_head = kNil;
    for (uint32_t e = static_cast<uint32_t>(h->max_entries); e-- > 0;) {
      if (entries[e].state == kLive) {
        live.push_back(e);
      } else {
        entries[e].state = kFree;
        entries[e].hash_next = h->free_entry_head;
        h->free_entry_head = e;
      }
    }
    std::sort(live.begin(), live.end(),
              [this](uint32_t a, uint32_t b) { return entries[a].last_used < entries[b].last_used; });
    for (uint32_t e : live) Link(e);

    h->free_page_head = kNil;
    h->free_pages = 0;
    for (uint32_t p = static_cast<uint32_t>(h->num_pages); p-- > 0;) {
      if (owner[p] != kNil) continue;
      next[p] = h->free_page_head;
      h->free_page_head = p;
      ++h->free_pages;
    }

    h->free_passage_head = kNil;
    for (uint32_t s = static_cast<uint32_t>(h->max_passages); s-- > 0;) {
      PassageSlot& slot = passages[s];
      if (slot.state == kLive) {
        uint32_t& head = PassageBucket(std::string_view(slot.id, slot.id_len));
        slot.hash_next = head;
        head = s;
        ++h->live_passages;
      } else {
        slot.state = kFree;
        slot.hash_next = h->free_passage_head;
        h->free_passage_head = s;
      }
    }
  }

  char* const base_;

 public:
  Header* const h;
  Entry* entries;
  uint32_t* buckets;
  uint32_t* next;
  PassageSlot* passages;
  uint32_t* passage_buckets;
  char* data;

 private:
  const std::function<void(std::string_view)>* hook_;
};

// Holds the segment mutex; on EOWNERDEAD repairs the state a dead owner left behind.
class ShmStore::Locked {
 public:
  explicit Locked(Segment& seg) : seg_(seg) {
    int r = pthread_mutex_lock(&seg.h->mutex);
    if (r == EOWNERDEAD) {
      LogWarning("a process died holding the KV segment lock; rebuilding the index");
      seg.Recover();
      r = pthread_mutex_consistent(&seg.h->mutex);
      if (r != 0) pthread_mutex_unlock(&seg.h->mutex);
    }
    if (r != 0) {
      status_ = absl::InternalError(absl::StrCat("shm store: lock: ", std::strerror(r)));
    }
  }
  ~Locked() {
    if (status_.ok()) pthread_mutex_unlock(&seg_.h->mutex);
  }
  Locked(const Locked&) = delete;
  Locked& operator=(const Locked&) = delete;

  const absl::Status& status() const { return status_; }

 private:
  Segment& seg_;
  absl::Status status_;
};

struct ShmStore::Copy {
  std::unique_ptr<char[]> bytes;  // uninitialized on allocation: filled by CopyValue
  size_t size = 0;
  uint64_t seq = 0;
};

absl::StatusOr<std::unique_ptr<ShmStore>> ShmStore::Open(const ShmStoreOptions& o) {
  if (absl::Status s = ValidateName(o.name); !s.ok()) return s;
  const char* name = o.name.c_str();
  if (o.create) {
    absl::StatusOr<Geometry> g = GeometryFromOptions(o);
    if (!g.ok()) return g.status();
    const int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd >= 0) {
      // We are the creator: reserve the memory, lay it out, publish the magic last.
      auto fail = [&](absl::Status s) {
        close(fd);
        shm_unlink(name);
        return s;
      };
      if (int r = posix_fallocate(fd, 0, static_cast<off_t>(g->segment_bytes)); r != 0) {
        return fail(ErrnoError(absl::StrCat("reserving ", g->segment_bytes, " bytes"), o.name, r));
      }
      void* base = mmap(nullptr, g->segment_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (base == MAP_FAILED) return fail(ErrnoError("mmap", o.name, errno));
      Header* h = static_cast<Header*>(base);
      h->layout_version = kLayoutVersion;
      h->mutex_bytes = sizeof(pthread_mutex_t);
      h->segment_bytes = g->segment_bytes;
      h->page_bytes = g->page_bytes;
      h->num_pages = g->num_pages;
      h->max_entries = g->max_entries;
      h->entry_buckets = g->entry_buckets;
      h->max_passages = g->max_passages;
      h->passage_buckets = g->passage_buckets;
      h->entries_at = g->entries_at;
      h->entry_buckets_at = g->entry_buckets_at;
      h->page_next_at = g->page_next_at;
      h->passages_at = g->passages_at;
      h->passage_buckets_at = g->passage_buckets_at;
      h->data_at = g->data_at;
      std::unique_ptr<ShmStore> store(new ShmStore(o, fd, base, g->segment_bytes));
      if (absl::Status s = store->seg_->Init(); !s.ok()) {
        store.reset();
        shm_unlink(name);
        return s;
      }
      std::atomic_ref<uint64_t>(h->magic).store(kSegmentMagic, std::memory_order_release);
      return store;
    }
    if (errno != EEXIST) return ErrnoError("shm_open (create)", o.name, errno);
  }

  const int fd = shm_open(name, O_RDWR, 0);
  if (fd < 0) return ErrnoError("shm_open", o.name, errno);
  auto fail = [fd](absl::Status s) {
    close(fd);
    return s;
  };
  // Wait for the creator: first the size, then the magic.
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(o.init_timeout_ms);
  const size_t header_map = AlignUp(sizeof(Header), 4096);
  struct stat st;
  Header* h = nullptr;
  while (true) {
    if (fstat(fd, &st) != 0) return fail(ErrnoError("fstat", o.name, errno));
    if (h == nullptr && static_cast<size_t>(st.st_size) >= header_map) {
      void* m = mmap(nullptr, header_map, PROT_READ, MAP_SHARED, fd, 0);
      if (m == MAP_FAILED) return fail(ErrnoError("mmap", o.name, errno));
      h = static_cast<Header*>(m);
    }
    if (h != nullptr) {
      const uint64_t magic = std::atomic_ref<uint64_t>(h->magic).load(std::memory_order_acquire);
      if (magic == kSegmentMagic) break;
      if (magic != 0) {
        munmap(h, header_map);
        return fail(absl::FailedPreconditionError(absl::StrCat(
            "shm store ", o.name, ": not a BlockServe KV segment (magic ",
            absl::Hex(magic, absl::kZeroPad16), ", expected ",
            absl::Hex(kSegmentMagic, absl::kZeroPad16), ")")));
      }
    }
    if (std::chrono::steady_clock::now() > deadline) {
      if (h != nullptr) munmap(h, header_map);
      return fail(absl::FailedPreconditionError(absl::StrCat(
          "shm store ", o.name, ": segment was never initialized within ", o.init_timeout_ms,
          " ms (its creator may have died); remove it with ShmStore::Remove")));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const Header hdr = *h;
  munmap(h, header_map);
  if (hdr.layout_version != kLayoutVersion || hdr.mutex_bytes != sizeof(pthread_mutex_t)) {
    return fail(absl::FailedPreconditionError(absl::StrCat(
        "shm store ", o.name, ": incompatible layout: version ", hdr.layout_version,
        " with a ", hdr.mutex_bytes, "-byte mutex, expected version ", kLayoutVersion, " with ",
        sizeof(pthread_mutex_t))));
  }
  const Geometry g =
      Geometry::For(hdr.page_bytes, hdr.num_pages, hdr.max_entries, hdr.max_passages);
  if (!CountOk(hdr.num_pages) || !CountOk(hdr.max_entries) || !CountOk(hdr.max_passages) ||
      hdr.page_bytes < 64 || !g.Matches(hdr) ||
      static_cast<uint64_t>(st.st_size) != hdr.segment_bytes) {
    return fail(absl::FailedPreconditionError(absl::StrCat(
        "shm store ", o.name, ": inconsistent layout header (", hdr.num_pages, " pages of ",
        hdr.page_bytes, " bytes, ", hdr.max_entries, " entries, ", hdr.max_passages,
        " passages: ", g.segment_bytes, " bytes expected, header says ", hdr.segment_bytes,
        ", file has ", st.st_size, ")")));
  }
  void* base = mmap(nullptr, hdr.segment_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return fail(ErrnoError("mmap", o.name, errno));
  return std::unique_ptr<ShmStore>(new ShmStore(o, fd, base, hdr.segment_bytes));
}

absl::Status ShmStore::Remove(const std::string& name) {
  if (absl::Status s = ValidateName(name); !s.ok()) return s;
  if (shm_unlink(name.c_str()) != 0 && errno != ENOENT) return ErrnoError("shm_unlink", name, errno);
  return absl::OkStatus();
}

ShmStore::ShmStore(const ShmStoreOptions& o, int fd, void* base, size_t bytes)
    : options_(o),
      fd_(fd),
      base_(base),
      bytes_(bytes),
      seg_(std::make_unique<Segment>(base, &options_.test_hook)) {}

ShmStore::~ShmStore() {
  seg_.reset();
  munmap(base_, bytes_);
  close(fd_);
}

std::optional<ShmStore::Copy> ShmStore::CopyOut(const BlockKey& key) {
  const uint32_t e = seg_->Find(key);
  if (e == kNil) return std::nullopt;
  seg_->Touch(e);
  seg_->TouchSourceOf(key);
  Copy c;
  c.size = seg_->entries[e].length;
  c.seq = seg_->entries[e].seq;
  c.bytes.reset(new char[c.size]);
  seg_->CopyValue(e, c.bytes.get());
  return c;
}

absl::Status ShmStore::Miss(const BlockKey& key) {
  absl::MutexLock l(&mu_);
  ++metrics_.misses;
  return absl::NotFoundError(absl::StrCat("block ", key.Hex(), " is not in ", options_.name));
}

void ShmStore::DropCorrupt(const BlockKey& key, uint64_t seq, const absl::Status& why) {
  {
    Locked lock(*seg_);
    if (lock.status().ok()) {
      const uint32_t e = seg_->Find(key);
      // Only the copy we read: a writer may have replaced it since.
      if (e != kNil && seg_->entries[e].seq == seq) seg_->Release(e);
    }
  }
  absl::MutexLock l(&mu_);
  ++metrics_.corrupt;
  ++metrics_.misses;
  if (logged_corrupt_.insert(key.Hex()).second) {
    LogWarning(absl::StrCat("corrupt KV block ", key.Hex(), " in ", options_.name,
                            " dropped (treated as a miss): ", why.ToString()));
  }
}

absl::Status ShmStore::ReadInto(const BlockKey& key, const DestinationFn& make_destination) {
  // Two attempts: a value replaced between the header and the payload is read again
  // once; replaced again, the read is a miss rather than a wait.
  for (int attempt = 0; attempt < 2; ++attempt) {
    uint64_t seq = 0, length = 0;
    char header[kValueHeaderBytes];
    std::vector<int32_t> tokens;
    absl::StatusOr<ValueHeader> parsed = absl::UnknownError("not read");
    {
      Locked lock(*seg_);
      if (!lock.status().ok()) return lock.status();
      const uint32_t e = seg_->Find(key);
      if (e == kNil) return Miss(key);
      seg_->Touch(e);
      seg_->TouchSourceOf(key);
      seq = seg_->entries[e].seq;
      length = seg_->entries[e].length;
      seg_->CopyRange(e, 0, std::min<uint64_t>(length, kValueHeaderBytes), header);
      parsed = ParseValueHeader(
          std::string_view(header, std::min<uint64_t>(length, kValueHeaderBytes)), length,
          options_.codec);
      if (parsed.ok()) {
        tokens.resize(parsed->num_tokens);
        seg_->CopyRange(e, ValueHeader::tokens_at(), 4 * tokens.size(),
                        reinterpret_cast<char*>(tokens.data()));
      }
    }
    if (!parsed.ok()) {
      DropCorrupt(key, seq, parsed.status());
      return absl::NotFoundError(absl::StrCat("block ", key.Hex(), " in ", options_.name,
                                              " is corrupt and was dropped: ",
                                              parsed.status().message()));
    }
    // Outside the lock: the caller allocates (and zero-fills) its destination.
    absl::StatusOr<KvDestination> dest = make_destination(*parsed, tokens);
    if (!dest.ok()) return dest.status();
    absl::StatusOr<ValueDecoder> decoder =
        ValueDecoder::Create(*parsed, options_.codec.shape, *std::move(dest));
    if (!decoder.ok()) return decoder.status();
    {
      Locked lock(*seg_);
      if (!lock.status().ok()) return lock.status();
      const uint32_t e = seg_->Find(key);
      if (e == kNil || seg_->entries[e].seq != seq) {
        if (e == kNil) return Miss(key);  // evicted or removed meanwhile
        continue;                         // replaced: read the new value from the start
      }
      // Straight from the pages: each piece is converted, then hashed while in cache;
      // a large value's pieces on a machine with a second core are hashed there, one
      // piece behind the conversion (ConsumeInParallel).
      // hardware_concurrency reads sysfs: once per process, not under the lock per get.
      static const bool kSecondCore = std::thread::hardware_concurrency() > 1;
      if (length >= kParallelHashMinBytes && kSecondCore) {
        std::vector<ValuePiece> pieces;
        pieces.reserve(seg_->entries[e].num_pages);
        seg_->ForEachPiece(e, [&](const char* data, uint64_t n) {
          pieces.push_back({data, static_cast<size_t>(n)});
        });
        ConsumeInParallel(*decoder, pieces);
      } else {
        seg_->ForEachPiece(e, [&](const char* data, uint64_t n) { decoder->Consume(data, n); });
      }
    }
    if (absl::Status s = decoder->Finish(); !s.ok()) {
      DropCorrupt(key, seq, s);
      return absl::NotFoundError(absl::StrCat("block ", key.Hex(), " in ", options_.name,
                                              " is corrupt and was dropped: ", s.message()));
    }
    absl::MutexLock l(&mu_);
    ++metrics_.hits;
    metrics_.bytes_read += static_cast<int64_t>(length);
    return absl::OkStatus();
  }
  return Miss(key);
}

absl::Status ShmStore::GetInto(const BlockKey& key, const DestinationFn& make_destination) {
  const auto start = std::chrono::steady_clock::now();
  absl::Status status = ReadInto(key, make_destination);
  absl::MutexLock l(&mu_);
  metrics_.get_seconds += SecondsSince(start);
  return status;
}

absl::StatusOr<engine::KvCache> ShmStore::Get(const BlockKey& key) {
  engine::KvCache kv;
  const absl::Status status =
      GetInto(key, [&](const ValueHeader& h, absl::Span<const int32_t> tokens) {
        kv = engine::KvCache(options_.codec.shape, options_.codec.cache_dtype);
        kv.AppendUninitialized(tokens);  // the decode writes every element
        kv.set_start_position(h.start_position);
        return absl::StatusOr<KvDestination>(CacheDestination(kv));
      });
  if (!status.ok()) return status;
  return kv;
}

std::vector<absl::StatusOr<engine::KvCache>> ShmStore::GetMany(absl::Span<const BlockKey> keys) {
  // One key at a time: each decodes under the lock in turn, with its allocation outside.
  std::vector<absl::StatusOr<engine::KvCache>> out;
  out.reserve(keys.size());
  for (const BlockKey& key : keys) out.push_back(Get(key));
  return out;
}

absl::StatusOr<uint64_t> ShmStore::Put(const BlockKey& key, const engine::KvCache& kv) {
  const auto start = std::chrono::steady_clock::now();
  const engine::KvShape& want = options_.codec.shape;
  if (!(kv.shape() == want)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shm store Put: KV shape [", kv.shape().num_layers, ", ", kv.shape().num_kv_heads, ", ",
        kv.shape().head_dim, "] differs from the store's [", want.num_layers, ", ",
        want.num_kv_heads, ", ", want.head_dim, "] (layers, kv heads, head dim)"));
  }
  const uint64_t capacity = seg_->h->num_pages * seg_->h->page_bytes;
  const size_t size = EncodedValueBytes(kv.shape(), kv.num_tokens(), options_.codec.dtype);
  if (size > capacity) {
    return absl::ResourceExhaustedError(
        absl::StrCat("shm store Put: a ", kv.num_tokens(), "-token block encodes to ", size,
                     " bytes, more than the store's whole capacity of ", capacity, " bytes"));
  }
  // Content addressing: a present key already holds this value. Check before encoding.
  bool present = false;
  {
    Locked lock(*seg_);
    if (!lock.status().ok()) return lock.status();
    const uint32_t e = seg_->Find(key);
    if (e != kNil) {
      seg_->Touch(e);
      seg_->TouchSourceOf(key);
      present = true;
    }
  }
  int64_t evicted = 0;
  bool written = false;
  if (!present) {
    const std::string value = EncodeBlockValue(kv, options_.codec);
    Locked lock(*seg_);
    if (!lock.status().ok()) return lock.status();
    const uint32_t e = seg_->Find(key);
    if (e != kNil) {
      seg_->Touch(e);
    } else {
      seg_->TouchSourceOf(key);  // not the one to make room for a re-encoded block
      evicted = seg_->MakeRoom(PagesFor(value.size(), seg_->h->page_bytes));
      seg_->Write(key, value);
      written = true;
    }
    seg_->TouchSourceOf(key);
  }
  absl::MutexLock l(&mu_);
  ++metrics_.puts;
  metrics_.evictions += evicted;
  if (written) metrics_.bytes_written += static_cast<int64_t>(size);
  metrics_.put_seconds += SecondsSince(start);
  return written ? uint64_t{size} : 0;
}

uint64_t ShmStore::ValueBytes(const engine::KvCache& kv) const {
  return EncodedValueBytes(kv.shape(), kv.num_tokens(), options_.codec.dtype);
}

absl::Status ShmStore::Ping() {
  Locked lock(*seg_);
  return lock.status();
}

absl::Status ShmStore::Remove(const BlockKey& key) {
  Locked lock(*seg_);
  if (!lock.status().ok()) return lock.status();
  if (const uint32_t e = seg_->Find(key); e != kNil) seg_->Release(e);
  return absl::OkStatus();
}

bool ShmStore::Contains(const BlockKey& key) {
  Locked lock(*seg_);
  return lock.status().ok() && seg_->Find(key) != kNil;
}

absl::Status ShmStore::PutPassage(std::string_view passage_id, const BlockKey& key) {
  if (passage_id.empty() || passage_id.size() > kMaxPassageIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat("shm store: passage id must be 1..",
                                                   kMaxPassageIdBytes, " bytes, got ",
                                                   passage_id.size()));
  }
  Locked lock(*seg_);
  if (!lock.status().ok()) return lock.status();
  Header* h = seg_->h;
  uint32_t s = seg_->FindPassage(passage_id);
  if (s != kNil) {
    // In place; a crash mid-update leaves a slot whose check fails, dropped on recovery.
    PassageSlot& slot = seg_->passages[s];
    std::memcpy(slot.key, key.bytes.data(), 16);
    slot.seq = ++h->tick;
    slot.check = PassageCheck(slot);
    return absl::OkStatus();
  }
  s = h->free_passage_head;
  if (s == kNil) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "shm store ", options_.name, ": catalog is full (", h->max_passages, " passage ids)"));
  }
  PassageSlot& slot = seg_->passages[s];
  h->free_passage_head = slot.hash_next;
  slot.id_len = static_cast<uint32_t>(passage_id.size());
  std::memcpy(slot.id, passage_id.data(), passage_id.size());
  std::memcpy(slot.key, key.bytes.data(), 16);
  slot.seq = ++h->tick;
  slot.check = PassageCheck(slot);
  StoreRelease(slot.state, kLive);
  uint32_t& head = seg_->PassageBucket(passage_id);
  slot.hash_next = head;
  head = s;
  ++h->live_passages;
  return absl::OkStatus();
}

absl::StatusOr<BlockKey> ShmStore::LookupPassage(std::string_view passage_id) {
  Locked lock(*seg_);
  if (!lock.status().ok()) return lock.status();
  const uint32_t s = seg_->FindPassage(passage_id);
  if (s == kNil) return absl::NotFoundError("no catalog entry");
  // The slot's check hash binds id, key and sequence: a slot whose key was overwritten
  // behind the store's back is absent, not a pointer to another passage's block.
  if (seg_->passages[s].check != PassageCheck(seg_->passages[s])) {
    return absl::NotFoundError("catalog entry fails its check hash");
  }
  BlockKey key;
  std::memcpy(key.bytes.data(), seg_->passages[s].key, 16);
  return key;
}

absl::Status ShmStore::PutSource(const BlockKey& key, absl::Span<const int32_t> tokens) {
  const std::string value = EncodeSourceValue(tokens);
  const uint64_t pages = PagesFor(value.size(), seg_->h->page_bytes);
  if (pages > seg_->h->num_pages) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "shm store PutSource: a ", tokens.size(), "-token source takes ", value.size(),
        " bytes, more than the store's whole capacity"));
  }
  const BlockKey source_key = SourceKey(key);
  int64_t evicted = 0;
  {
    Locked lock(*seg_);
    if (!lock.status().ok()) return lock.status();
    if (const uint32_t e = seg_->Find(source_key); e != kNil) {
      seg_->Touch(e);  // content addressing: the same key has the same source
    } else {
      if (const uint32_t b = seg_->Find(key); b != kNil) seg_->Touch(b);  // keep the block
      evicted = seg_->MakeRoom(pages);
      seg_->Write(source_key, value);
    }
  }
  absl::MutexLock l(&mu_);
  metrics_.evictions += evicted;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> ShmStore::GetSource(const BlockKey& key) {
  const BlockKey source_key = SourceKey(key);
  std::optional<Copy> copy;
  {
    Locked lock(*seg_);
    if (!lock.status().ok()) return lock.status();
    copy = CopyOut(source_key);
  }
  if (!copy) {
    return absl::NotFoundError(absl::StrCat("no source of block ", key.Hex(), " in ",
                                            options_.name));
  }
  absl::StatusOr<std::vector<int32_t>> tokens =
      DecodeSourceValue(std::string_view(copy->bytes.get(), copy->size));
  if (!tokens.ok()) {
    DropCorrupt(source_key, copy->seq, tokens.status());
    return absl::NotFoundError(absl::StrCat("the source of block ", key.Hex(), " in ",
                                            options_.name, " is corrupt and was dropped: ",
                                            tokens.status().message()));
  }
  return tokens;
}

StoreMetrics ShmStore::metrics() const {
  absl::MutexLock l(&mu_);
  return metrics_;
}

ShmUsage ShmStore::Usage() {
  Locked lock(*seg_);
  ShmUsage u;
  if (!lock.status().ok()) return u;
  const Header* h = seg_->h;
  u.entries = static_cast<int64_t>(h->live_entries);
  u.max_entries = static_cast<int64_t>(h->max_entries);
  u.value_bytes = static_cast<int64_t>(h->value_bytes);
  u.capacity_bytes = static_cast<int64_t>(h->num_pages * h->page_bytes);
  u.used_bytes = static_cast<int64_t>((h->num_pages - h->free_pages) * h->page_bytes);
  u.passages = static_cast<int64_t>(h->live_passages);
  u.recoveries = static_cast<int64_t>(h->recoveries);
  return u;
}

}  // namespace blockserve::kv_store
