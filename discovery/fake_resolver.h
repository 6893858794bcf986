// A Resolver for tests: answers what the test says, per name, and counts the questions,
// so a test can make pods appear and go, or DNS fail, while something is serving.
#ifndef BLOCKSERVE_DISCOVERY_FAKE_RESOLVER_H_
#define BLOCKSERVE_DISCOVERY_FAKE_RESOLVER_H_

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "discovery/discovery.h"

namespace blockserve::discovery::testing {

class FakeResolver final : public Resolver {
 public:
  // `answer`: the IPs of `host` (the port is added as the spec says), or an error.
  void Set(const std::string& host, absl::StatusOr<std::vector<std::string>> answer) {
    absl::MutexLock lock(&mu_);
    answers_.insert_or_assign(host, std::move(answer));
  }
  int calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  absl::StatusOr<std::vector<std::string>> Resolve(const std::string& host, int port) override {
    absl::MutexLock lock(&mu_);
    ++calls_;
    auto it = answers_.find(host);
    if (it == answers_.end()) return absl::NotFoundError(absl::StrCat("no ", host));
    if (!it->second.ok()) return it->second.status();
    std::vector<std::string> out;
    for (const std::string& ip : *it->second) out.push_back(JoinHostPort(ip, port));
    return out;
  }

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, absl::StatusOr<std::vector<std::string>>> answers_;
  int calls_ = 0;
};

}  // namespace blockserve::discovery::testing

#endif  // BLOCKSERVE_DISCOVERY_FAKE_RESOLVER_H_
