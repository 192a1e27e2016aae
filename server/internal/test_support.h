// Test fixtures for //server tests: a small configuration, agent hellos and
// load windows that fit it, and a fake AgentConnection.
#ifndef CRAFT_SERVER_INTERNAL_TEST_SUPPORT_H_
#define CRAFT_SERVER_INTERNAL_TEST_SUPPORT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "craft/v1/agent.pb.h"
#include "craft/v1/load.pb.h"
#include "planner/layout.h"
#include "server/agent_registry.h"
#include "server/config.h"
#include "server/state_store.h"

namespace craft::server::testing {

// 2 layers x 4 experts, top-2, 1000-byte experts, 4 GPUs on 2 nodes, CRAFT
// with R = 1, horizon 8 windows, 1 s replan interval, 5 s apply timeout.
PlannerConfig SmallConfig();

// A hello for `node` with `ranks`, the model of SmallConfig().
craft::v1::AgentHello Hello(const std::string& node, const std::vector<int>& ranks,
                            const std::string& committed_version = "");

// GPU `gpu`'s window `window_id` under `version` (laid out as `layout`):
// each slot counts its expert's load in `expert_loads` (L x E) divided by the
// expert's replica count.
craft::v1::GpuWindow Window(const planner::Layout& layout, const std::string& version, int gpu,
                            int64_t window_id,
                            const std::vector<std::vector<int64_t>>& expert_loads);

// A valid layout for SmallConfig() with replicas: expert 0 twice in layer 0
// (GPUs 0 and 1), expert 1 twice in layer 1 (GPUs 1 and 2).
planner::Layout ReplicatedLayout();

// A planner state whose committed layout is version "<epoch>.<seq>": one
// layer of four experts on two GPUs (state store tests, file and etcd).
PlannerState SamplePlannerState(int64_t epoch, int64_t seq);

// Skewed loads for SmallConfig(): expert 0 of every layer is hot.
std::vector<std::vector<int64_t>> SkewedLoads();

// Records what the coordinator sends; thread-safe.
class FakeConnection : public AgentConnection {
 public:
  void Send(const craft::v1::PlannerMessage& message) override;
  void Close(const absl::Status& status) override;

  std::vector<craft::v1::PlannerMessage> sent() const;  // without welcomes
  int welcomes() const;
  craft::v1::Welcome last_welcome() const;
  // The last message sent; fails the test when none was.
  craft::v1::PlannerMessage last() const;
  std::optional<absl::Status> closed() const;
  void clear();

 private:
  mutable absl::Mutex mu_;
  std::vector<craft::v1::PlannerMessage> sent_ ABSL_GUARDED_BY(mu_);
  int welcomes_ ABSL_GUARDED_BY(mu_) = 0;
  craft::v1::Welcome last_welcome_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Status> closed_ ABSL_GUARDED_BY(mu_);
};

// Answers for the agent side.
craft::v1::Ack AckOf(const craft::v1::PlannerMessage& message, craft::v1::AckPhase phase);
craft::v1::Nack NackOf(const craft::v1::PlannerMessage& message, craft::v1::ErrorCode code,
                       const std::string& last_good_version);

}  // namespace craft::server::testing

#endif  // CRAFT_SERVER_INTERNAL_TEST_SUPPORT_H_
