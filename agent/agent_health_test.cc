// The agent's health port (--health_listen), mutual TLS like every TCP port:
// the standard grpc.health.v1 service answers SERVING, other methods
// UNIMPLEMENTED, and a client without a certificate of the CA gets nothing.
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "agent/agent.h"
#include "common/clock.h"
#include "common/empty_call.h"
#include "common/test_certs.h"
#include "common/transport_security.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace craft::agent {
namespace {

// Calls `method` with an empty request as `client`; the status and the
// response's bytes.
std::pair<grpc::Status, std::string> Call(int port, const std::string& method,
                                          const TransportSecurity& client) {
  EmptyCallReply reply =
      CallWithEmptyRequest(MakeChannel("127.0.0.1:" + std::to_string(port), client, "node-a"),
                           method, absl::Now() + absl::Seconds(5));
  return {reply.status, reply.bytes};
}

TEST(AgentHealthTest, HealthPortAnswersServing) {
  char pattern[] = "/tmp/craft-health-XXXXXX";
  const std::string dir = ::mkdtemp(pattern);
  AgentOptions options;
  options.node.node = "node-a";
  options.node.gpus = {0};
  options.socket_path = dir + "/agent.sock";
  options.planner_target = "127.0.0.1:1";  // nothing listens: the planner is away
  options.health_listen = "127.0.0.1:0";
  absl::StatusOr<testing::TestCerts> certs = testing::MakeTestCerts(dir, {"node-a", "prober"});
  ASSERT_TRUE(certs.ok()) << certs.status();
  options.security = certs->For("node-a");
  absl::StatusOr<std::unique_ptr<Agent>> agent = Agent::Start(options, Clock::Real());
  ASSERT_TRUE(agent.ok()) << agent.status();
  ASSERT_GT((*agent)->health_port(), 0);

  const TransportSecurity prober = certs->For("prober");
  auto [status, bytes] = Call((*agent)->health_port(), "/grpc.health.v1.Health/Check", prober);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));  // HealthCheckResponse{status: SERVING}
  EXPECT_EQ(Call((*agent)->health_port(), "/craft.v1.NodeAgent/Attach", prober).first.error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  TransportSecurity plaintext;
  plaintext.insecure = true;
  EXPECT_EQ(
      Call((*agent)->health_port(), "/grpc.health.v1.Health/Check", plaintext).first.error_code(),
      grpc::StatusCode::UNAVAILABLE);
  (*agent)->Shutdown();
  std::filesystem::remove_all(dir);
}

TEST(AgentHealthTest, UnusableHealthAddressFailsTheStart) {
  AgentOptions options;
  options.node.node = "node-a";
  options.node.gpus = {0};
  options.socket_path = "/tmp/craft-health-bad.sock";
  options.planner_target = "127.0.0.1:1";
  options.health_listen = "256.0.0.1:1";
  options.security.insecure = true;
  EXPECT_FALSE(Agent::Start(options, Clock::Real()).ok());
}

}  // namespace
}  // namespace craft::agent
