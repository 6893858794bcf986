#include "security/tls.h"

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "proto/blockserve.grpc.pb.h"

namespace blockserve::security {
namespace {

using grpc::experimental::FileWatcherCertificateProvider;

absl::StatusOr<std::string> ReadFile(const std::string& path, absl::string_view what) {
  if (path.empty()) return absl::InvalidArgumentError(absl::StrCat(what, ": no file given"));
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(what, " ", path, ": cannot be read"));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Bio = std::unique_ptr<BIO, BioDeleter>;

Bio MemoryBio(const std::string& text) {
  return Bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// Every certificate in a PEM text, in order.
std::vector<std::unique_ptr<X509, X509Deleter>> Certificates(const std::string& pem) {
  std::vector<std::unique_ptr<X509, X509Deleter>> out;
  Bio bio = MemoryBio(pem);
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) out.emplace_back(x);
  return out;
}

absl::Status CheckTlsFiles(const TlsFiles& files) {
  absl::StatusOr<std::string> cert_pem = ReadFile(files.cert, "--tls_cert");
  if (!cert_pem.ok()) return cert_pem.status();
  absl::StatusOr<std::string> key_pem = ReadFile(files.key, "--tls_key");
  if (!key_pem.ok()) return key_pem.status();
  absl::StatusOr<std::string> ca_pem = ReadFile(files.ca, "--tls_ca");
  if (!ca_pem.ok()) return ca_pem.status();

  std::vector<std::unique_ptr<X509, X509Deleter>> chain = Certificates(*cert_pem);
  if (chain.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls_cert ", files.cert, ": no PEM certificate in it"));
  }
  Bio key_bio = MemoryBio(*key_pem);
  std::unique_ptr<EVP_PKEY, PkeyDeleter> key(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls_key ", files.key, ": no PEM private key in it"));
  }
  if (X509_check_private_key(chain.front().get(), key.get()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("--tls_key ", files.key,
                                                   " is not the key of --tls_cert ", files.cert));
  }
  if (X509_cmp_current_time(X509_get0_notBefore(chain.front().get())) > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls_cert ", files.cert, ": not valid yet (notBefore is in the future)"));
  }
  if (X509_cmp_current_time(X509_get0_notAfter(chain.front().get())) < 0) {
    return absl::InvalidArgumentError(absl::StrCat("--tls_cert ", files.cert, ": expired"));
  }
  if (Certificates(*ca_pem).empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls_ca ", files.ca, ": no PEM certificate in it"));
  }
  return absl::OkStatus();
}

std::shared_ptr<FileWatcherCertificateProvider> Provider(const TransportSecurity& security) {
  return std::make_shared<FileWatcherCertificateProvider>(
      security.files.key, security.files.cert, security.files.ca,
      static_cast<unsigned>(std::max<int64_t>(1, absl::ToInt64Seconds(security.refresh))));
}

// Accepts a server whose certificate (already chained to the CA by TLS) carries the
// expected role's URI SAN.
class RoleVerifier final : public grpc::experimental::ExternalCertificateVerifier {
 public:
  RoleVerifier(std::string principal, std::string role)
      : principal_(std::move(principal)), role_(std::move(role)) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)>, grpc::Status* sync_status) override {
    for (const grpc::string_ref& uri : request->uri_names()) {
      if (std::string_view(uri.data(), uri.size()) == principal_) {
        *sync_status = grpc::Status::OK;
        return true;
      }
    }
    *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                absl::StrCat("the peer's certificate is not a ", role_,
                                             "'s (no URI SAN ", principal_, ")"));
    return true;
  }
  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  const std::string principal_;
  const std::string role_;
};

std::string Path(const std::string& service, absl::string_view method) {
  return absl::StrCat("/", service, "/", method);
}

// Checks each call against the role's table before the service sees it: the method
// must be in the table (deny by default) and the caller's certificate must carry one of
// the principals it lists (none listed: any certificate of the CA, which TLS checked).
class RolePolicy final : public grpc::AuthMetadataProcessor {
 public:
  explicit RolePolicy(CallerTable table) : table_(std::move(table)) {}

  bool IsBlocking() const override { return false; }  // a table lookup

  grpc::Status Process(const InputMetadata& metadata, grpc::AuthContext* context,
                       OutputMetadata*, OutputMetadata*) override {
    auto path_it = metadata.find(":path");
    if (path_it == metadata.end()) {
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "no method path");
    }
    const std::string path(path_it->second.data(), path_it->second.size());
    const std::vector<std::string>* allowed = Lookup(path);
    if (allowed == nullptr) {
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                          absl::StrCat(path, " is not served to peers"));
    }
    if (allowed->empty()) return grpc::Status::OK;
    for (const char* property : {GRPC_PEER_URI_PROPERTY_NAME, GRPC_PEER_SPIFFE_ID_PROPERTY_NAME}) {
      for (const grpc::string_ref& uri : context->FindPropertyValues(property)) {
        for (const std::string& principal : *allowed) {
          if (std::string_view(uri.data(), uri.size()) == principal) return grpc::Status::OK;
        }
      }
    }
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        absl::StrCat(path, " may be called by ", absl::StrJoin(*allowed, ", "),
                                     " only"));
  }

 private:
  // The entry of `path`, or of its service ("/pkg.Service/*").
  const std::vector<std::string>* Lookup(const std::string& path) const {
    if (auto it = table_.find(path); it != table_.end()) return &it->second;
    const size_t slash = path.rfind('/');
    if (slash == std::string::npos) return nullptr;
    if (auto it = table_.find(path.substr(0, slash + 1) + "*"); it != table_.end()) {
      return &it->second;
    }
    return nullptr;
  }

  const CallerTable table_;
};

}  // namespace

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kRouter:
      return "router";
    case Role::kPrefill:
      return "prefill";
    case Role::kDecoder:
      return "decoder";
    case Role::kEncoder:
      return "encoder";
  }
  return "unknown";
}

std::string TransportSecurity::Principal(Role role) const {
  return absl::StrCat("spiffe://", trust_domain, "/", std::string(RoleName(role)));
}

absl::Status CheckTransportSecurity(const TransportSecurity& security) {
  if (security.insecure) return absl::OkStatus();
  if (security.trust_domain.empty()) {
    return absl::InvalidArgumentError("--trust_domain is empty");
  }
  return CheckTlsFiles(security.files);
}

absl::Status CheckListenHost(const TransportSecurity& security, std::string_view host) {
  if (!security.insecure) return absl::OkStatus();
  if (host == "127.0.0.1" || host == "::1" || host == "[::1]" || host == "localhost") {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--insecure serves plaintext without authentication, so it listens on loopback only; "
      "--host=",
      std::string(host), " is not loopback (use 127.0.0.1, or TLS: --tls_cert/--tls_key/--tls_ca)"));
}

CallerTable AllowedCallers(const TransportSecurity& security, Role role) {
  const std::string router = security.Principal(Role::kRouter);
  CallerTable table;
  table["/grpc.health.v1.Health/*"] = {};
  switch (role) {
    case Role::kRouter:
      return {};
    case Role::kPrefill:
      table[Path(v1::QueryPrefill::service_full_name(), "Prefill")] = {router};
      break;
    case Role::kEncoder:
      table[Path(v1::PassageEncoder::service_full_name(), "*")] = {router};
      break;
    case Role::kDecoder: {
      const std::string decoder = v1::Decoder::service_full_name();
      const std::string prefill = security.Principal(Role::kPrefill);
      table[Path(decoder, "AcceptSequence")] = {prefill};
      table[Path(decoder, "PrepareNccl")] = {prefill};
      table[Path(decoder, "Stream")] = {router};
      table[Path(decoder, "Cancel")] = {router};
      break;
    }
  }
  return table;
}

absl::StatusOr<ServerSecurity> ServerSecurityFor(const TransportSecurity& security, Role role) {
  ServerSecurity out;
  if (security.insecure) {
    out.credentials = grpc::InsecureServerCredentials();
    return out;
  }
  grpc::experimental::TlsServerCredentialsOptions options(Provider(security));
  options.watch_identity_key_cert_pairs();
  options.watch_root_certs();
  options.set_cert_request_type(role == Role::kRouter
                                    ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                    : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  out.credentials = grpc::experimental::TlsServerCredentials(options);
  if (out.credentials == nullptr) {
    return absl::InternalError("gRPC could not build TLS server credentials");
  }
  CallerTable table = AllowedCallers(security, role);
  if (!table.empty()) {
    out.credentials->SetAuthMetadataProcessor(std::make_shared<RolePolicy>(std::move(table)));
  }
  return out;
}

std::shared_ptr<grpc::ChannelCredentials> ChannelCredentialsTo(const TransportSecurity& security,
                                                               Role peer) {
  if (security.insecure) return grpc::InsecureChannelCredentials();
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(Provider(security));
  options.watch_identity_key_cert_pairs();
  options.watch_root_certs();
  options.set_verify_server_certs(true);
  options.set_certificate_verifier(
      grpc::experimental::ExternalCertificateVerifier::Create<RoleVerifier>(
          security.Principal(peer), std::string(RoleName(peer))));
  // The role is checked, not the host name the channel dials (see the header).
  options.set_check_call_host(false);
  return grpc::experimental::TlsCredentials(options);
}

std::shared_ptr<grpc::ChannelCredentials> RouterClientCredentials(const std::string& ca_file,
                                                                  absl::Duration refresh) {
  if (ca_file.empty()) return grpc::InsecureChannelCredentials();
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(std::make_shared<FileWatcherCertificateProvider>(
      ca_file, static_cast<unsigned>(std::max<int64_t>(1, absl::ToInt64Seconds(refresh)))));
  options.watch_root_certs();
  options.set_verify_server_certs(true);
  options.set_certificate_verifier(
      std::make_shared<grpc::experimental::HostNameCertificateVerifier>());
  return grpc::experimental::TlsCredentials(options);
}

}  // namespace blockserve::security
