#include "query_prefill/testing/not_a_decoder.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <string_view>

#include "absl/strings/str_cat.h"

namespace blockserve::query_prefill {
namespace {

// A socket bound to a free loopback port, and that address.
int BindLoopback(std::string* address) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), len);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  *address = absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));
  return fd;
}

}  // namespace

std::string ClosedLoopbackAddress() {
  std::string address;
  close(BindLoopback(&address));
  return address;
}

HttpServer::HttpServer() {
  fd_ = BindLoopback(&address_);
  listen(fd_, 16);
  thread_ = std::thread([this] { Serve(); });
}

HttpServer::~HttpServer() {
  shutdown(fd_, SHUT_RDWR);  // ends the accept() in Serve
  thread_.join();
  close(fd_);
}

void HttpServer::Serve() {
  constexpr std::string_view kReply =
      "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
  while (true) {
    const int conn = accept(fd_, nullptr, nullptr);
    if (conn < 0) return;
    ++connections_;
    const timeval wait{.tv_sec = 1, .tv_usec = 0};  // a silent client does not hold us
    setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof(wait));
    char request[1024];
    if (read(conn, request, sizeof(request)) > 0) {
      [[maybe_unused]] const ssize_t sent = write(conn, kReply.data(), kReply.size());
    }
    close(conn);
  }
}

}  // namespace blockserve::query_prefill
