// What RedisServer and RedisCluster share; not for other users.
#ifndef BLOCKSERVE_KV_STORE_REDIS_TESTING_REDIS_SERVER_INTERNAL_H_
#define BLOCKSERVE_KV_STORE_REDIS_TESTING_REDIS_SERVER_INTERNAL_H_

#include <string>

#include "absl/status/statusor.h"

namespace blockserve::kv_store::testing::internal {

// `requested` when given; else $<env_name>; else `name` on $PATH, then in /usr/bin,
// /usr/local/bin, /usr/sbin. NotFound saying what to install otherwise.
absl::StatusOr<std::string> FindBinary(const std::string& requested, const std::string& name,
                                       const char* env_name);

// Asks the kernel for a free loopback port. Another process may take it before it is
// bound: callers retry with a new one.
absl::StatusOr<int> PickFreePort();

// A new directory under $TEST_TMPDIR (else /tmp).
absl::StatusOr<std::string> MakeTempDir();

}  // namespace blockserve::kv_store::testing::internal

#endif  // BLOCKSERVE_KV_STORE_REDIS_TESTING_REDIS_SERVER_INTERNAL_H_
