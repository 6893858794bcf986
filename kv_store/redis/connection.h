// The wire under RedisStore: one blocking connection to Redis (hiredis), plus the two
// paths where hiredis is too slow for multi-MB values:
//   - a command with a large argument (SET of a block) is written with writev straight
//     from the caller's memory; hiredis' output buffer would copy the value twice and
//     memmove the unsent tail after every partial write (quadratic in the value size);
//   - a GET reply is read straight off the socket into its final buffer with large
//     reads; hiredis' reader reads 16 KB at a time and copies the value twice more.
// Every socket read and write is bounded by op_timeout (SO_RCVTIMEO/SO_SNDTIMEO). After
// any failure the connection is unusable: callers discard it.
#ifndef BLOCKSERVE_KV_STORE_REDIS_CONNECTION_H_
#define BLOCKSERVE_KV_STORE_REDIS_CONNECTION_H_

#include <signal.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

struct redisContext;
struct redisReply;

namespace blockserve::kv_store::redis {

// A command's arguments as views (binary-safe); the caller keeps the bytes alive.
class Args {
 public:
  Args(std::initializer_list<std::string_view> args) : args_(args) {}
  void Add(std::string_view a) { args_.push_back(a); }
  const std::vector<std::string_view>& args() const { return args_; }

 private:
  std::vector<std::string_view> args_;
};

struct ReplyDeleter {
  void operator()(redisReply* r) const;
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

// The reply to a GET: a value, nil, or an error reply (its text in `bytes`); or a
// status reply ("+OK", its text in `bytes`), the answer to ASKING before a GET; or an
// integer reply (STRLEN), in `integer`.
struct BulkReply {
  enum class Kind { kValue, kNil, kError, kStatus, kInteger };
  Kind kind = Kind::kNil;
  std::unique_ptr<char[]> data;  // uninitialized allocation: no pass to zero it
  size_t size = 0;
  int64_t integer = 0;
  std::string_view bytes() const { return {data.get(), size}; }
};

// Who the connection authenticates as. An empty password sends no AUTH; an empty user
// with a password is Redis's default user (`AUTH <password>`, requirepass), a named one
// an ACL user (`AUTH <user> <password>`).
struct Credentials {
  std::string user;
  std::string password;  // a secret: never logged, never in an error message
};

class Connection {
 public:
  // Connects and, with a password, authenticates before anything else is sent.
  // Unavailable when Redis cannot be reached (or does not answer AUTH); Unauthenticated
  // when it refuses the credentials, with its reply (never the password).
  static absl::StatusOr<std::unique_ptr<Connection>> Dial(const std::string& host, int port,
                                                          const Credentials& credentials,
                                                          absl::Duration connect_timeout,
                                                          absl::Duration op_timeout);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Sends one command and returns its reply; null when the connection broke.
  ReplyPtr Command(const Args& args);

  // Pipelining: Append queues commands, Flush sends them all, then ReadBulk returns the
  // replies of queued GETs (and ASKINGs) in order. False when the connection broke.
  bool Append(const Args& args);
  bool Flush();
  bool ReadBulk(BulkReply& reply);
  // ReadBulk, but a value goes straight into [into, into + capacity) (reply.data stays
  // empty, reply.size says how much came); a value longer than `capacity` breaks the
  // connection (GETRANGE never answers more than it was asked).
  bool ReadBulkInto(BulkReply& reply, char* into, size_t capacity);

  // True when no reply bytes are left unread (the connection may go back to the pool).
  bool drained() const;
  std::string error() const;
  // The last failure was a socket timeout: Redis is alive but stuck, so retrying at
  // once would only cost another op_timeout.
  bool timed_out() const;

 private:
  explicit Connection(redisContext* ctx);
  absl::Status Authenticate(const std::string& host, int port, const Credentials& credentials);
  bool WriteDirect(const Args& args);
  bool ReadLine(std::string_view& line);
  bool ReadReply(BulkReply& reply, char* into, size_t capacity);
  bool Fill();
  bool Fail(std::string message, int err = 0);
  bool HiredisFailed();

  redisContext* const ctx_;
  int errno_ = 0;
  std::string error_;  // failures hiredis does not know about (direct reads and writes)

  // Bytes read off the socket but not consumed yet: [pos_, end_) of in_.
  std::vector<char> in_;
  size_t pos_ = 0, end_ = 0;
};

// hiredis writes with write(2), so writing to a connection Redis has closed raises
// SIGPIPE, whose default action kills the process. A library must not change the
// process's signal dispositions, so the calling thread blocks SIGPIPE while it talks to
// Redis and, before unblocking, consumes any SIGPIPE that became pending meanwhile.
class ScopedSigpipeBlock {
 public:
  ScopedSigpipeBlock();
  ~ScopedSigpipeBlock();
  ScopedSigpipeBlock(const ScopedSigpipeBlock&) = delete;
  ScopedSigpipeBlock& operator=(const ScopedSigpipeBlock&) = delete;

 private:
  sigset_t pipe_;
  sigset_t old_;
  bool was_pending_ = false;
};

}  // namespace blockserve::kv_store::redis

#endif  // BLOCKSERVE_KV_STORE_REDIS_CONNECTION_H_
