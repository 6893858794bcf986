// PassageCatalog: a client's passage id -> the content key of the passage's block, so
// that a request can name a passage ingested earlier instead of sending its text. One
// of the KV store's three concerns (kv_store.h). Last write wins. Safe to call from
// several threads.
#ifndef BLOCKSERVE_KV_STORE_PASSAGE_CATALOG_H_
#define BLOCKSERVE_KV_STORE_PASSAGE_CATALOG_H_

#include <optional>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kv_store/block_key.h"

namespace blockserve::kv_store {

class PassageCatalog {
 public:
  virtual ~PassageCatalog() = default;

  // Each backend documents its id limits (InvalidArgument) and its capacity
  // (ResourceExhausted); an unreachable backend is UNAVAILABLE.
  virtual absl::Status PutPassage(std::string_view passage_id, const BlockKey& key) = 0;
  // The content key the id names. NotFound when the id is unknown (or its entry is
  // unreadable: logged, treated as absent); Unavailable when the backend cannot be
  // reached, so a caller can tell "no such passage" from "cannot tell now".
  virtual absl::StatusOr<BlockKey> LookupPassage(std::string_view passage_id) = 0;

  // LookupPassage for callers to whom both failures mean "no key" (tests, tools).
  std::optional<BlockKey> GetPassage(std::string_view passage_id) {
    absl::StatusOr<BlockKey> key = LookupPassage(passage_id);
    if (!key.ok()) return std::nullopt;
    return *key;
  }
};

}  // namespace blockserve::kv_store

#endif  // BLOCKSERVE_KV_STORE_PASSAGE_CATALOG_H_
