#include "security/testing/test_pki.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace blockserve::security::testing {
namespace {

struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using Cert = std::unique_ptr<X509, X509Deleter>;

absl::Status OpenSslError(absl::string_view what) {
  return absl::InternalError(absl::StrCat("test PKI: ", what, " failed"));
}

Pkey NewKey() { return Pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")); }

absl::Status AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return OpenSslError(absl::StrCat("extension ", value));
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return absl::OkStatus();
}

// A certificate of `key`'s public half named `cn`, valid over [now+not_before,
// now+not_after], not yet signed.
absl::StatusOr<Cert> NewCert(EVP_PKEY* key, const std::string& cn, absl::Duration not_before,
                             absl::Duration not_after) {
  Cert cert(X509_new());
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof(serial));
  serial[0] &= 0x7f;  // positive
  BIGNUM* bn = BN_bin2bn(serial, sizeof(serial), nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), absl::ToInt64Seconds(not_before));
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), absl::ToInt64Seconds(not_after));
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  return cert;
}

absl::Status WritePem(const std::string& path, X509* cert, EVP_PKEY* key) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return absl::InternalError(absl::StrCat("test PKI: cannot write ", path));
  const int ok = cert != nullptr ? PEM_write_X509(f, cert)
                                 : PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr,
                                                        nullptr);
  std::fclose(f);
  return ok == 1 ? absl::OkStatus() : OpenSslError(absl::StrCat("writing ", path));
}

}  // namespace

struct TestPki::Ca {
  Pkey key;
  Cert cert;
};

TestPki::TestPki(std::string dir, std::string ca_file, std::unique_ptr<Ca> ca)
    : dir_(std::move(dir)), ca_file_(std::move(ca_file)), ca_(std::move(ca)) {}
TestPki::~TestPki() = default;
TestPki::TestPki(TestPki&&) noexcept = default;

absl::StatusOr<TestPki> TestPki::Create(std::string dir, std::string name) {
  auto ca = std::make_unique<Ca>();
  ca->key = NewKey();
  if (ca->key == nullptr) return OpenSslError("CA key generation");
  absl::StatusOr<Cert> cert = NewCert(ca->key.get(), name, -absl::Hours(1), absl::Hours(48));
  if (!cert.ok()) return cert.status();
  ca->cert = *std::move(cert);
  X509* c = ca->cert.get();
  X509_set_issuer_name(c, X509_get_subject_name(c));
  if (absl::Status s = AddExtension(c, c, NID_basic_constraints, "critical,CA:TRUE"); !s.ok()) {
    return s;
  }
  if (absl::Status s = AddExtension(c, c, NID_key_usage, "critical,keyCertSign,cRLSign");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = AddExtension(c, c, NID_subject_key_identifier, "hash"); !s.ok()) return s;
  if (X509_sign(c, ca->key.get(), EVP_sha256()) == 0) return OpenSslError("CA signing");
  std::string ca_file = absl::StrCat(dir, "/", name, ".pem");
  if (absl::Status s = WritePem(ca_file, c, nullptr); !s.ok()) return s;
  return TestPki(std::move(dir), std::move(ca_file), std::move(ca));
}

absl::StatusOr<TlsFiles> TestPki::Issue(const std::string& name, const CertSpec& spec) const {
  Pkey key = NewKey();
  if (key == nullptr) return OpenSslError("key generation");
  absl::StatusOr<Cert> cert = NewCert(key.get(), name, spec.not_before, spec.not_after);
  if (!cert.ok()) return cert.status();
  X509* c = cert->get();
  X509_set_issuer_name(c, X509_get_subject_name(ca_->cert.get()));
  std::vector<std::string> sans;
  for (const std::string& u : spec.uris) sans.push_back(absl::StrCat("URI:", u));
  for (const std::string& d : spec.dns) sans.push_back(absl::StrCat("DNS:", d));
  for (const std::string& i : spec.ips) sans.push_back(absl::StrCat("IP:", i));
  if (!sans.empty()) {
    if (absl::Status s = AddExtension(c, ca_->cert.get(), NID_subject_alt_name,
                                      absl::StrJoin(sans, ","));
        !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = AddExtension(c, ca_->cert.get(), NID_basic_constraints, "CA:FALSE");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = AddExtension(c, ca_->cert.get(), NID_ext_key_usage,
                                    "serverAuth,clientAuth");
      !s.ok()) {
    return s;
  }
  if (X509_sign(c, ca_->key.get(), EVP_sha256()) == 0) return OpenSslError("signing");
  TlsFiles files{absl::StrCat(dir_, "/", name, ".pem"), absl::StrCat(dir_, "/", name, ".key"),
                 ca_file_};
  if (absl::Status s = WritePem(files.cert, c, nullptr); !s.ok()) return s;
  if (absl::Status s = WritePem(files.key, nullptr, key.get()); !s.ok()) return s;
  return files;
}

absl::StatusOr<TlsFiles> TestPki::IssueRole(Role role) const {
  CertSpec spec;
  TransportSecurity names;
  spec.uris = {names.Principal(role)};
  return Issue(std::string(RoleName(role)), spec);
}

absl::StatusOr<TransportSecurity> RoleSecurity(const TestPki& pki, Role role) {
  absl::StatusOr<TlsFiles> files = pki.IssueRole(role);
  if (!files.ok()) return files.status();
  TransportSecurity security;
  security.files = *std::move(files);
  return security;
}

}  // namespace blockserve::security::testing
