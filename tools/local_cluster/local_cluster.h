// A real local craft cluster: craft-planner replicas, node agents and
// workers as separate processes talking gRPC over loopback and Unix sockets.
// The integration tests drive one through this class; craft-local-cluster
// (main.cc) starts one from flags for the demo, the e2e test, the load
// generator's benchmark and the GPU-machine scripts.
//
//   ClusterOptions options;
//   options.num_nodes = 1;
//   options.insecure = true;
//   LocalCluster cluster(options);
//   if (absl::Status s = cluster.Start(); !s.ok()) ...
//   absl::StatusOr<craft::v1::LayoutStatus> layout = cluster.GetLayout();
#ifndef CRAFT_TOOLS_LOCAL_CLUSTER_LOCAL_CLUSTER_H_
#define CRAFT_TOOLS_LOCAL_CLUSTER_LOCAL_CLUSTER_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/test_certs.h"
#include "common/transport_security.h"
#include "craft/v1/placement.grpc.pb.h"
#include "tools/local_cluster/process.h"

namespace craft::local_cluster {

// The kinds of process in a cluster; with an index (planner replica, node,
// GPU) they name one.
enum class Role { kPlanner, kAgent, kWorker };

// "planner", "planner1", "agent1", "worker3": also the stem of its files in
// dir() and of its keys in the cluster's description (description.h).
std::string ProcessName(Role role, int index);

// "planner", "agent" or "worker".
absl::StatusOr<Role> ParseRole(absl::string_view name);

// A flag for some processes of a cluster, after the ones the cluster gives
// them (so it wins: Abseil keeps the last value of a flag given twice).
struct ExtraFlag {
  Role role = Role::kWorker;
  int index = -1;    // the replica, node or GPU; -1: every process of `role`
  std::string flag;  // "--name=value"
};

// Parses "ROLE[INDEX]:FLAG": "worker3:--fail_prepare_probability=0.5" for
// worker 3, "agent:--worker_wait_ms=60000" for every agent.
absl::StatusOr<ExtraFlag> ParseExtraFlag(absl::string_view text);

struct ClusterOptions {
  // Where the cluster's files go: configs, logs (<name>.log), ready files,
  // state, certificates, crash-control files. Empty: a fresh
  // /tmp/craft-it-XXXXXX, removed on destruction unless the environment sets
  // CRAFT_KEEP_CLUSTER_DIR. Given: made if missing, and kept.
  std::string dir;
  // The binaries; empty: the runfiles server/craft-planner,
  // agent/craft-agent and gpu_worker/craft-worker (common/runfiles.h).
  std::string planner_binary;
  std::string agent_binary;
  std::string worker_binary;

  int num_nodes = 2;  // 0: a planner alone (agents played by a load generator)
  int gpus_per_node = 4;
  // Placement groups: the nodes split evenly, in order, into groups of
  // these names, each with its own ranks from 0 (agents get --group, workers
  // their rank in the group). Empty: one group of every node.
  std::vector<std::string> groups;
  int num_layers = 6;
  int num_experts = 32;
  int top_k = 4;
  int64_t expert_bytes = 4096;  // the planner's model and every worker's
  // The workers: device backend (cpu, or cuda in craft-worker-cuda), traffic
  // (a trace JSON, else synthetic popularity of this skew; one seed for
  // every worker), and how often they re-verify their slots (0: at start and
  // after every flip only).
  std::string backend = "cpu";
  int window_ms = 200;
  int tokens_per_window = 4096;
  std::string trace;
  double skew = 8;
  uint64_t seed = 7;
  int verify_interval_ms = 300;

  // The planner config written for every replica, then `planner_config`,
  // YAML merged over it key by key (yaml_merge.h): "{replan: {method:
  // fresh}, loads: {window_horizon: 20}}".
  int budget = 2;
  int replan_interval_s = 3600;  // tests trigger replans through the RPC
  int apply_timeout_ms = 10000;
  std::string planner_config;
  // The first replica's port (replica i listens on planner_port + i); 0: free
  // ports, chosen at construction.
  int planner_port = 0;
  // High availability: with etcd endpoints (comma-separated), `planners`
  // replicas elect a leader on an etcd lease of `lease_ttl_s`, and agents
  // get every replica's address.
  int planners = 1;
  std::string etcd_endpoints;
  int lease_ttl_s = 2;

  // Whether agents get --num_layers/--num_experts/--top_k; without them (as
  // in the demo and the shipped DaemonSet) the planner's Welcome states it.
  bool agent_model_flags = true;
  // Plaintext everywhere (--insecure, the demo's mode). By default every
  // process runs mutual TLS with certificates made at construction:
  // "craft-planner", "node<i>" for node i's agent and workers, and "ops",
  // the admin identity placement() calls with.
  bool insecure = false;
  // Every process serves /metrics on a free loopback port (its ready file,
  // and so ReadyValues, says which).
  bool metrics = false;
  std::vector<ExtraFlag> extra_flags;
  // How long a process may take from its start to its ready file.
  absl::Duration start_timeout = absl::Seconds(20);
};

// How one process ended when its cluster was shut down.
struct ProcessExit {
  std::string name;
  pid_t pid = 0;
  int status = 0;                // as from waitpid
  bool before_shutdown = false;  // it had exited by itself (or been killed) before
  bool killed = false;           // it outlived the grace period after SIGTERM: SIGKILLed
  absl::Duration took;           // from the SIGTERM to its exit
};

// Not thread-safe. Kills every process still running on destruction
// (Shutdown first for a graceful stop).
//
// Every process starts with its own crash-control file (common/crash_point.h),
// dir()/<name>.crash, empty until ArmCrashPoint writes it, so any process can
// be made to SIGKILL itself at a named protocol step.
class LocalCluster {
 public:
  explicit LocalCluster(ClusterOptions options);
  ~LocalCluster();

  // Starts every planner replica, agent and worker, in that order; waits
  // for each one's ready file (the workers start together). A process that
  // exits first, or is not ready within options().start_timeout, fails it.
  absl::Status Start();
  // Starts one process and waits for its ready file; `extra_flags` go last
  // on its command line, and Restart reuses them.
  absl::Status StartPlanner(int replica = 0, const std::vector<std::string>& extra_flags = {});
  absl::Status StartAgent(int node, const std::vector<std::string>& extra_flags = {});
  absl::Status StartWorker(int gpu, const std::vector<std::string>& extra_flags = {});
  absl::Status StartProcess(Role role, int index, const std::vector<std::string>& extra_flags);

  Process& planner(int replica = 0) { return *planners_[replica]; }
  Process& agent(int node) { return *agents_[node]; }
  Process& worker(int gpu) { return *workers_[gpu]; }
  // The process of `role` (index: node, GPU or planner replica), running or
  // not; null when it was never started or StopWorker/StopPlanner took it.
  Process* process(Role role, int index);
  bool Running(Role role, int index);
  void StopWorker(int gpu) { workers_[gpu].reset(); }
  void StopPlanner(int replica = 0) { planners_[replica].reset(); }
  // Sends `signal` to the process and waits up to `grace` for its exit
  // (then SIGKILLs it); returns the exit status (as from waitpid). OK with
  // the status when it had exited already; NOT_FOUND when never started.
  absl::StatusOr<int> Stop(Role role, int index, int signal, absl::Duration grace);
  // Every process this cluster has, running or not, in start order.
  std::vector<std::pair<Role, int>> AllProcesses() const;
  // The "key=value" lines of the process's ready file when it last became
  // ready (grpc_port, socket, transfer_port, metrics_port, ...).
  std::map<std::string, std::string> ReadyValues(Role role, int index) const;
  // SIGTERM (and SIGCONT, for a process someone stopped) to every process
  // at once, then waits up to `grace` for them all; SIGKILLs the rest. One
  // entry per process that was started, in start order.
  std::vector<ProcessExit> Shutdown(absl::Duration grace);

  const ClusterOptions& options() const { return options_; }
  int num_gpus() const { return options_.num_nodes * options_.gpus_per_node; }
  // With options().groups: nodes per group, and the group of a node ("" without groups).
  int nodes_per_group() const;
  std::string group_of_node(int node) const;
  // Every group's name as requests give it: {""} without groups.
  std::vector<std::string> GroupNames() const;
  std::string planner_address(int replica = 0) const;
  // Every replica's address, comma-separated (the agents' --planner).
  std::string planner_addresses() const;
  const std::string& dir() const { return dir_; }
  std::string state_path() const { return dir_ + "/planner.state"; }
  std::string config_path(int replica) const;
  // Node `node`'s agent socket: in dir() unless that path is too long for a
  // Unix socket name (108 bytes), then in a short directory of its own.
  std::string socket_path(int node) const;
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
  // The identity a process's certificate carries: "craft-planner", or
  // "node<i>" for node i's agent and workers.
  std::string Identity(Role role, int index) const;
  // The certificate files of identity `name` (Identity, or "ops"); plaintext
  // when the cluster is insecure.
  TransportSecurity SecurityOf(const std::string& name) const;
  // The --tls_* flags (or --insecure) of a process with identity `name`.
  std::vector<std::string> SecurityFlags(const std::string& name) const;
  // Of placement group `group` ("": the only one).
  absl::StatusOr<craft::v1::LayoutStatus> GetLayout(const std::string& group = "");
  absl::StatusOr<craft::v1::ReplanResponse> Replan(bool force, const std::string& group = "");
  absl::StatusOr<craft::v1::ListAgentsResponse> ListAgents(const std::string& group = "");
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
  // The flags only a process of `role` gets; the rest is Launch's.
  absl::StatusOr<std::vector<std::string>> PlannerFlags(int replica) const;
  std::vector<std::string> AgentFlags(int node) const;
  std::vector<std::string> WorkerFlags(int gpu) const;
  // Starts the process with `role_flags`, the flags every process gets, the
  // options' extra flags and `extra_flags`, without waiting for it.
  absl::Status Launch(Role role, int index, std::vector<std::string> role_flags,
                      const std::vector<std::string>& extra_flags);
  // Waits for the ready file of a launched process; records its values.
  absl::Status WaitUntilReady(Role role, int index);
  std::unique_ptr<Process>& slot(Role role, int index);
  std::string FilePath(Role role, int index, absl::string_view suffix) const;
  std::string Binary(Role role) const;
  // The environment that points a process at its crash-control file.
  std::vector<std::string> CrashEnv(Role role, int index) const;

  ClusterOptions options_;
  // Not OK when the directory or the certificates could not be made; every
  // start fails with it then.
  absl::Status setup_;
  std::string dir_;
  bool own_dir_ = false;    // made here, removed on destruction
  std::string socket_dir_;  // dir_, or a short directory of our own
  std::vector<int> planner_ports_;
  std::vector<std::unique_ptr<Process>> planners_;
  std::vector<std::unique_ptr<Process>> agents_;
  std::vector<std::unique_ptr<Process>> workers_;
  // By ProcessName: the extra flags each process was started with last (for
  // Restart), and its ready file's values.
  std::map<std::string, std::vector<std::string>> extra_flags_;
  std::map<std::string, std::map<std::string, std::string>> ready_values_;
  // Where each worker's current incarnation starts in its (appended) log.
  std::vector<int64_t> worker_log_offsets_;
  std::optional<craft::testing::TestCerts> certs_;  // unset when insecure
  std::unique_ptr<craft::v1::PlacementService::Stub> placement_;
};

}  // namespace craft::local_cluster

#endif  // CRAFT_TOOLS_LOCAL_CLUSTER_LOCAL_CLUSTER_H_
