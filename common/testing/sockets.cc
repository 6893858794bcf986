#include "common/testing/sockets.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace blockserve::testing {

std::vector<ListeningSocket> ListeningSockets(pid_t pid) {
  const std::string proc = pid == 0 ? std::string("/proc/self") : absl::StrCat("/proc/", pid);
  std::set<std::string> own;
  if (DIR* dir = opendir((proc + "/fd").c_str()); dir != nullptr) {
    while (dirent* entry = readdir(dir)) {
      char target[256] = {};
      const std::string link = absl::StrCat(proc, "/fd/", entry->d_name);
      if (readlink(link.c_str(), target, sizeof(target) - 1) <= 0) continue;
      const absl::string_view t(target);
      if (absl::StartsWith(t, "socket:[")) own.insert(std::string(t.substr(8, t.size() - 9)));
    }
    closedir(dir);
  }
  std::vector<ListeningSocket> sockets;
  for (const char* table : {"/net/tcp", "/net/tcp6"}) {
    std::ifstream in(proc + table);
    std::string line;
    std::getline(in, line);  // the column names
    while (std::getline(in, line)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
      const std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (f.size() < 10 || f[3] != "0A" || own.count(f[9]) == 0) continue;  // 0A: LISTEN
      const std::vector<std::string> local = absl::StrSplit(f[1], ':');
      if (local.size() != 2) continue;
      sockets.push_back({local[0], static_cast<int>(std::stoul(local[1], nullptr, 16))});
    }
  }
  return sockets;
}

std::multiset<int> NewListeningPorts(const std::vector<ListeningSocket>& before,
                                     const std::vector<ListeningSocket>& after) {
  std::multiset<int> fresh;
  for (const ListeningSocket& a : after) {
    bool old = false;
    for (const ListeningSocket& b : before) {
      old = old || (a.local_hex == b.local_hex && a.port == b.port);
    }
    if (!old) fresh.insert(a.port);
  }
  return fresh;
}

std::multiset<int> Ports(const std::vector<ListeningSocket>& sockets) {
  return NewListeningPorts({}, sockets);
}

HttpAnswer HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const timeval five_seconds{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &five_seconds, sizeof(five_seconds));
  std::string answer;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\n\r\n");
    (void)!send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    char buf[4096];
    ssize_t got;
    while ((got = recv(fd, buf, sizeof(buf), 0)) > 0) answer.append(buf, got);
  }
  close(fd);
  HttpAnswer out;
  if (answer.size() >= 12) out.code = std::atoi(answer.substr(9, 3).c_str());
  if (const size_t body = answer.find("\r\n\r\n"); body != std::string::npos) {
    out.body = answer.substr(body + 4);
  }
  return out;
}

std::optional<double> ScrapeMetric(int port, const std::string& name) {
  const HttpAnswer answer = HttpGet(port, "/metrics");
  if (answer.code != 200) return std::nullopt;
  for (absl::string_view line : absl::StrSplit(answer.body, '\n')) {
    std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
    double value = 0;
    if (parts.size() == 2 && parts[0] == name && absl::SimpleAtod(parts[1], &value)) {
      return value;
    }
  }
  return std::nullopt;
}

int FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

HeldLoopbackPort::HeldLoopbackPort() {
  fd_ = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 && listen(fd_, 1) == 0 &&
      getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port_ = ntohs(addr.sin_port);
  }
}

HeldLoopbackPort::~HeldLoopbackPort() { close(fd_); }

}  // namespace blockserve::testing
