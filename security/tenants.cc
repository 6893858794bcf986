#include "security/tenants.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "nlohmann/json.hpp"

namespace blockserve::security {
namespace {

absl::Status Bad(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("tenants file: ", what));
}

bool IsSha256Hex(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!absl::ascii_isxdigit(c) || absl::ascii_isupper(c)) return false;
  }
  return true;
}

absl::StatusOr<Tenant> ParseTenant(const nlohmann::json& j, std::vector<std::string>* hashes) {
  if (!j.is_object()) return Bad("each tenant is an object");
  Tenant t;
  if (!j.contains("name") || !j["name"].is_string() || j["name"].get<std::string>().empty()) {
    return Bad("a tenant has no \"name\" string");
  }
  t.name = j["name"].get<std::string>();
  const std::string where = absl::StrCat("tenant \"", t.name, "\": ");
  t.scope.ns = t.name;
  if (j.contains("namespace")) {
    if (!j["namespace"].is_string()) return Bad(where + "\"namespace\" is not a string");
    t.scope.ns = j["namespace"].get<std::string>();
  }
  if (absl::Status s = ValidateNamespace(t.scope.ns); !s.ok()) {
    return Bad(where + std::string(s.message()));
  }
  if (j.contains("read_namespaces")) {
    if (!j["read_namespaces"].is_array()) return Bad(where + "\"read_namespaces\" is not a list");
    for (const nlohmann::json& r : j["read_namespaces"]) {
      if (!r.is_string()) return Bad(where + "a read namespace is not a string");
      if (absl::Status s = ValidateNamespace(r.get<std::string>()); !s.ok()) {
        return Bad(where + std::string(s.message()));
      }
      if (r.get<std::string>() != t.scope.ns) t.scope.reads.push_back(r.get<std::string>());
    }
  }
  if (j.contains("may_ingest")) {
    if (!j["may_ingest"].is_boolean()) return Bad(where + "\"may_ingest\" is not true/false");
    t.may_ingest = j["may_ingest"].get<bool>();
  }
  if (j.contains("max_concurrent_requests")) {
    const nlohmann::json& m = j["max_concurrent_requests"];
    if (!m.is_number_integer() || m.get<int64_t>() < 0 || m.get<int64_t>() > 1'000'000) {
      return Bad(where + "\"max_concurrent_requests\" must be an integer in 0..1000000");
    }
    t.max_concurrent_requests = static_cast<int>(m.get<int64_t>());
  }
  if (!j.contains("token_sha256") || !j["token_sha256"].is_array() ||
      j["token_sha256"].empty()) {
    return Bad(where + "\"token_sha256\" must be a non-empty list of SHA-256 hex digests");
  }
  for (const nlohmann::json& h : j["token_sha256"]) {
    if (!h.is_string() || !IsSha256Hex(h.get<std::string>())) {
      return Bad(where + "a token_sha256 entry is not 64 lowercase hex digits");
    }
    hashes->push_back(h.get<std::string>());
  }
  return t;
}

absl::StatusOr<std::string> ReadWhole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("tenants file ", path, ": cannot be read"));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

std::string Sha256Hex(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(text.data(), text.size(), digest, &size, EVP_sha256(), nullptr);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), size));
}

absl::StatusOr<std::vector<std::pair<std::string, Tenant>>> ParseTenants(std::string_view json) {
  const nlohmann::json doc = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Bad("not JSON");
  if (!doc.is_object() || !doc.contains("tenants") || !doc["tenants"].is_array()) {
    return Bad("expected {\"tenants\": [...]}");
  }
  std::vector<std::pair<std::string, Tenant>> out;
  absl::flat_hash_set<std::string> names, hashes;
  for (const nlohmann::json& j : doc["tenants"]) {
    std::vector<std::string> tenant_hashes;
    absl::StatusOr<Tenant> t = ParseTenant(j, &tenant_hashes);
    if (!t.ok()) return t.status();
    if (!names.insert(t->name).second) return Bad(absl::StrCat("tenant \"", t->name, "\" twice"));
    for (std::string& h : tenant_hashes) {
      if (!hashes.insert(h).second) {
        return Bad(absl::StrCat("a token hash of tenant \"", t->name,
                                "\" belongs to another tenant too"));
      }
      out.emplace_back(std::move(h), *t);
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<TenantDirectory>> TenantDirectory::Open(std::string path) {
  std::unique_ptr<TenantDirectory> dir(new TenantDirectory(std::move(path)));
  absl::MutexLock lock(&dir->mu_);
  if (absl::Status s = dir->Reload(); !s.ok()) return s;
  return dir;
}

absl::Status TenantDirectory::Reload() {
  struct stat st {};
  if (stat(path_.c_str(), &st) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("tenants file ", path_, ": cannot be read"));
  }
  absl::StatusOr<std::string> text = ReadWhole(path_);
  if (!text.ok()) return text.status();
  absl::StatusOr<std::vector<std::pair<std::string, Tenant>>> tenants = ParseTenants(*text);
  if (!tenants.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": ", tenants.status().message()));
  }
  by_hash_.clear();
  for (auto& [hash, tenant] : *tenants) by_hash_.emplace(std::move(hash), std::move(tenant));
  mtime_ = st.st_mtim;
  return absl::OkStatus();
}

absl::StatusOr<Tenant> TenantDirectory::Authenticate(std::string_view authorization) {
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.empty()) {
    return absl::UnauthenticatedError(
        "no credentials: send metadata \"authorization: Bearer <token>\"");
  }
  if (authorization.size() <= kBearer.size() ||
      !absl::EqualsIgnoreCase(absl::string_view(authorization.data(), kBearer.size()),
                              absl::string_view(kBearer.data(), kBearer.size()))) {
    return absl::UnauthenticatedError("the authorization metadata is not \"Bearer <token>\"");
  }
  const std::string hash = Sha256Hex(authorization.substr(kBearer.size()));
  absl::MutexLock lock(&mu_);
  if (absl::Now() - checked_ >= absl::Seconds(1)) {
    checked_ = absl::Now();
    struct stat st {};
    if (stat(path_.c_str(), &st) == 0 && (st.st_mtim.tv_sec != mtime_.tv_sec ||
                                          st.st_mtim.tv_nsec != mtime_.tv_nsec)) {
      if (absl::Status s = Reload(); !s.ok()) {
        LogEvent("tenants_reload_failed", {{"error", std::string(s.message())}});
        mtime_ = st.st_mtim;  // once per change, not per call
      } else {
        LogEvent("tenants_reloaded", {{"tenants_tokens", absl::StrCat(by_hash_.size())}});
      }
    }
  }
  auto it = by_hash_.find(hash);
  if (it == by_hash_.end()) return absl::UnauthenticatedError("unknown token");
  return it->second;
}

ConcurrencyLimiter::Slot::~Slot() {
  if (limiter_ == nullptr) return;
  absl::MutexLock lock(&limiter_->mu_);
  if (--limiter_->in_flight_[name_] == 0) limiter_->in_flight_.erase(name_);
}

absl::StatusOr<ConcurrencyLimiter::Slot> ConcurrencyLimiter::Acquire(const Tenant& tenant) {
  absl::MutexLock lock(&mu_);
  int& n = in_flight_[tenant.name];
  if (tenant.max_concurrent_requests > 0 && n >= tenant.max_concurrent_requests) {
    if (n == 0) in_flight_.erase(tenant.name);
    return absl::ResourceExhaustedError(
        absl::StrCat("tenant \"", tenant.name, "\" has ", tenant.max_concurrent_requests,
                     " requests in flight, its limit; retry later"));
  }
  ++n;
  return Slot(this, tenant.name);
}

}  // namespace blockserve::security
