// Test helpers for what a process listens on, as the kernel sees it: the listening TCP
// sockets of a process (from /proc/<pid>/net/tcp{,6} and /proc/<pid>/fd), and a free
// loopback port to give a server.
#ifndef BLOCKSERVE_COMMON_TESTING_SOCKETS_H_
#define BLOCKSERVE_COMMON_TESTING_SOCKETS_H_

#include <sys/types.h>

#include <optional>
#include <set>
#include <string>
#include <vector>

namespace blockserve::testing {

// A listening TCP socket as /proc/net/tcp{,6} lists it.
struct ListeningSocket {
  // The bound address in the table's hex: "0100007F" is 127.0.0.1, "00000000" 0.0.0.0;
  // 32 digits for IPv6 ("0000000000000000FFFF00000100007F": ::ffff:127.0.0.1).
  std::string local_hex;
  int port = 0;
};

// The listening TCP sockets of process `pid` (0: this process). The tables list every
// socket of the network namespace, so only the inodes of the process's own descriptors
// count. Empty when the process is gone or cannot be inspected.
std::vector<ListeningSocket> ListeningSockets(pid_t pid = 0);

// The ports of the sockets in `after` that are not in `before`, one entry per socket.
std::multiset<int> NewListeningPorts(const std::vector<ListeningSocket>& before,
                                     const std::vector<ListeningSocket>& after);

// The ports of `sockets`, one entry per socket.
std::multiset<int> Ports(const std::vector<ListeningSocket>& sockets);

// The answer to `GET <path> HTTP/1.0` on 127.0.0.1:port: the status code (0 when there
// is no answer within 5 s) and the body.
struct HttpAnswer {
  int code = 0;
  std::string body;
};
HttpAnswer HttpGet(int port, const std::string& path);

// The value of the unlabelled metric `name` in the /metrics text served on
// 127.0.0.1:port; nullopt when there is no answer or no such metric.
std::optional<double> ScrapeMetric(int port, const std::string& name);

// A loopback port that was free a moment ago (another process may take it since).
int FreeLoopbackPort();

// A port on 127.0.0.1 held by a listening socket for the object's lifetime: a port
// that a server under test cannot bind.
class HeldLoopbackPort {
 public:
  HeldLoopbackPort();
  ~HeldLoopbackPort();
  HeldLoopbackPort(const HeldLoopbackPort&) = delete;
  HeldLoopbackPort& operator=(const HeldLoopbackPort&) = delete;
  int port() const { return port_; }  // 0 if it could not be taken

 private:
  int fd_ = -1;
  int port_ = 0;
};

}  // namespace blockserve::testing

#endif  // BLOCKSERVE_COMMON_TESTING_SOCKETS_H_
