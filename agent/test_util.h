// Fakes and messages shared by the agent's unit tests: channels that record
// what the agent sends, and the hellos, windows, prepares and statuses of a
// node of two GPUs running a model of kLayers x kExperts, top 2.
#ifndef CRAFT_AGENT_TEST_UTIL_H_
#define CRAFT_AGENT_TEST_UTIL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "agent/channels.h"
#include "craft/v1/agent.pb.h"
#include "craft/v1/load.pb.h"
#include "craft/v1/worker.pb.h"

namespace craft::agent::testing {

inline constexpr int kLayers = 2;
inline constexpr int kExperts = 4;

class FakePlanner : public PlannerChannel {
 public:
  void Send(const craft::v1::AgentMessage& message) override { sent.push_back(message); }
  void Reconnect() override { ++reconnects; }
  std::vector<craft::v1::AgentMessage> sent;
  int reconnects = 0;
};

class FakeWorker : public WorkerChannel {
 public:
  void Send(const craft::v1::WorkerCommand& command) override { received.push_back(command); }
  void Close(const absl::Status& status) override { closed = status; }
  std::vector<craft::v1::WorkerCommand> received;
  std::optional<absl::Status> closed;  // set when the agent ended the stream
};

// The hello of `gpu`'s worker, serving `version` ("" the initial layout).
craft::v1::WorkerHello Hello(int gpu, const std::string& version = "");

// A Prepare of the initial layout of `num_gpus` GPUs on one node, as `version`.
craft::v1::PlannerMessage PrepareMessage(int64_t epoch, const std::string& nonce,
                                         const std::string& version, int64_t timeout_ms = 0,
                                         int num_gpus = 2, int num_experts = kExperts);

craft::v1::WorkerStatus Status(const std::string& version, craft::v1::WorkerState state,
                               const std::string& error = "");

// Window `id` of `gpu`, counted under "0.0", with `layers` layers.
craft::v1::GpuWindow Window(int gpu, int64_t id, int layers = kLayers);

}  // namespace craft::agent::testing

#endif  // CRAFT_AGENT_TEST_UTIL_H_
