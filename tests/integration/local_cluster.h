// A real local craft cluster for integration tests: one craft-planner, node
// agents and CPU workers as separate processes talking gRPC over loopback
// and Unix sockets.
#ifndef CRAFT_TESTS_INTEGRATION_LOCAL_CLUSTER_H_
#define CRAFT_TESTS_INTEGRATION_LOCAL_CLUSTER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "craft/v1/placement.grpc.pb.h"
#include "tests/integration/process.h"

namespace craft::testing {

struct ClusterOptions {
  int num_nodes = 2;
  int gpus_per_node = 4;
  int num_layers = 6;
  int num_experts = 32;
  int top_k = 4;
  int window_ms = 200;
  int tokens_per_window = 4096;
  double skew = 8;
  int budget = 2;
  int replan_interval_s = 3600;  // tests trigger replans through the RPC
  int apply_timeout_ms = 10000;
};

// Not thread-safe. Stops every process on destruction.
class LocalCluster {
 public:
  explicit LocalCluster(ClusterOptions options);
  ~LocalCluster();

  absl::Status Start();
  absl::Status StartPlanner();
  absl::Status StartAgent(int node);
  absl::Status StartWorker(int gpu, const std::vector<std::string>& extra_flags = {});

  Process& planner() { return *planner_; }
  Process& agent(int node) { return *agents_[node]; }
  Process& worker(int gpu) { return *workers_[gpu]; }
  void StopWorker(int gpu) { workers_[gpu].reset(); }
  void StopPlanner() { planner_.reset(); }

  const ClusterOptions& options() const { return options_; }
  int num_gpus() const { return options_.num_nodes * options_.gpus_per_node; }
  std::string planner_address() const;
  const std::string& dir() const { return dir_; }
  std::string state_path() const { return dir_ + "/planner.state"; }

  craft::v1::PlacementService::Stub& placement() { return *placement_; }
  absl::StatusOr<craft::v1::LayoutStatus> GetLayout();
  absl::StatusOr<craft::v1::ReplanResponse> Replan(bool force);
  // Waits until the planner measured the committed layout's balance on at
  // least one window every GPU reported; returns it.
  absl::StatusOr<double> WaitForMeasuredBalance(absl::Duration timeout);
  // Waits until every agent is connected to the planner.
  bool WaitForAgentsConnected(absl::Duration timeout);
  // Waits until the planner has ingested `windows` windows per GPU in total.
  bool WaitForWindows(int64_t windows, absl::Duration timeout);
  // Waits until the committed version is not `old_version`; returns it.
  absl::StatusOr<std::string> WaitForNewVersion(const std::string& old_version,
                                                absl::Duration timeout);
  // True when every worker's log says its slots verified under `version`.
  bool AllWorkersVerified(const std::string& version);

 private:
  ClusterOptions options_;
  std::string dir_;  // short path: Unix socket names are limited to 108 bytes
  int planner_port_ = 0;
  std::unique_ptr<Process> planner_;
  std::vector<std::unique_ptr<Process>> agents_;
  std::vector<std::unique_ptr<Process>> workers_;
  std::unique_ptr<craft::v1::PlacementService::Stub> placement_;
};

}  // namespace craft::testing

#endif  // CRAFT_TESTS_INTEGRATION_LOCAL_CLUSTER_H_
