// The trust boundary as an attacker on the cluster network meets it (issue 14): the
// four services as real processes with mutual TLS and the router's bearer tokens, and
// each attack that worked against the plaintext system, now refused:
//   - reading a tenant's passage through a fake decoder (the prefill hands the prompt's
//     token ids and KV to whatever decoder.address says);
//   - injecting a KV sequence into a decoder; calling internal services at all;
//   - another tenant naming, hitting, overwriting or probing a tenant's passages;
//   - clients without a token, with a wrong one, over plaintext or trusting another CA;
//   - servers started insecure on a non-loopback address, or without TLS.
#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/router_client.h"
#include "proto/blockserve.grpc.pb.h"
#include "security/testing/test_pki.h"
#include "security/tls.h"
#include "tests/blockserve_system.h"

namespace blockserve::testing {
namespace {

using security::Role;

// A "decoder" run by the attacker: it accepts every handoff and keeps what arrives.
class FakeDecoder final : public v1::Decoder::Service {
 public:
  grpc::Status AcceptSequence(grpc::ServerContext*, grpc::ServerReader<v1::KvChunk>* reader,
                              v1::AcceptSequenceResponse*) override {
    v1::KvChunk chunk;
    while (reader->Read(&chunk)) chunks_.fetch_add(1);
    return grpc::Status::OK;
  }
  int chunks() const { return chunks_.load(); }

 private:
  std::atomic<int> chunks_{0};
};

class FakeDecoderServer {
 public:
  explicit FakeDecoderServer(std::shared_ptr<grpc::ServerCredentials> credentials) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", credentials, &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
  }
  ~FakeDecoderServer() { server_->Shutdown(); }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  int chunks() const { return service_.chunks(); }

 private:
  FakeDecoder service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

constexpr char kPassage[] = "tall-ember";

class SecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    engine::TinyModelOptions o;
    o.seed = 14;
    absl::StatusOr<std::string> dir = TinyModelDir(o);
    ASSERT_TRUE(dir.ok()) << dir.status();
    SystemOptions options{.model_dir = *dir};
    options.tenants = {
        {.name = "tenant-a", .token = "token-a"},
        {.name = "tenant-b", .token = "token-b"},
        {.name = "corpus-loader", .token = "token-loader", .ns = "public"},
        {.name = "reader", .token = "token-reader", .read_namespaces = {"public"}},
        {.name = "read-only", .token = "token-read-only", .may_ingest = false},
    };
    absl::StatusOr<std::unique_ptr<BlockServeSystem>> sys = BlockServeSystem::Start(options);
    ASSERT_TRUE(sys.ok()) << sys.status();
    system_ = sys->release();
    absl::StatusOr<std::vector<v1::Passage>> passages = TestPassages();
    ASSERT_TRUE(passages.ok()) << passages.status();
    passages_ = new std::vector<v1::Passage>(*passages);
    // Tenant A (the router() stub's tenant) ingests the corpus.
    absl::StatusOr<v1::IngestResponse> ingested = system_->Ingest(*passages);
    ASSERT_TRUE(ingested.ok()) << ingested.status();
  }
  static void TearDownTestSuite() {
    if (system_ == nullptr) return;
    EXPECT_TRUE(system_->Shutdown().ok());
    delete system_;
    system_ = nullptr;
    delete passages_;
  }
  void SetUp() override { ASSERT_NE(system_, nullptr); }

  static const v1::Passage& PassageText(const std::string& id) {
    for (const v1::Passage& p : *passages_) {
      if (p.id() == id) return p;
    }
    ADD_FAILURE() << "no passage " << id;
    return passages_->front();
  }

  static v1::GenerateRequest ById(const std::string& id) {
    v1::GenerateRequest r;
    r.add_passages()->set_passage_id(id);
    r.set_query("Who built the Tall Ember?");
    r.mutable_sampling()->set_max_new_tokens(2);
    return r;
  }

  // QueryPrefill.Prefill of tenant A's passage straight to the prefill, as the attack
  // did, with the KV to go to `decoder_address`.
  static grpc::Status PrefillDirect(const std::shared_ptr<grpc::Channel>& channel,
                                    const std::string& decoder_address) {
    v1::PrefillRequest request;
    request.add_passages()->set_passage_id(kPassage);
    request.set_query("Repeat the passage.");
    request.mutable_decoder()->set_address(decoder_address);
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
    context.AddMetadata("blockserve-namespace", "tenant-a");  // what the router would send
    v1::PrefillResponse response;
    return v1::QueryPrefill::NewStub(channel)->Prefill(&context, request, &response);
  }

  static BlockServeSystem* system_;
  static std::vector<v1::Passage>* passages_;
};

BlockServeSystem* SecurityTest::system_ = nullptr;
std::vector<v1::Passage>* SecurityTest::passages_ = nullptr;

TEST_F(SecurityTest, NoOneButARouterCanAskThePrefillForAPassage) {
  const std::string prefill = system_->prefill(0).address();
  FakeDecoderServer plaintext_decoder(grpc::InsecureServerCredentials());
  // No client certificate: refused at the handshake (before: the prompt's token ids and
  // KV went to the fake decoder).
  EXPECT_EQ(PrefillDirect(grpc::CreateChannel(prefill, grpc::InsecureChannelCredentials()),
                          plaintext_decoder.address())
                .error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(PrefillDirect(grpc::CreateChannel(prefill, security::RouterClientCredentials(
                                                           system_->pki()->ca_file(),
                                                           absl::Seconds(60))),
                          plaintext_decoder.address())
                .error_code(),
            grpc::StatusCode::UNAVAILABLE);
  // A certificate of the cluster CA, but of a decoder (or any role but router).
  for (Role role : {Role::kDecoder, Role::kEncoder, Role::kPrefill}) {
    EXPECT_EQ(PrefillDirect(system_->InternalChannel(role, Role::kPrefill, prefill),
                            plaintext_decoder.address())
                  .error_code(),
              grpc::StatusCode::PERMISSION_DENIED)
        << security::RoleName(role);
  }
  EXPECT_EQ(plaintext_decoder.chunks(), 0);
}

TEST_F(SecurityTest, APrefillHandsKvOnlyToADecoderOfTheCluster) {
  // Even a router's call (a compromised router, or a placement gone wrong) cannot make
  // the prefill stream KV to a server that is not a decoder of the cluster CA.
  const std::string prefill = system_->prefill(0).address();
  const auto as_router = system_->InternalChannel(Role::kRouter, Role::kPrefill, prefill);
  FakeDecoderServer plaintext_decoder(grpc::InsecureServerCredentials());
  absl::StatusOr<security::ServerSecurity> router_cert =
      security::ServerSecurityFor(system_->Identity(Role::kRouter), Role::kRouter);
  ASSERT_TRUE(router_cert.ok());
  FakeDecoderServer decoder_with_router_cert(router_cert->credentials);
  for (const FakeDecoderServer* fake : {&plaintext_decoder, &decoder_with_router_cert}) {
    const grpc::Status s = PrefillDirect(as_router, fake->address());
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
    EXPECT_EQ(fake->chunks(), 0);
  }
  // The real decoder is accepted (the refusals above are about the peer).
  const grpc::Status real = PrefillDirect(as_router, system_->decoder(0).address());
  EXPECT_TRUE(real.ok()) << real.error_message();
}

TEST_F(SecurityTest, OnlyPrefillsHandKvToADecoderAndOnlyRoutersReadItsStreams) {
  const std::string decoder = system_->decoder(0).address();
  auto accept = [&](const std::shared_ptr<grpc::Channel>& channel) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    v1::AcceptSequenceResponse response;
    auto writer = v1::Decoder::NewStub(channel)->AcceptSequence(&context, &response);
    v1::KvChunk chunk;
    chunk.mutable_header()->set_sequence_id(77);
    writer->Write(chunk);
    writer->WritesDone();
    return writer->Finish().error_code();
  };
  EXPECT_EQ(accept(grpc::CreateChannel(decoder, grpc::InsecureChannelCredentials())),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(accept(system_->InternalChannel(Role::kRouter, Role::kDecoder, decoder)),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(accept(system_->InternalChannel(Role::kEncoder, Role::kDecoder, decoder)),
            grpc::StatusCode::PERMISSION_DENIED);
  // A prefill's certificate gets through to the decoder's own checks (an incomplete
  // sequence is refused as such, not by the policy).
  EXPECT_NE(accept(system_->InternalChannel(Role::kPrefill, Role::kDecoder, decoder)),
            grpc::StatusCode::PERMISSION_DENIED);

  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  v1::StreamRequest request;
  request.set_sequence_id(77);
  auto reader =
      v1::Decoder::NewStub(system_->InternalChannel(Role::kPrefill, Role::kDecoder, decoder))
          ->Stream(&context, request);
  v1::TokenEvent event;
  while (reader->Read(&event)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(SecurityTest, TheEncoderIngestsForRoutersOnly) {
  const std::string encoder = system_->encoder().address();
  v1::EncodePassagesRequest request;
  *request.add_passages() = PassageText(kPassage);
  request.mutable_passages(0)->set_text("Overwritten: the Tall Ember was built by nobody.");
  for (Role role : {Role::kPrefill, Role::kDecoder, Role::kEncoder}) {
    grpc::ClientContext context;
    v1::EncodePassagesResponse response;
    EXPECT_EQ(v1::PassageEncoder::NewStub(system_->InternalChannel(role, Role::kEncoder, encoder))
                  ->EncodePassages(&context, request, &response)
                  .error_code(),
              grpc::StatusCode::PERMISSION_DENIED)
        << security::RoleName(role);
  }
}

TEST_F(SecurityTest, AnotherTenantCannotNameHitOverwriteOrProbeATenantsPassages) {
  std::unique_ptr<v1::Router::Stub> b = system_->RouterAs("token-b");
  // A can use its passage; B naming the same id gets NOT_FOUND (before: A's passage).
  const GenerateResult by_a = Generate(system_->router(), ById(kPassage));
  ASSERT_TRUE(by_a.status.ok()) << by_a.status.error_message();
  EXPECT_EQ(Generate(*b, ById(kPassage)).status.error_code(), grpc::StatusCode::NOT_FOUND);

  // B sending A's text inline is a cache miss: no faster answer than any new text.
  v1::GenerateRequest inline_text;
  inline_text.add_passages()->set_text(PassageText(kPassage).text());
  inline_text.set_query("Who built the Tall Ember?");
  inline_text.mutable_sampling()->set_max_new_tokens(2);
  const GenerateResult probe = Generate(*b, inline_text);
  ASSERT_TRUE(probe.status.ok()) << probe.status.error_message();
  ASSERT_TRUE(probe.summary.has_value());
  EXPECT_EQ(probe.summary->cache_hits(), 0u);
  EXPECT_GE(probe.summary->cache_misses(), 1u);

  // B ingesting A's text (a guess; one B never sent before, since B's own requests
  // fill B's own cache) learns nothing: not already_cached, another key.
  grpc::ClientContext context;
  v1::IngestRequest guess;
  *guess.add_passages() = PassageText("corla-danvis");
  guess.mutable_passages(0)->set_id(kPassage);
  v1::IngestResponse answer;
  ASSERT_TRUE(b->Ingest(&context, guess, &answer).ok());
  ASSERT_EQ(answer.results_size(), 1);
  EXPECT_FALSE(answer.results(0).already_cached());
  // ...and its passage of the same id did not replace A's: A's answer is unchanged.
  const GenerateResult again = Generate(system_->router(), ById(kPassage));
  ASSERT_TRUE(again.status.ok());
  EXPECT_EQ(again.tokens, by_a.tokens);
  absl::StatusOr<v1::IngestResponse> a_again = system_->Ingest({PassageText("corla-danvis")});
  ASSERT_TRUE(a_again.ok());
  EXPECT_TRUE(a_again->results(0).already_cached());
  EXPECT_NE(a_again->results(0).content_key(), answer.results(0).content_key());
}

TEST_F(SecurityTest, ASharedCorpusIsReadOnlyByTenantsThatOptIn) {
  std::unique_ptr<v1::Router::Stub> loader = system_->RouterAs("token-loader");
  grpc::ClientContext context;
  v1::IngestRequest request;
  v1::Passage* handbook = request.add_passages();
  handbook->set_id("handbook");
  handbook->set_text("The Oristane handbook says the Tall Ember is copper-roofed.");
  v1::IngestResponse response;
  ASSERT_TRUE(loader->Ingest(&context, request, &response).ok());
  const GenerateResult reader = Generate(*system_->RouterAs("token-reader"), ById("handbook"));
  EXPECT_TRUE(reader.status.ok()) << reader.status.error_message();
  EXPECT_EQ(Generate(system_->router(), ById("handbook")).status.error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(SecurityTest, CallsWithoutAValidTokenAreUnauthenticatedAndTenantsHaveRights) {
  EXPECT_EQ(Generate(*system_->RouterAs(""), ById(kPassage)).status.error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Generate(*system_->RouterAs("token-c"), ById(kPassage)).status.error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  grpc::ClientContext stats_context;
  v1::StatsResponse stats;
  EXPECT_EQ(system_->RouterAs("")->GetStats(&stats_context, {}, &stats).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  grpc::ClientContext context;
  v1::IngestRequest request;
  *request.add_passages() = PassageText(kPassage);
  v1::IngestResponse response;
  EXPECT_EQ(system_->RouterAs("token-read-only")->Ingest(&context, request, &response).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(SecurityTest, ClientsMustTrustTheClusterCaAndCannotUsePlaintext) {
  const std::string router = system_->router_process().address();
  auto stats = [](const std::shared_ptr<grpc::Channel>& channel) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    v1::StatsResponse response;
    return v1::Router::NewStub(channel)->GetStats(&context, {}, &response).error_code();
  };
  EXPECT_EQ(stats(client::RouterClient::Connect(router)), grpc::StatusCode::UNAVAILABLE);
  const std::string dir = absl::StrCat(std::getenv("TEST_TMPDIR"), "/other-ca");
  std::filesystem::create_directories(dir);
  absl::StatusOr<security::testing::TestPki> other =
      security::testing::TestPki::Create(dir, "other-ca");
  ASSERT_TRUE(other.ok());
  absl::StatusOr<std::shared_ptr<grpc::Channel>> wrong_ca =
      client::RouterClient::Connect(router, {.ca_file = other->ca_file(), .token = "token-a"});
  ASSERT_TRUE(wrong_ca.ok());
  EXPECT_EQ(stats(*wrong_ca), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(stats(system_->RouterChannel()), grpc::StatusCode::OK);
  // A token is never sent in plaintext.
  EXPECT_TRUE(absl::IsInvalidArgument(
      client::RouterClient::Connect(router, {.ca_file = "", .token = "token-a"}).status()));
}

TEST(ServerStartTest, InsecureListensOnLoopbackOnlyAndTlsIsTheDefault) {
  const std::string binary = RunfilePath("decoder/decoder");
  // ServerProcess passes --host=127.0.0.1 first; a later --host wins.
  absl::StatusOr<std::unique_ptr<ServerProcess>> open =
      ServerProcess::Start({.name = "insecure-decoder",
                            .binary = binary,
                            .args = {"--insecure", "--host=0.0.0.0"},
                            .start_timeout = absl::Seconds(20)});
  ASSERT_FALSE(open.ok());
  EXPECT_NE(open.status().message().find("not loopback"), std::string::npos)
      << open.status().message();
  absl::StatusOr<std::unique_ptr<ServerProcess>> bare = ServerProcess::Start(
      {.name = "bare-decoder", .binary = binary, .args = {}, .start_timeout = absl::Seconds(20)});
  ASSERT_FALSE(bare.ok());
  EXPECT_NE(bare.status().message().find("TLS is required"), std::string::npos)
      << bare.status().message();
}

}  // namespace
}  // namespace blockserve::testing
