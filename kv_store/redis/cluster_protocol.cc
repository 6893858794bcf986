#include "kv_store/redis/cluster_protocol.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <array>
#include <charconv>

#include "absl/strings/str_cat.h"

namespace blockserve::kv_store::redis {
namespace {

constexpr std::array<uint16_t, 256> MakeCrc16Table() {
  std::array<uint16_t, 256> table{};
  for (int byte = 0; byte < 256; ++byte) {
    uint16_t crc = static_cast<uint16_t>(byte << 8);
    for (int bit = 0; bit < 8; ++bit) {
      crc = static_cast<uint16_t>((crc & 0x8000) != 0 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    table[byte] = crc;
  }
  return table;
}

constexpr std::array<uint16_t, 256> kCrc16Table = MakeCrc16Table();

// Abseil here has its own string_view: these take std's.
bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}
bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}
bool Contains(std::string_view s, char c) { return s.find(c) != std::string_view::npos; }
// A decimal int, all of `s` (no sign, no spaces).
bool ParseInt(std::string_view s, int& out) {
  if (s.empty() || s.front() == '-' || s.front() == '+') return false;
  const auto [end, error] = std::from_chars(s.data(), s.data() + s.size(), out);
  return error == std::errc() && end == s.data() + s.size();
}

// "[v6]" → "v6"; anything else as is.
std::string_view Unbracket(std::string_view host) {
  return StartsWith(host, "[") && EndsWith(host, "]") ? host.substr(1, host.size() - 2) : host;
}

// The host a node was named by, or the replying node's when it gave none.
std::string HostOr(std::string_view host, std::string_view replying_host) {
  return std::string(host.empty() || host == "?" ? replying_host : host);
}

}  // namespace

uint16_t Crc16(std::string_view bytes) {
  uint16_t crc = 0;
  for (const char c : bytes) {
    crc = static_cast<uint16_t>((crc << 8) ^
                                kCrc16Table[((crc >> 8) ^ static_cast<uint8_t>(c)) & 0xff]);
  }
  return crc;
}

std::string_view HashTag(std::string_view key) {
  const size_t open = key.find('{');
  if (open == std::string_view::npos) return key;
  const size_t close = key.find('}', open + 1);
  if (close == std::string_view::npos || close == open + 1) return key;
  return key.substr(open + 1, close - open - 1);
}

int KeySlot(std::string_view key) { return Crc16(HashTag(key)) & (kClusterSlots - 1); }

std::string HostPort::ToString() const {
  return Contains(host, ':') ? absl::StrCat("[", host, "]:", port) : absl::StrCat(host, ":", port);
}

absl::StatusOr<HostPort> ParseHostPort(std::string_view text) {
  auto bad = [&](const char* why) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", std::string(text), "\" is not host:port (", why, ")"));
  };
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return bad("no port");
  const std::string_view bracketed = text.substr(0, colon);
  const std::string_view host = Unbracket(bracketed);
  if (host == bracketed && Contains(host, ':')) return bad("an IPv6 address goes in brackets");
  if (host.empty()) return bad("empty host");
  int port = 0;
  if (!ParseInt(text.substr(colon + 1), port) || port < 1 || port > 65535) {
    return bad("the port must be in 1..65535");
  }
  return HostPort{std::string(host), port};
}

ErrorReply ClassifyErrorReply(std::string_view text, std::string_view replying_host) {
  ErrorReply out;
  std::vector<std::string_view> words;
  for (size_t at = 0; at < text.size();) {
    const size_t space = std::min(text.find(' ', at), text.size());
    if (space > at) words.push_back(text.substr(at, space - at));
    at = space + 1;
  }
  if (words.empty()) return out;
  const std::string_view code = words[0];
  if (code == "MOVED" || code == "ASK") {
    // "<slot> <endpoint>:<port>"; the endpoint may be empty ("MOVED 3999 :6380").
    int slot = -1, port = 0;
    if (words.size() != 3 || !ParseInt(words[1], slot) || slot >= kClusterSlots) return out;
    const size_t colon = words[2].rfind(':');
    if (colon == std::string_view::npos || !ParseInt(words[2].substr(colon + 1), port) ||
        port < 1 || port > 65535) {
      return out;
    }
    const std::string_view host = Unbracket(words[2].substr(0, colon));
    out.kind = code == "MOVED" ? ErrorReply::Kind::kMoved : ErrorReply::Kind::kAsk;
    out.slot = slot;
    out.target = {HostOr(host, replying_host), port};
    return out;
  }
  for (const std::string_view transient :
       {"CLUSTERDOWN", "TRYAGAIN", "LOADING", "MASTERDOWN", "BUSY"}) {
    if (code == transient) out.kind = ErrorReply::Kind::kUnavailable;
  }
  return out;
}

absl::StatusOr<std::vector<SlotRange>> ParseClusterSlots(const redisReply& reply,
                                                         std::string_view replying_host) {
  auto bad = [](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("CLUSTER SLOTS reply: ", why));
  };
  if (reply.type != REDIS_REPLY_ARRAY) return bad("not an array");
  // [host, port, id, ...] → host:port.
  auto node = [&](const redisReply& n, HostPort& out) {
    if (n.type != REDIS_REPLY_ARRAY || n.elements < 2 || n.element[0]->type != REDIS_REPLY_STRING ||
        n.element[1]->type != REDIS_REPLY_INTEGER || n.element[1]->integer < 1 ||
        n.element[1]->integer > 65535) {
      return false;
    }
    out.host = HostOr(std::string_view(n.element[0]->str, n.element[0]->len), replying_host);
    out.port = static_cast<int>(n.element[1]->integer);
    return true;
  };
  std::vector<SlotRange> ranges;
  for (size_t i = 0; i < reply.elements; ++i) {
    const redisReply& e = *reply.element[i];
    if (e.type != REDIS_REPLY_ARRAY || e.elements < 3 ||
        e.element[0]->type != REDIS_REPLY_INTEGER || e.element[1]->type != REDIS_REPLY_INTEGER) {
      return bad(absl::StrCat("entry ", i, " is not [first, last, master, replicas...]"));
    }
    SlotRange range;
    const long long first = e.element[0]->integer, last = e.element[1]->integer;
    if (first < 0 || last < first || last >= kClusterSlots) {
      return bad(absl::StrCat("entry ", i, " has slots ", first, "..", last));
    }
    range.first = static_cast<int>(first);
    range.last = static_cast<int>(last);
    if (!node(*e.element[2], range.master)) {
      return bad(absl::StrCat("entry ", i, " has no usable master address"));
    }
    for (size_t r = 3; r < e.elements; ++r) {
      HostPort replica;
      if (node(*e.element[r], replica)) range.replicas.push_back(std::move(replica));
    }
    ranges.push_back(std::move(range));
  }
  return ranges;
}

}  // namespace blockserve::kv_store::redis
