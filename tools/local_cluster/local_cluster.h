// A real local craft cluster for integration tests: one craft-planner, node
// agents and CPU workers as separate processes talking gRPC over loopback
// and Unix sockets.
#ifndef CRAFT_TOOLS_LOCAL_CLUSTER_LOCAL_CLUSTER_H_
#define CRAFT_TOOLS_LOCAL_CLUSTER_LOCAL_CLUSTER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/test_certs.h"
#include "common/transport_security.h"
#include "craft/v1/placement.grpc.pb.h"
#include "tools/local_cluster/process.h"

namespace craft::local_cluster {

// The kinds of process in a cluster; with an index (node, GPU) they name one.
enum class Role { kPlanner, kAgent, kWorker };

// "planner", "agent1", "worker3": also the stem of its files in dir().
std::string ProcessName(Role role, int index);

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
  // Whether agents get --num_layers/--num_experts/--top_k; without them (as
  // in the demo and the shipped DaemonSet) the planner's Welcome states it.
  bool agent_model_flags = true;
  // Plaintext everywhere (--insecure, the demo's mode). By default every
  // process runs mutual TLS with certificates made at construction:
  // "craft-planner", "node<i>" for node i's agent and workers, and "ops",
  // the admin identity placement() calls with.
  bool insecure = false;
  // High availability: with etcd endpoints (comma-separated), `planners`
  // replicas elect a leader on an etcd lease of `lease_ttl_s`, and agents
  // get every replica's address.
  int planners = 1;
  std::string etcd_endpoints;
  int lease_ttl_s = 2;
};

// Not thread-safe. Stops every process on destruction.
//
// Every process starts with its own crash-control file (common/crash_point.h),
// dir()/<name>.crash, empty until ArmCrashPoint writes it, so any process can
// be made to SIGKILL itself at a named protocol step.
class LocalCluster {
 public:
  explicit LocalCluster(ClusterOptions options);
  ~LocalCluster();

  absl::Status Start();
  absl::Status StartPlanner(int replica = 0);
  absl::Status StartAgent(int node);
  absl::Status StartWorker(int gpu, const std::vector<std::string>& extra_flags = {});

  Process& planner(int replica = 0) { return *planners_[replica]; }
  Process& agent(int node) { return *agents_[node]; }
  Process& worker(int gpu) { return *workers_[gpu]; }
  // The process of `role` (index: node, GPU or planner replica), or
  // null when it was never started or was stopped.
  Process* process(Role role, int index);
  bool Running(Role role, int index);
  void StopWorker(int gpu) { workers_[gpu].reset(); }
  void StopPlanner(int replica = 0) { planners_[replica].reset(); }

  const ClusterOptions& options() const { return options_; }
  int num_gpus() const { return options_.num_nodes * options_.gpus_per_node; }
  std::string planner_address(int replica = 0) const;
  // Every replica's address, comma-separated (the agents' --planner).
  std::string planner_addresses() const;
  const std::string& dir() const { return dir_; }
  std::string state_path() const { return dir_ + "/planner.state"; }
  std::string crash_file(Role role, int index) const;

  // Makes the process SIGKILL itself the `hit`-th time it reaches `point`,
  // after `delay_ms` (see common/crash_point.h). Takes effect at once: the
  // process reads the file at every point it reaches.
  absl::Status ArmCrashPoint(Role role, int index, const std::string& point, int hit = 1,
                             int delay_ms = 0);
  // Empties the control file (a point that was armed but never reached must
  // not fire in a later test step).
  absl::Status DisarmCrashPoint(Role role, int index);
  // Starts the process again as it was started last (planner: same config
  // and state file; agent: same state file; worker: same flags), killing
  // what is left of it first. Waits for its ready file.
  absl::Status Restart(Role role, int index);

  // The version worker `gpu` serves now: the last "verify ok version=V"
  // line its current incarnation logged (the worker logs one at start, after
  // every flip and every 300 ms). Empty when it logged none yet.
  std::string WorkerServingVersion(int gpu) const;
  std::vector<std::string> WorkerServingVersions() const;

  craft::v1::PlacementService::Stub& placement() { return *placement_; }
  // Points placement() and the calls below at planner replica `replica`
  // (high availability: the leader, or a follower).
  void UsePlanner(int replica);
  // A channel to the planner as certificate `name` ("ops", "node0", ...);
  // plaintext when the cluster is insecure.
  std::shared_ptr<grpc::Channel> ChannelAs(const std::string& name, int replica = 0) const;
  // The --tls_* flags (or --insecure) of a process with identity `name`.
  std::vector<std::string> SecurityFlags(const std::string& name) const;
  absl::StatusOr<craft::v1::LayoutStatus> GetLayout();
  absl::StatusOr<craft::v1::ReplanResponse> Replan(bool force);
  absl::StatusOr<craft::v1::ListAgentsResponse> ListAgents();
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
  // The environment that points a process at its crash-control file.
  std::vector<std::string> CrashEnv(Role role, int index) const;
  TransportSecurity SecurityOf(const std::string& name) const;

  ClusterOptions options_;
  std::string dir_;  // short path: Unix socket names are limited to 108 bytes
  std::vector<int> planner_ports_;
  std::vector<std::unique_ptr<Process>> planners_;
  std::vector<std::unique_ptr<Process>> agents_;
  std::vector<std::unique_ptr<Process>> workers_;
  std::vector<std::vector<std::string>> worker_extra_flags_;  // for Restart
  // Where each worker's current incarnation starts in its (appended) log.
  std::vector<int64_t> worker_log_offsets_;
  std::optional<craft::testing::TestCerts> certs_;  // unset when insecure
  std::unique_ptr<craft::v1::PlacementService::Stub> placement_;
};

}  // namespace craft::local_cluster

#endif  // CRAFT_TOOLS_LOCAL_CLUSTER_LOCAL_CLUSTER_H_
