#include "kv_store/redis/connection.h"

#include <hiredis/hiredis.h>
#include <limits.h>
#include <pthread.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace blockserve::kv_store::redis {
namespace {

// Commands at least this large bypass hiredis' output buffer.
constexpr size_t kDirectWriteBytes = 256 << 10;
// Socket reads for reply headers (and small values) go through this buffer.
constexpr size_t kReadChunk = 64 << 10;
// A reply's first line ("$<length>" or an error text) is never longer than this.
constexpr size_t kMaxLine = 64 << 10;

size_t TotalBytes(const Args& args) {
  size_t total = 0;
  for (std::string_view a : args.args()) total += a.size();
  return total;
}

}  // namespace

void ReplyDeleter::operator()(redisReply* r) const { freeReplyObject(r); }

absl::StatusOr<std::unique_ptr<Connection>> Connection::Dial(const std::string& host, int port,
                                                             const Credentials& credentials,
                                                             absl::Duration connect_timeout,
                                                             absl::Duration op_timeout) {
  redisContext* c = redisConnectWithTimeout(host.c_str(), port, absl::ToTimeval(connect_timeout));
  if (c == nullptr) return absl::UnavailableError("redis: cannot allocate a connection");
  std::unique_ptr<Connection> conn(new Connection(c));
  if (c->err != 0) {
    return absl::UnavailableError(
        absl::StrCat("redis: cannot connect to ", host, ":", port, ": ", c->errstr));
  }
  if (redisSetTimeout(c, absl::ToTimeval(op_timeout)) != REDIS_OK) {
    return absl::UnavailableError(absl::StrCat("redis: cannot set socket timeouts: ", c->errstr));
  }
  redisEnableKeepAlive(c);
  if (!credentials.password.empty()) {
    absl::Status authenticated = conn->Authenticate(host, port, credentials);
    if (!authenticated.ok()) return authenticated;
  }
  return conn;
}

absl::Status Connection::Authenticate(const std::string& host, int port,
                                      const Credentials& credentials) {
  Args auth{"AUTH"};
  if (!credentials.user.empty()) auth.Add(credentials.user);
  auth.Add(credentials.password);
  const ReplyPtr reply = Command(auth);
  if (reply == nullptr) {
    return absl::UnavailableError(absl::StrCat("redis at ", host, ":", port,
                                               ": no answer to AUTH: ", error()));
  }
  if (reply->type != REDIS_REPLY_ERROR) return absl::OkStatus();
  const std::string who = credentials.user.empty()
                              ? std::string("the default user")
                              : absl::StrCat("user \"", credentials.user, "\"");
  // Redis's refusals ("WRONGPASS invalid username-password pair…", "ERR AUTH <password>
  // called without any password configured…") do not repeat the password; it is cut out
  // anyway, so that no reply a future Redis might give can carry it into a log.
  std::string said(reply->str, reply->len);
  constexpr std::string_view kHidden = "<password>";
  for (size_t at = said.find(credentials.password); at != std::string::npos;
       at = said.find(credentials.password, at + kHidden.size())) {
    said.replace(at, credentials.password.size(), kHidden);
  }
  return absl::UnauthenticatedError(absl::StrCat("redis at ", host, ":", port,
                                                 " refused AUTH as ", who, ": ", said));
}

Connection::Connection(redisContext* ctx) : ctx_(ctx), in_(kReadChunk) {}

Connection::~Connection() { redisFree(ctx_); }

bool Connection::HiredisFailed() {
  errno_ = errno;
  return false;
}

bool Connection::Fail(std::string message, int err) {
  errno_ = err;
  error_ = std::move(message);
  return false;
}

std::string Connection::error() const {
  return error_.empty() ? std::string(ctx_->errstr) : error_;
}

bool Connection::timed_out() const { return errno_ == EAGAIN || errno_ == EWOULDBLOCK; }

bool Connection::drained() const { return pos_ == end_ && ctx_->reader->pos == ctx_->reader->len; }

bool Connection::Append(const Args& args) {
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
  for (std::string_view a : args.args()) {
    ptrs.push_back(a.data());
    lens.push_back(a.size());
  }
  if (redisAppendCommandArgv(ctx_, static_cast<int>(ptrs.size()), ptrs.data(), lens.data()) !=
      REDIS_OK) {
    return HiredisFailed();
  }
  return true;
}

bool Connection::Flush() {
  int done = 0;
  do {
    if (redisBufferWrite(ctx_, &done) != REDIS_OK) return HiredisFailed();
  } while (done == 0);
  return true;
}

ReplyPtr Connection::Command(const Args& args) {
  if (pos_ != end_) {
    Fail("redis: unread reply bytes before a command");
    return nullptr;
  }
  const bool direct = TotalBytes(args) >= kDirectWriteBytes && sdslen(ctx_->obuf) == 0;
  if (!(direct ? WriteDirect(args) : Append(args))) return nullptr;
  void* reply = nullptr;
  if (redisGetReply(ctx_, &reply) != REDIS_OK) HiredisFailed();
  return ReplyPtr(static_cast<redisReply*>(reply));
}

// RESP framing: "*<argc>\r\n", then "$<len>\r\n<bytes>\r\n" per argument. The framing
// pieces are small strings; the argument bytes are written from where they are.
bool Connection::WriteDirect(const Args& args) {
  const std::vector<std::string_view>& a = args.args();
  const size_t n = a.size();
  std::vector<std::string> frames(n + 1);
  for (size_t i = 0; i < n; ++i) {
    frames[i] = absl::StrCat(i == 0 ? absl::StrCat("*", n, "\r\n") : std::string("\r\n"), "$",
                             a[i].size(), "\r\n");
  }
  frames[n] = "\r\n";
  std::vector<iovec> iov;
  for (size_t i = 0; i < n; ++i) {
    iov.push_back({frames[i].data(), frames[i].size()});
    if (!a[i].empty()) iov.push_back({const_cast<char*>(a[i].data()), a[i].size()});
  }
  iov.push_back({frames[n].data(), frames[n].size()});

  size_t next = 0;
  while (next < iov.size()) {
    const int count = static_cast<int>(std::min<size_t>(iov.size() - next, IOV_MAX));
    ssize_t written = writev(ctx_->fd, iov.data() + next, count);
    if (written < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      return Fail(absl::StrCat("redis: write: ", strerror(err)), err);
    }
    while (written > 0) {  // drop what went out; the last iovec touched may be partial
      const size_t take = std::min<size_t>(static_cast<size_t>(written), iov[next].iov_len);
      iov[next].iov_base = static_cast<char*>(iov[next].iov_base) + take;
      iov[next].iov_len -= take;
      written -= static_cast<ssize_t>(take);
      if (iov[next].iov_len == 0) ++next;
    }
  }
  return true;
}

// Reads more bytes into in_ after the unread ones.
bool Connection::Fill() {
  if (pos_ > 0) {
    std::memmove(in_.data(), in_.data() + pos_, end_ - pos_);
    end_ -= pos_;
    pos_ = 0;
  }
  if (end_ == in_.size()) in_.resize(2 * in_.size());
  for (;;) {
    const ssize_t got = read(ctx_->fd, in_.data() + end_, in_.size() - end_);
    if (got > 0) {
      end_ += static_cast<size_t>(got);
      return true;
    }
    if (got == 0) return Fail("redis: server closed the connection");
    if (errno == EINTR) continue;
    const int err = errno;
    return Fail(absl::StrCat("redis: read: ", strerror(err)), err);
  }
}

// The next line without its "\r\n"; valid until the next Fill().
bool Connection::ReadLine(std::string_view& line) {
  for (;;) {
    const std::string_view unread(in_.data() + pos_, end_ - pos_);
    const size_t crlf = unread.find("\r\n");
    if (crlf != std::string_view::npos) {
      line = unread.substr(0, crlf);
      pos_ += crlf + 2;
      return true;
    }
    if (unread.size() > kMaxLine) return Fail("redis: reply line too long");
    if (!Fill()) return false;
  }
}

bool Connection::ReadBulk(BulkReply& reply) { return ReadReply(reply, nullptr, 0); }

bool Connection::ReadBulkInto(BulkReply& reply, char* into, size_t capacity) {
  return ReadReply(reply, into, capacity);
}

bool Connection::ReadReply(BulkReply& reply, char* into, size_t capacity) {
  if (ctx_->reader->pos != ctx_->reader->len)
    return Fail("redis: hiredis holds unread reply bytes");
  std::string_view line;
  if (!ReadLine(line)) return false;
  if (line.empty()) return Fail("redis: empty reply line");
  const char type = line.front();
  line.remove_prefix(1);
  if (type == '-' || type == '+') {
    reply.kind = type == '-' ? BulkReply::Kind::kError : BulkReply::Kind::kStatus;
    reply.size = line.size();
    reply.data.reset(new char[line.size()]);
    std::memcpy(reply.data.get(), line.data(), line.size());
    return true;
  }
  int64_t length = 0;
  if (type == ':') {
    if (!absl::SimpleAtoi(absl::string_view(line.data(), line.size()), &reply.integer)) {
      return Fail(absl::StrCat("redis: bad integer reply '", std::string(line.substr(0, 40)), "'"));
    }
    reply.kind = BulkReply::Kind::kInteger;
    reply.data.reset();
    reply.size = 0;
    return true;
  }
  if (type != '$' || !absl::SimpleAtoi(absl::string_view(line.data(), line.size()), &length) ||
      length < -1) {
    return Fail(absl::StrCat("redis: expected a bulk string reply, found '", std::string(1, type),
                             std::string(line.substr(0, 40)), "'"));
  }
  if (length == -1) {
    reply.kind = BulkReply::Kind::kNil;
    reply.data.reset();
    reply.size = 0;
    return true;
  }
  const size_t n = static_cast<size_t>(length);
  reply.kind = BulkReply::Kind::kValue;
  reply.size = n;
  char* out = into;
  if (into == nullptr) {
    reply.data.reset(new char[n]);
    out = reply.data.get();
  } else {
    reply.data.reset();
    if (n > capacity) {
      return Fail(absl::StrCat("redis: a ", n, "-byte value where at most ", capacity,
                               " were asked for"));
    }
  }
  size_t have = std::min(n, end_ - pos_);
  std::memcpy(out, in_.data() + pos_, have);
  pos_ += have;
  while (have < n) {  // the rest goes straight into the value, in as few reads as the kernel allows
    const ssize_t got = read(ctx_->fd, out + have, n - have);
    if (got > 0) {
      have += static_cast<size_t>(got);
    } else if (got == 0) {
      return Fail("redis: server closed the connection");
    } else if (errno != EINTR) {
      const int err = errno;
      return Fail(absl::StrCat("redis: read: ", strerror(err)), err);
    }
  }
  std::string_view terminator;
  if (!ReadLine(terminator)) return false;
  if (!terminator.empty()) return Fail("redis: bulk string not followed by CRLF");
  return true;
}

ScopedSigpipeBlock::ScopedSigpipeBlock() {
  sigemptyset(&pipe_);
  sigaddset(&pipe_, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  sigset_t pending;
  sigpending(&pending);
  was_pending_ = sigismember(&pending, SIGPIPE) == 1;
}

ScopedSigpipeBlock::~ScopedSigpipeBlock() {
  if (!was_pending_) {
    sigset_t pending;
    sigpending(&pending);
    if (sigismember(&pending, SIGPIPE) == 1) {
      const timespec no_wait{0, 0};
      while (sigtimedwait(&pipe_, nullptr, &no_wait) < 0 && errno == EINTR) {
      }
    }
  }
  pthread_sigmask(SIG_SETMASK, &old_, nullptr);
}

}  // namespace blockserve::kv_store::redis
