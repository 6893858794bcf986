// What each server binary listens on, seen from outside the process: with --port=0 and
// a --metrics_port, exactly the gRPC port of its "listening" line and the metrics port
// of its "metrics_listening" line, both on --host (127.0.0.1 here), and nothing else.
// gRPC's SO_REUSEPORT listener clones used to add a second, unlogged port serving the
// whole API, and the metrics port bound 0.0.0.0. The metrics port answers /healthz
// and /metrics, and 404 elsewhere; a metrics port already taken stops the server.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <set>
#include <string>

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/strings/str_cat.h"
#include "common/testing/sockets.h"
#include "tests/blockserve_system.h"

namespace blockserve::testing {
namespace {

int HttpGetCode(int port, const std::string& path) { return HttpGet(port, path).code; }

TEST(ListenTest, EveryServerListensOnExactlyItsLoggedPortsOnItsHost) {
  absl::StatusOr<std::string> model = TinyModelDir({});
  ASSERT_TRUE(model.ok()) << model.status();
  // One metrics port per server kind (one process of each).
  const int encoder_metrics = FreeLoopbackPort(), prefill_metrics = FreeLoopbackPort(),
            decoder_metrics = FreeLoopbackPort(), router_metrics = FreeLoopbackPort();
  SystemOptions options;
  options.model_dir = *model;
  options.encoder_args = {absl::StrCat("--metrics_port=", encoder_metrics)};
  options.prefill_args = {absl::StrCat("--metrics_port=", prefill_metrics)};
  options.decoder_args = {absl::StrCat("--metrics_port=", decoder_metrics)};
  options.router_args = {absl::StrCat("--metrics_port=", router_metrics)};
  absl::StatusOr<std::unique_ptr<BlockServeSystem>> sys = BlockServeSystem::Start(options);
  ASSERT_TRUE(sys.ok()) << sys.status();

  const std::vector<std::pair<ServerProcess*, int>> servers = {
      {&(*sys)->encoder(), encoder_metrics},
      {&(*sys)->prefill(0), prefill_metrics},
      {&(*sys)->decoder(0), decoder_metrics},
      {&(*sys)->router_process(), router_metrics}};
  for (const auto& [server, metrics_port] : servers) {
    const std::vector<ListeningSocket> sockets = ListeningSockets(server->pid());
    EXPECT_EQ(Ports(sockets), (std::multiset<int>{server->port(), metrics_port}))
        << server->name() << " logged gRPC port " << server->port();
    for (const ListeningSocket& s : sockets) {
      // 127.0.0.1, as IPv4 or (gRPC's sockets) IPv4-mapped IPv6: never a wildcard.
      EXPECT_TRUE(absl::EndsWith(s.local_hex, "0100007F"))
          << server->name() << " port " << s.port << " is bound to " << s.local_hex;
    }
    EXPECT_TRUE(server->LogContains(absl::StrCat("\"address\":\"127.0.0.1:", metrics_port)))
        << server->LogTail();
    EXPECT_EQ(HttpGetCode(metrics_port, "/healthz"), 200) << server->name();
    EXPECT_EQ(HttpGetCode(metrics_port, "/metrics"), 200) << server->name();
    EXPECT_EQ(HttpGetCode(metrics_port, "/"), 404) << server->name();
  }
  EXPECT_TRUE((*sys)->Shutdown().ok());
}

TEST(ListenTest, AServerWhoseMetricsPortIsTakenDoesNotStart) {
  const HeldLoopbackPort taken;
  ASSERT_NE(taken.port(), 0);

  // The router needs no model; its backends need not exist for it to start.
  ProcessOptions o;
  o.name = "router";
  o.binary = RunfilePath("router/router");
  o.args = {"--insecure", "--prefill=127.0.0.1:1", "--decoder=127.0.0.1:2",
            absl::StrCat("--metrics_port=", taken.port())};
  o.start_timeout = absl::Seconds(20);
  const absl::StatusOr<std::unique_ptr<ServerProcess>> router = ServerProcess::Start(o);
  ASSERT_FALSE(router.ok()) << "the router started without its metrics port";
  EXPECT_TRUE(absl::StrContains(router.status().message(), "exited with 1")) << router.status();
  EXPECT_TRUE(absl::StrContains(router.status().message(), "Address already in use"))
      << router.status();
}

// Issue 15, item 7: a client that merely keeps a connection open (no call running) made
// every server wait out its whole shutdown grace: gRPC waits for connections to close.
// A drained server now closes idle connections and stops at once.
TEST(ShutdownTest, AnIdleClientConnectionDoesNotHoldUpTheShutdown) {
  ProcessOptions o;
  o.name = "router";
  o.binary = RunfilePath("router/router");
  o.args = {"--insecure", "--prefill=127.0.0.1:1", "--decoder=127.0.0.1:2",
            "--shutdown_grace_ms=10000"};
  absl::StatusOr<std::unique_ptr<ServerProcess>> router = ServerProcess::Start(o);
  ASSERT_TRUE(router.ok()) << router.status();
  // One call, then the channel stays open and idle.
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel((*router)->address(), grpc::InsecureChannelCredentials());
  grpc::ClientContext context;
  v1::StatsResponse stats;
  ASSERT_TRUE(v1::Router::NewStub(channel)->GetStats(&context, {}, &stats).ok());
  ASSERT_EQ(channel->GetState(false), GRPC_CHANNEL_READY);

  const absl::Time start = absl::Now();
  EXPECT_EQ((*router)->Terminate(), 0) << (*router)->LogTail();
  EXPECT_LT(absl::Now() - start, absl::Seconds(3)) << "waited for the idle connection";
}

}  // namespace
}  // namespace blockserve::testing
