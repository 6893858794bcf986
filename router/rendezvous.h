// Rendezvous (highest-random-weight) placement: every router that sees the same healthy
// prefills sends the same passage set to the same prefill, with no state shared between
// routers and no memory of past requests.
//
// score(prefill, key) = Mix64(StableHash64(prefill address) ^ Mix64(key)); a passage set
// goes to the prefill with the highest score (ties: the smaller address). Adding a prefill
// to N moves only the keys it now wins (about 1/(N+1), all to it); removing one moves
// only its own keys. The hashes are defined here, byte by byte, so that they are the same
// in every process and every build (std::hash and absl::Hash promise neither).
#ifndef BLOCKSERVE_ROUTER_RENDEZVOUS_H_
#define BLOCKSERVE_ROUTER_RENDEZVOUS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace blockserve::router {

// A bijective 64-bit finaliser (MurmurHash3's fmix64 constants).
uint64_t Mix64(uint64_t x);
// FNV-1a 64 over the bytes, then Mix64. Stable: changing it moves every passage set.
uint64_t StableHash64(absl::string_view bytes);
// The weight of a backend (by StableHash64 of its address) for `key`.
inline uint64_t RendezvousScore(uint64_t address_hash, uint64_t key) {
  return Mix64(address_hash ^ Mix64(key));
}
// `addresses` from the best to the worst for `key`.
std::vector<std::string> RendezvousOrder(std::vector<std::string> addresses, uint64_t key);

}  // namespace blockserve::router

#endif  // BLOCKSERVE_ROUTER_RENDEZVOUS_H_
