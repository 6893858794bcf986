#include "router/rendezvous.h"

#include <algorithm>
#include <utility>

namespace blockserve::router {

uint64_t Mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

uint64_t StableHash64(absl::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a 64 offset basis
  for (const char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;  // FNV-1a 64 prime
  }
  return Mix64(h);
}

std::vector<std::string> RendezvousOrder(std::vector<std::string> addresses, uint64_t key) {
  std::vector<std::pair<uint64_t, std::string>> scored;
  scored.reserve(addresses.size());
  for (std::string& a : addresses) {
    const uint64_t score = RendezvousScore(StableHash64(a), key);
    scored.emplace_back(score, std::move(a));
  }
  std::sort(scored.begin(), scored.end(), [](const auto& x, const auto& y) {
    return x.first != y.first ? x.first > y.first : x.second < y.second;
  });
  std::vector<std::string> out;
  out.reserve(scored.size());
  for (auto& [score, address] : scored) out.push_back(std::move(address));
  return out;
}

}  // namespace blockserve::router
