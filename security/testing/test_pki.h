// A throwaway PKI for tests: a CA and certificates it signs, written as PEM files, with
// the knobs the attacks need (another CA, an expired certificate, any role).
#ifndef BLOCKSERVE_SECURITY_TESTING_TEST_PKI_H_
#define BLOCKSERVE_SECURITY_TESTING_TEST_PKI_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "security/tls.h"

namespace blockserve::security::testing {

struct CertSpec {
  // URI SANs, e.g. "spiffe://blockserve/router"; empty: none.
  std::vector<std::string> uris;
  std::vector<std::string> dns = {"localhost"};
  std::vector<std::string> ips = {"127.0.0.1"};
  // Validity relative to now; a negative `not_after` makes an expired certificate.
  absl::Duration not_before = -absl::Hours(1);
  absl::Duration not_after = absl::Hours(24);
};

class TestPki {
 public:
  ~TestPki();
  TestPki(TestPki&&) noexcept;

  // A new CA (EC P-256, self-signed) named `name`, its files in `dir` (which must exist).
  static absl::StatusOr<TestPki> Create(std::string dir, std::string name = "blockserve-test-ca");

  // The CA certificate's PEM file.
  const std::string& ca_file() const { return ca_file_; }

  // Issues a certificate for `spec`, signed by this CA, written as <dir>/<name>.pem and
  // <name>.key; returns {cert, key, ca}.
  absl::StatusOr<TlsFiles> Issue(const std::string& name, const CertSpec& spec) const;

  // A certificate of `role` (URI SAN spiffe://blockserve/<role>, localhost, 127.0.0.1).
  absl::StatusOr<TlsFiles> IssueRole(Role role) const;

 private:
  struct Ca;
  TestPki(std::string dir, std::string ca_file, std::unique_ptr<Ca> ca);

  std::string dir_;
  std::string ca_file_;
  std::unique_ptr<Ca> ca_;
};

// A TransportSecurity for a service of `role` with a certificate from `pki`.
absl::StatusOr<TransportSecurity> RoleSecurity(const TestPki& pki, Role role);

}  // namespace blockserve::security::testing

#endif  // BLOCKSERVE_SECURITY_TESTING_TEST_PKI_H_
