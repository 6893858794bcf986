// The parts of the Redis Cluster protocol (https://redis.io/docs/reference/cluster-spec/)
// that a client needs, as pure functions: which hash slot a key lives in, what a
// redirection (MOVED / ASK) or another refusal in an error reply means, the slot map in
// a CLUSTER SLOTS reply, and "host:port" addresses.
#ifndef BLOCKSERVE_KV_STORE_REDIS_CLUSTER_PROTOCOL_H_
#define BLOCKSERVE_KV_STORE_REDIS_CLUSTER_PROTOCOL_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

struct redisReply;

namespace blockserve::kv_store::redis {

inline constexpr int kClusterSlots = 16384;

// CRC16/XMODEM (polynomial 0x1021, initial value 0, no reflection, no final xor): the
// spec's key hash. Crc16("123456789") == 0x31C3.
uint16_t Crc16(std::string_view bytes);

// The part of a key that is hashed: the hash tag, i.e. what lies between the first '{'
// and the first '}' after it, when that is not empty; otherwise the whole key.
std::string_view HashTag(std::string_view key);

// The slot a key lives in: Crc16(HashTag(key)) mod 16384.
int KeySlot(std::string_view key);

struct HostPort {
  std::string host;
  int port = 0;
  std::string ToString() const;  // "host:port", "[v6]:port" for an IPv6 address
  bool operator==(const HostPort& o) const { return host == o.host && port == o.port; }
};

// "host:port", with an IPv6 address in brackets ("[::1]:7000"). InvalidArgument, naming
// the text, for anything else (no port, a port outside 1..65535, an empty host).
absl::StatusOr<HostPort> ParseHostPort(std::string_view text);

// What an error reply asks of a cluster client.
struct ErrorReply {
  enum class Kind {
    kMoved,        // "MOVED <slot> <host>:<port>": the slot lives there now, for good
    kAsk,          // "ASK <slot> <host>:<port>": this one key, during a migration
    kUnavailable,  // the node cannot serve now: CLUSTERDOWN, TRYAGAIN, LOADING,
                   // MASTERDOWN, BUSY (retryable, nothing is wrong with the request)
    kOther,        // anything else (a real error of the command)
  };
  Kind kind = Kind::kOther;
  int slot = -1;
  HostPort target;  // kMoved, kAsk
};

// Classifies an error reply's text. A redirection whose host part is empty (or "?", an
// unknown endpoint) means the host of the node that sent it: `replying_host`. A
// malformed MOVED or ASK is kOther.
ErrorReply ClassifyErrorReply(std::string_view text, std::string_view replying_host);

// One entry of CLUSTER SLOTS: the slots [first, last] served by `master`, replicated to
// `replicas`.
struct SlotRange {
  int first = 0;
  int last = 0;
  HostPort master;
  std::vector<HostPort> replicas;
};

// Parses a CLUSTER SLOTS reply. A node listed with an empty host (or "?") is
// `replying_host`, as for redirections. InvalidArgument for a reply of another shape or
// a slot outside 0..16383.
absl::StatusOr<std::vector<SlotRange>> ParseClusterSlots(const redisReply& reply,
                                                         std::string_view replying_host);

}  // namespace blockserve::kv_store::redis

#endif  // BLOCKSERVE_KV_STORE_REDIS_CLUSTER_PROTOCOL_H_
