#include "common/log.h"

#include <chrono>
#include <cstdio>
#include <mutex>

#include <nlohmann/json.hpp>

namespace blockserve {
namespace {

std::string& ServiceName() {
  static std::string* name = new std::string("blockserve");
  return *name;
}

}  // namespace

void SetLogServiceName(std::string name) { ServiceName() = std::move(name); }
const std::string& LogServiceName() { return ServiceName(); }

void LogEvent(std::string_view event, const LogFields& fields) {
  nlohmann::json line;
  line["ts"] = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  line["service"] = ServiceName();
  line["event"] = std::string(event);
  for (const auto& [k, v] : fields) line[k] = v;
  // Replace rather than throw on invalid UTF-8 in a field.
  const std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
}

}  // namespace blockserve
