// Transport security of BlockServe's gRPC traffic: mutual TLS between services, with
// each service's identity in its certificate and what may call what checked per method.
//
// Identities. Every service instance holds one certificate, signed by the cluster CA,
// that it presents both as a server and as a client. Its role is a URI SAN
// "spiffe://<trust domain>/<role>" (role: router, prefill, decoder, encoder); host names
// (DNS / IP SANs) are not what is checked between services, the role is (as service
// meshes check SPIFFE ids), so a pod's certificate need not name every address it is
// reached at.
//
// Who may call what (AllowedCallers), checked per call before the service sees it:
//   router   Router.*: any client over TLS (no client certificate; the router checks
//            a bearer token per call, security/tenants.h), health: anyone.
//   prefill  QueryPrefill.Prefill: routers only.
//   encoder  PassageEncoder.*: routers only.
//   decoder  AcceptSequence, PrepareNccl: prefills only; Stream, Cancel: routers only.
//   every internal service: health from any peer with a certificate of the cluster CA.
// A caller without a certificate of the CA fails the TLS handshake (UNAVAILABLE at the
// client); one with the wrong role gets PERMISSION_DENIED. A client checks the server's
// role the same way: a prefill hands KV only to a peer whose certificate says
// "decoder".
//
// Certificates are re-read from their files every `refresh` (gRPC's file-watcher
// provider), so a rotation by cert-manager takes effect without a restart.
//
// Insecure mode (plaintext, no identities) exists for tests and local runs on one
// machine; servers refuse it on anything but a loopback address (CheckListenHost).
#ifndef BLOCKSERVE_SECURITY_TLS_H_
#define BLOCKSERVE_SECURITY_TLS_H_

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace blockserve::security {

enum class Role { kRouter, kPrefill, kDecoder, kEncoder };

// "router", "prefill", "decoder", "encoder".
std::string_view RoleName(Role role);

// PEM files: this instance's certificate (chain) and private key, and the CA bundle
// that peers' certificates must chain to.
struct TlsFiles {
  std::string cert;
  std::string key;
  std::string ca;
};

struct TransportSecurity {
  bool insecure = false;  // plaintext; loopback only
  TlsFiles files;
  absl::Duration refresh = absl::Seconds(60);
  std::string trust_domain = "blockserve";

  // "spiffe://<trust_domain>/<role>": the URI SAN a certificate of `role` carries.
  std::string Principal(Role role) const;
};

// Checks a configuration before anything listens or dials: with TLS, all three files
// exist and parse (the certificate and key as PEM, the key matching the certificate, the
// CA bundle holding at least one certificate) and the certificate is within its validity
// period; InvalidArgument saying which file and what is wrong otherwise. Insecure: OK.
absl::Status CheckTransportSecurity(const TransportSecurity& security);

// A server may listen on `host` under `security`: any host with TLS; with insecure only
// a loopback address ("127.0.0.1", "::1", "localhost"), InvalidArgument otherwise.
absl::Status CheckListenHost(const TransportSecurity& security, std::string_view host);

// What a server of `role` listens with.
struct ServerSecurity {
  std::shared_ptr<grpc::ServerCredentials> credentials;
};

// Credentials of a server of `role`: insecure in insecure mode; TLS otherwise, requiring
// a client certificate of the CA for every role but the router, with AllowedCallers(role)
// checked on every call (an unlisted method or principal: PERMISSION_DENIED). (gRPC's
// own authorization-policy engine is not in Debian's gRPC build; this is the same check
// through gRPC's AuthMetadataProcessor hook.)
absl::StatusOr<ServerSecurity> ServerSecurityFor(const TransportSecurity& security, Role role);

// Who may call a server of `role`: method path ("/pkg.Service/Method", or
// "/pkg.Service/*" for all its methods) -> the principals allowed (empty: any peer with
// a certificate of the CA). Empty for the router, whose clients have no certificates.
using CallerTable = std::map<std::string, std::vector<std::string>>;
CallerTable AllowedCallers(const TransportSecurity& security, Role role);

// Credentials of a channel from a service to a server of role `peer`: this instance's
// certificate as the client certificate, the server's chain checked against the CA and
// its certificate required to carry Principal(peer). Insecure credentials in insecure
// mode.
std::shared_ptr<grpc::ChannelCredentials> ChannelCredentialsTo(const TransportSecurity& security,
                                                               Role peer);

// Credentials of a client of the router (the CLI, tools): TLS checking the router's
// certificate against `ca_file` and the host name the client dials; no client
// certificate. Insecure credentials when `ca_file` is empty.
std::shared_ptr<grpc::ChannelCredentials> RouterClientCredentials(const std::string& ca_file,
                                                                  absl::Duration refresh);

}  // namespace blockserve::security

#endif  // BLOCKSERVE_SECURITY_TLS_H_
