// Structured logs: one JSON object per line on stderr, {"ts": ..., "service": ...,
// "event": ..., fields...}, so that log collectors can parse every line.
#ifndef BLOCKSERVE_COMMON_LOG_H_
#define BLOCKSERVE_COMMON_LOG_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace blockserve {

// Names the process in every line (set once at start-up, before any thread logs).
void SetLogServiceName(std::string name);
const std::string& LogServiceName();

using LogFields = std::vector<std::pair<std::string, std::string>>;
void LogEvent(std::string_view event, const LogFields& fields = {});

}  // namespace blockserve

#endif  // BLOCKSERVE_COMMON_LOG_H_
