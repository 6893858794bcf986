// The transport-security flags every BlockServe server (and the tools that call
// services) share, defined once:
//   --tls_cert, --tls_key, --tls_ca   PEM files: this instance's certificate and key,
//                                     the cluster CA; re-read every --tls_refresh_s
//   --trust_domain                    the SPIFFE trust domain of the role URI SANs
//   --insecure                        plaintext on loopback only (tests, local runs)
// TLS is the default: a server started with neither the files nor --insecure refuses to
// start and says so.
#ifndef BLOCKSERVE_SECURITY_TLS_FLAGS_H_
#define BLOCKSERVE_SECURITY_TLS_FLAGS_H_

#include "absl/status/statusor.h"
#include "security/tls.h"

namespace blockserve::security {

// The flags as a checked TransportSecurity (CheckTransportSecurity); InvalidArgument
// naming the flag at fault.
absl::StatusOr<TransportSecurity> TransportSecurityFromFlags();

}  // namespace blockserve::security

#endif  // BLOCKSERVE_SECURITY_TLS_FLAGS_H_
