#include "security/tenant_scope.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace blockserve::security {
namespace {

std::string_view Value(const grpc::ServerContext& context, const char* key) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(key);
  if (it == metadata.end()) return {};
  return std::string_view(it->second.data(), it->second.size());
}

}  // namespace

absl::Status ValidateNamespace(std::string_view ns) {
  if (ns.empty() || ns.size() > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("namespace \"", std::string(ns), "\": must be 1..64 bytes"));
  }
  for (size_t i = 0; i < ns.size(); ++i) {
    const char c = ns[i];
    const bool alnum = absl::ascii_islower(c) || absl::ascii_isdigit(c);
    if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-'))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "namespace \"", std::string(ns), "\": use [a-z0-9._-], starting with [a-z0-9]"));
    }
  }
  return absl::OkStatus();
}

void AttachScope(const TenantScope& scope, grpc::ClientContext& context) {
  if (!scope.ns.empty()) context.AddMetadata(kNamespaceMetadata, scope.ns);
  if (!scope.reads.empty()) {
    context.AddMetadata(kReadNamespacesMetadata, absl::StrJoin(scope.reads, ","));
  }
}

absl::StatusOr<TenantScope> ScopeOf(const grpc::ServerContext& context) {
  TenantScope scope;
  scope.ns = std::string(Value(context, kNamespaceMetadata));
  if (!scope.ns.empty()) {
    if (absl::Status s = ValidateNamespace(scope.ns); !s.ok()) return s;
  }
  const std::string_view reads = Value(context, kReadNamespacesMetadata);
  if (!reads.empty()) {
    for (absl::string_view r : absl::StrSplit(absl::string_view(reads.data(), reads.size()), ',')) {
      if (absl::Status s = ValidateNamespace(std::string_view(r.data(), r.size())); !s.ok()) {
        return s;
      }
      scope.reads.emplace_back(r);
    }
  }
  return scope;
}

}  // namespace blockserve::security
