#include "security/tls_flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate (chain) of this instance, presented as server and as client; its "
          "URI SAN spiffe://<trust_domain>/<role> is its identity");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_ca, "", "PEM CA bundle that peers' certificates must chain to");
ABSL_FLAG(int, tls_refresh_s, 60,
          "how often the three TLS files are re-read (a rotated certificate takes effect "
          "without a restart)");
ABSL_FLAG(std::string, trust_domain, "blockserve",
          "trust domain of the role URI SANs (spiffe://<trust_domain>/router, ...)");
ABSL_FLAG(bool, insecure, false,
          "plaintext gRPC without certificates or identities; only on a loopback --host "
          "(tests, a laptop); the default is TLS");

namespace blockserve::security {

absl::StatusOr<TransportSecurity> TransportSecurityFromFlags() {
  TransportSecurity security;
  security.insecure = absl::GetFlag(FLAGS_insecure);
  security.files = {absl::GetFlag(FLAGS_tls_cert), absl::GetFlag(FLAGS_tls_key),
                    absl::GetFlag(FLAGS_tls_ca)};
  security.trust_domain = absl::GetFlag(FLAGS_trust_domain);
  const int refresh_s = absl::GetFlag(FLAGS_tls_refresh_s);
  if (refresh_s < 1) {
    return absl::InvalidArgumentError("--tls_refresh_s must be at least 1");
  }
  security.refresh = absl::Seconds(refresh_s);
  if (security.insecure) {
    if (!security.files.cert.empty() || !security.files.key.empty() ||
        !security.files.ca.empty()) {
      return absl::InvalidArgumentError(
          "--insecure and --tls_cert/--tls_key/--tls_ca contradict each other; give one");
    }
    return security;
  }
  if (security.files.cert.empty() && security.files.key.empty() && security.files.ca.empty()) {
    return absl::InvalidArgumentError(
        "TLS is required: give --tls_cert, --tls_key and --tls_ca (or --insecure for "
        "plaintext on loopback)");
  }
  if (absl::Status s = CheckTransportSecurity(security); !s.ok()) return s;
  return security;
}

}  // namespace blockserve::security
