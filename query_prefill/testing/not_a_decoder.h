// Decoder addresses that are no decoder, for tests of what the prefill answers when a
// handoff cannot happen: a loopback port where nothing listens, and an HTTP server.
#ifndef BLOCKSERVE_QUERY_PREFILL_TESTING_NOT_A_DECODER_H_
#define BLOCKSERVE_QUERY_PREFILL_TESTING_NOT_A_DECODER_H_

#include <atomic>
#include <string>
#include <thread>

namespace blockserve::query_prefill {

// "127.0.0.1:PORT" of a port that was free a moment ago (nothing listens on it).
std::string ClosedLoopbackAddress();

// Listens on 127.0.0.1 (a free port) and answers every connection with an HTTP/1.1 error,
// then closes it.
class HttpServer {
 public:
  HttpServer();
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  const std::string& address() const { return address_; }
  // Connections accepted so far.
  int connections() const { return connections_; }

 private:
  void Serve();

  int fd_ = -1;
  std::string address_;
  std::atomic<int> connections_ = 0;
  std::thread thread_;
};

}  // namespace blockserve::query_prefill

#endif  // BLOCKSERVE_QUERY_PREFILL_TESTING_NOT_A_DECODER_H_
