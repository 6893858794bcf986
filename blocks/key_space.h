// KeySpace: where the content keys of one served model live. Every block key and every
// stored passage id the services derive goes through here (never through
// kv_store::MakeBlockKey directly), so that what separates one key space from another is
// decided in one place: the model fingerprint (two models never share a block) and the
// tenant namespace (security/tenant_scope.h: two tenants never share a block, a passage
// id or a source, so neither can hit, overwrite or probe the other's).
#ifndef BLOCKSERVE_BLOCKS_KEY_SPACE_H_
#define BLOCKSERVE_BLOCKS_KEY_SPACE_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "absl/types/span.h"
#include "kv_store/block_key.h"

namespace blockserve::blocks {

class KeySpace {
 public:
  explicit KeySpace(uint64_t model_fingerprint) : model_fingerprint_(model_fingerprint) {}

  // The content key of a block of `tokens` in namespace `ns`: equal tokens in one
  // namespace, equal key; the empty namespace (single tenant) keys by the model alone.
  kv_store::BlockKey BlockKeyOf(std::string_view ns, absl::Span<const int32_t> tokens) const {
    uint64_t space = model_fingerprint_;
    if (!ns.empty()) {
      // The namespace's own "model": its keys share nothing with another's.
      std::vector<int32_t> name(ns.begin(), ns.end());
      const kv_store::BlockKey named = kv_store::MakeBlockKey(model_fingerprint_, name);
      std::memcpy(&space, named.bytes.data(), sizeof(space));
    }
    return kv_store::MakeBlockKey(space, tokens);
  }
  uint64_t model_fingerprint() const { return model_fingerprint_; }

  // The catalog's id of passage `id` in namespace `ns`: `id` itself in the empty
  // namespace, else "<ns>\x1f<id>" (passage ids hold no control characters, so no id of
  // one namespace can spell another's).
  static std::string StoredPassageId(std::string_view ns, std::string_view id) {
    if (ns.empty()) return std::string(id);
    std::string out(ns);
    out.push_back('\x1f');
    out.append(id);
    return out;
  }

 private:
  uint64_t model_fingerprint_;
};

}  // namespace blockserve::blocks

#endif  // BLOCKSERVE_BLOCKS_KEY_SPACE_H_
