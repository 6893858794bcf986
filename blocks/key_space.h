// KeySpace: where the content keys of one served model live. Every block key the
// services derive goes through here (never through kv_store::MakeBlockKey directly), so
// that what separates one key space from another is decided in one place: today the
// model fingerprint (two models never share a block); tenant namespaces are meant to
// be added here.
#ifndef BLOCKSERVE_BLOCKS_KEY_SPACE_H_
#define BLOCKSERVE_BLOCKS_KEY_SPACE_H_

#include <cstdint>

#include "absl/types/span.h"
#include "kv_store/block_key.h"

namespace blockserve::blocks {

class KeySpace {
 public:
  explicit KeySpace(uint64_t model_fingerprint) : model_fingerprint_(model_fingerprint) {}

  // The content key of a block of `tokens`: equal tokens, equal key.
  kv_store::BlockKey BlockKeyOf(absl::Span<const int32_t> tokens) const {
    return kv_store::MakeBlockKey(model_fingerprint_, tokens);
  }
  uint64_t model_fingerprint() const { return model_fingerprint_; }

 private:
  uint64_t model_fingerprint_;
};

}  // namespace blockserve::blocks

#endif  // BLOCKSERVE_BLOCKS_KEY_SPACE_H_
