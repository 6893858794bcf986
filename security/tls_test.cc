// mTLS between services as an attacker meets it: in-process servers with the real
// credentials and authorization policy of a role, called with certificates of every
// kind (the right role, the wrong role, none, another CA, expired), and a rotation of
// the server's files that takes effect without a restart.
#include "security/tls.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "proto/blockserve.grpc.pb.h"
#include "security/testing/test_pki.h"

namespace blockserve::security {
namespace {

using testing::CertSpec;
using testing::TestPki;

std::string TempDir(const std::string& name) {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string dir = absl::StrCat(base != nullptr ? base : "/tmp", "/", name, "-", getpid());
  std::filesystem::create_directories(dir);
  return dir;
}

// A server of `role` with the role's real credentials and policy; its services answer
// UNIMPLEMENTED, so a call that gets through the policy says so.
class RoleServer {
 public:
  RoleServer(const TransportSecurity& security, Role role) {
    absl::StatusOr<ServerSecurity> server_security = ServerSecurityFor(security, role);
    EXPECT_TRUE(server_security.ok()) << server_security.status();
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", server_security->credentials, &port_);
    builder.RegisterService(&decoder_);
    builder.RegisterService(&prefill_);
    server_ = builder.BuildAndStart();
  }
  ~RoleServer() { server_->Shutdown(); }
  std::string address() const { return absl::StrCat("localhost:", port_); }

 private:
  v1::Decoder::Service decoder_;
  v1::QueryPrefill::Service prefill_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

grpc::StatusCode CallCancel(const std::string& address,
                            std::shared_ptr<grpc::ChannelCredentials> credentials) {
  auto stub = v1::Decoder::NewStub(grpc::CreateChannel(address, credentials));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  v1::CancelResponse response;
  return stub->Cancel(&context, v1::CancelRequest(), &response).error_code();
}

grpc::StatusCode CallAcceptSequence(const std::string& address,
                                    std::shared_ptr<grpc::ChannelCredentials> credentials) {
  auto stub = v1::Decoder::NewStub(grpc::CreateChannel(address, credentials));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  v1::AcceptSequenceResponse response;
  auto writer = stub->AcceptSequence(&context, &response);
  writer->WritesDone();
  return writer->Finish().error_code();
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir("tls_test");
    absl::StatusOr<TestPki> pki = TestPki::Create(dir_);
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = std::make_unique<TestPki>(*std::move(pki));
  }
  TransportSecurity As(Role role) {
    absl::StatusOr<TransportSecurity> s = testing::RoleSecurity(*pki_, role);
    EXPECT_TRUE(s.ok()) << s.status();
    return *s;
  }
  std::string dir_;
  std::unique_ptr<TestPki> pki_;
};

TEST_F(TlsTest, DecoderAcceptsHandoffsFromPrefillsAndStreamsFromRoutersOnly) {
  RoleServer decoder(As(Role::kDecoder), Role::kDecoder);
  const auto from_prefill = ChannelCredentialsTo(As(Role::kPrefill), Role::kDecoder);
  const auto from_router = ChannelCredentialsTo(As(Role::kRouter), Role::kDecoder);
  // Through the policy: the (unimplemented) method answers.
  EXPECT_EQ(CallAcceptSequence(decoder.address(), from_prefill), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(CallCancel(decoder.address(), from_router), grpc::StatusCode::UNIMPLEMENTED);
  // A router's certificate may not hand off KV (KV injection), a prefill's may not read
  // a stream.
  EXPECT_EQ(CallAcceptSequence(decoder.address(), from_router),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(CallCancel(decoder.address(), from_prefill), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(TlsTest, CallersWithoutACertificateOfTheCaAreRefusedAtTheHandshake) {
  RoleServer decoder(As(Role::kDecoder), Role::kDecoder);
  // No client certificate (a client that trusts the CA but has no identity).
  EXPECT_EQ(CallAcceptSequence(decoder.address(), RouterClientCredentials(pki_->ca_file(),
                                                                          absl::Seconds(60))),
            grpc::StatusCode::UNAVAILABLE);
  // Plaintext.
  EXPECT_EQ(CallAcceptSequence(decoder.address(), grpc::InsecureChannelCredentials()),
            grpc::StatusCode::UNAVAILABLE);
  // A prefill certificate from another CA (which trusts the real CA, so only the
  // server's check of the client can fail).
  const std::string other_dir = TempDir("tls_test_other");
  absl::StatusOr<TestPki> other = TestPki::Create(other_dir, "other-ca");
  ASSERT_TRUE(other.ok()) << other.status();
  absl::StatusOr<TlsFiles> foreign = other->IssueRole(Role::kPrefill);
  ASSERT_TRUE(foreign.ok()) << foreign.status();
  TransportSecurity impostor;
  impostor.files = {foreign->cert, foreign->key, pki_->ca_file()};
  EXPECT_EQ(CallAcceptSequence(decoder.address(), ChannelCredentialsTo(impostor, Role::kDecoder)),
            grpc::StatusCode::UNAVAILABLE);
  // An expired prefill certificate of the right CA.
  CertSpec expired;
  expired.uris = {As(Role::kPrefill).Principal(Role::kPrefill)};
  expired.not_before = -absl::Hours(48);
  expired.not_after = -absl::Hours(1);
  absl::StatusOr<TlsFiles> old = pki_->Issue("expired-prefill", expired);
  ASSERT_TRUE(old.ok()) << old.status();
  TransportSecurity stale;
  stale.files = *old;
  EXPECT_EQ(CallAcceptSequence(decoder.address(), ChannelCredentialsTo(stale, Role::kDecoder)),
            grpc::StatusCode::UNAVAILABLE);
  // The same call with a valid prefill certificate goes through: the refusals above
  // are the certificates', not the server's.
  EXPECT_EQ(CallAcceptSequence(decoder.address(),
                               ChannelCredentialsTo(As(Role::kPrefill), Role::kDecoder)),
            grpc::StatusCode::UNIMPLEMENTED);
}

TEST_F(TlsTest, APrefillHandsOffOnlyToAServerWithADecoderCertificate) {
  // A server of the cluster CA that is not a decoder (a router's certificate), playing
  // a decoder: the prefill's channel refuses it at the handshake.
  RoleServer fake(As(Role::kRouter), Role::kDecoder);
  EXPECT_EQ(CallAcceptSequence(fake.address(),
                               ChannelCredentialsTo(As(Role::kPrefill), Role::kDecoder)),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, PrefillAnswersRoutersOnly) {
  RoleServer prefill(As(Role::kPrefill), Role::kPrefill);
  auto call = [&](Role caller) {
    auto stub = v1::QueryPrefill::NewStub(
        grpc::CreateChannel(prefill.address(), ChannelCredentialsTo(As(caller), Role::kPrefill)));
    grpc::ClientContext context;
    v1::PrefillResponse response;
    return stub->Prefill(&context, v1::PrefillRequest(), &response).error_code();
  };
  EXPECT_EQ(call(Role::kRouter), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(call(Role::kDecoder), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(call(Role::kEncoder), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(TlsTest, ARotatedCertificateIsServedWithoutARestart) {
  // The server starts with CA 1; a client of CA 2 cannot talk to it. The server's three
  // files are then replaced by CA 2's; within the refresh interval the client can.
  TransportSecurity server = As(Role::kDecoder);
  server.refresh = absl::Seconds(1);
  RoleServer decoder(server, Role::kDecoder);
  const std::string dir2 = TempDir("tls_test_rotated");
  absl::StatusOr<TestPki> ca2 = TestPki::Create(dir2, "ca-2");
  ASSERT_TRUE(ca2.ok()) << ca2.status();
  absl::StatusOr<TransportSecurity> client = testing::RoleSecurity(*ca2, Role::kPrefill);
  ASSERT_TRUE(client.ok()) << client.status();
  const auto credentials = ChannelCredentialsTo(*client, Role::kDecoder);
  EXPECT_EQ(CallAcceptSequence(decoder.address(), credentials), grpc::StatusCode::UNAVAILABLE);

  absl::StatusOr<TlsFiles> rotated = ca2->IssueRole(Role::kDecoder);
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  for (const auto& [from, to] : {std::pair{rotated->cert, server.files.cert},
                                 std::pair{rotated->key, server.files.key},
                                 std::pair{rotated->ca, server.files.ca}}) {
    std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing);
  }
  grpc::StatusCode code = grpc::StatusCode::UNAVAILABLE;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(15);
       code == grpc::StatusCode::UNAVAILABLE && absl::Now() < deadline;) {
    absl::SleepFor(absl::Milliseconds(200));
    code = CallAcceptSequence(decoder.address(), ChannelCredentialsTo(*client, Role::kDecoder));
  }
  EXPECT_EQ(code, grpc::StatusCode::UNIMPLEMENTED);
}

TEST_F(TlsTest, StartUpChecksNameTheFileAtFault) {
  TransportSecurity good = As(Role::kDecoder);
  EXPECT_TRUE(CheckTransportSecurity(good).ok());

  TransportSecurity missing = good;
  missing.files.key = dir_ + "/no-such.key";
  EXPECT_NE(CheckTransportSecurity(missing).message().find("--tls_key"), std::string::npos);

  TransportSecurity mismatched = good;
  mismatched.files.key = As(Role::kRouter).files.key;
  EXPECT_NE(CheckTransportSecurity(mismatched).message().find("is not the key"),
            std::string::npos);

  CertSpec expired;
  expired.not_before = -absl::Hours(48);
  expired.not_after = -absl::Hours(1);
  absl::StatusOr<TlsFiles> old = pki_->Issue("expired", expired);
  ASSERT_TRUE(old.ok());
  TransportSecurity stale;
  stale.files = *old;
  EXPECT_NE(CheckTransportSecurity(stale).message().find("expired"), std::string::npos);

  TransportSecurity not_pem = good;
  not_pem.files.ca = good.files.key;
  EXPECT_NE(CheckTransportSecurity(not_pem).message().find("--tls_ca"), std::string::npos);
}

TEST(ListenHostTest, InsecureListensOnLoopbackOnly) {
  TransportSecurity insecure;
  insecure.insecure = true;
  EXPECT_TRUE(CheckListenHost(insecure, "127.0.0.1").ok());
  EXPECT_TRUE(CheckListenHost(insecure, "localhost").ok());
  EXPECT_TRUE(CheckListenHost(insecure, "::1").ok());
  EXPECT_TRUE(absl::IsInvalidArgument(CheckListenHost(insecure, "0.0.0.0")));
  EXPECT_TRUE(absl::IsInvalidArgument(CheckListenHost(insecure, "10.1.2.3")));
  TransportSecurity tls;
  EXPECT_TRUE(CheckListenHost(tls, "0.0.0.0").ok());
}

TEST(PolicyTest, TheRouterHasNoTableAndEveryOtherRoleNamesItsCallers) {
  TransportSecurity security;
  EXPECT_TRUE(AllowedCallers(security, Role::kRouter).empty());
  const CallerTable decoder = AllowedCallers(security, Role::kDecoder);
  EXPECT_EQ(decoder.at("/blockserve.v1.Decoder/AcceptSequence"),
            std::vector<std::string>{"spiffe://blockserve/prefill"});
  EXPECT_EQ(decoder.at("/blockserve.v1.Decoder/Stream"),
            std::vector<std::string>{"spiffe://blockserve/router"});
  EXPECT_TRUE(decoder.at("/grpc.health.v1.Health/*").empty());
}

TEST_F(TlsTest, HealthAnswersAnyPeerOfTheCaAndUnlistedMethodsNobody) {
  RoleServer prefill(As(Role::kPrefill), Role::kPrefill);
  auto channel = grpc::CreateChannel(prefill.address(),
                                     ChannelCredentialsTo(As(Role::kDecoder), Role::kPrefill));
  // Decoder methods are registered on this test server, but not in a prefill's table.
  auto stub = v1::Decoder::NewStub(channel);
  grpc::ClientContext context;
  v1::CancelResponse response;
  EXPECT_EQ(stub->Cancel(&context, v1::CancelRequest(), &response).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

}  // namespace
}  // namespace blockserve::security
