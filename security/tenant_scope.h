// TenantScope: which part of the shared KV cache a request may see, set by the router
// from the caller's authenticated tenant and never by the caller.
//
// A namespace separates block keys, passage ids and sources: a block encoded for one
// namespace has another key than the same tokens in another, so a tenant can neither
// name, hit, overwrite nor probe (by answer or by time to first token) what another
// stored. A request writes only to its own namespace; passage ids are looked up there
// first, then in each read namespace in order (an opt-in shared corpus, "public").
// The empty namespace is the single-tenant cache of an insecure local run.
//
// Between services the scope travels as call metadata that only routers may send: the
// internal RPCs accept calls from routers' certificates only (security/tls.h).
#ifndef BLOCKSERVE_SECURITY_TENANT_SCOPE_H_
#define BLOCKSERVE_SECURITY_TENANT_SCOPE_H_

#include <string>
#include <string_view>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"

namespace blockserve::security {

struct TenantScope {
  std::string ns;                 // written and read; "" = the single-tenant namespace
  std::vector<std::string> reads; // read after `ns`, in order

  bool operator==(const TenantScope& o) const { return ns == o.ns && reads == o.reads; }
};

// A namespace name: 1..64 bytes of [a-z0-9._-], starting with a letter or digit.
absl::Status ValidateNamespace(std::string_view ns);

inline constexpr char kNamespaceMetadata[] = "blockserve-namespace";
inline constexpr char kReadNamespacesMetadata[] = "blockserve-read-namespaces";

// Puts `scope` on an internal call.
void AttachScope(const TenantScope& scope, grpc::ClientContext& context);

// The scope an internal call carries: the empty scope when it carries none;
// InvalidArgument when a name is not a namespace.
absl::StatusOr<TenantScope> ScopeOf(const grpc::ServerContext& context);

}  // namespace blockserve::security

#endif  // BLOCKSERVE_SECURITY_TENANT_SCOPE_H_
