// craft-local-cluster: a local craft cluster from flags, for the demo, the
// e2e test, the load generator's benchmark and the GPU-machine scripts
// (README, "A local cluster").
//
//   craft-local-cluster --insecure --dir /tmp/c --nodes 2 --gpus_per_node 4
//       --planner_config '{replan: {budget: 4}}' -- worker3:--fail_prepare_probability=0.5
//
// Starts the planner replicas, the agents and the workers (LocalCluster),
// writes DIR/cluster.env (description.h) and prints its path on stdout, then
// stays up until SIGTERM, SIGINT or SIGHUP: it stops every process (SIGTERM;
// SIGKILL after --stop_timeout_s), reports on stderr how each one ended
// ("planner: exit status 0 after 35 ms") and exits. A process that exits
// meanwhile is reported ("worker3 (pid 4711) exited with status 137") and
// not restarted. Arguments after the flags are flags for some processes,
// ROLE[INDEX]:FLAG (local_cluster.h, ExtraFlag).
//
// With --commands it also reads commands on stdin, one a line, and answers
// each on stdout with "ok" or "error: MESSAGE":
//   restart ROLE INDEX [FLAG...]  stop the process (SIGTERM) and start it
//                                 again with these extra flags instead of
//                                 the ones it had; answers once it is ready.
// The end of stdin ends nothing.
//
// Exit status: 0 when every process running at the stop exited with status
// 0 in time; 1 when one did not, or when the cluster did not start (the
// processes that had started are stopped); 2 on bad flags.
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/atomic_file.h"
#include "common/flags.h"
#include "common/shutdown_signals.h"
#include "tools/local_cluster/description.h"
#include "tools/local_cluster/local_cluster.h"

using craft::local_cluster::ClusterOptions;

ABSL_FLAG(std::string, dir, "",
          "where the cluster's files go: logs (NAME.log), configs, state, certificates and the "
          "description cluster.env; made if missing, and kept. Empty: a fresh "
          "/tmp/craft-cluster-XXXXXX");
ABSL_FLAG(std::string, bin_dir, "",
          "a folder holding craft-planner, craft-agent and craft-worker (binaries staged or "
          "installed together); empty: this binary's runfiles");
ABSL_FLAG(std::string, planner_bin, "", "the planner binary, instead of the one --bin_dir gives");
ABSL_FLAG(std::string, agent_bin, "", "the agent binary, instead of the one --bin_dir gives");
ABSL_FLAG(std::string, worker_bin, "",
          "the worker binary, instead of the one --bin_dir gives (craft-worker-cuda for "
          "--backend=cuda)");
ABSL_FLAG(int, planners, ClusterOptions().planners,
          "planner replicas; more than one needs --etcd_endpoints");
ABSL_FLAG(int, nodes, ClusterOptions().num_nodes,
          "nodes, one craft-agent each; 0: a planner alone (agents played by a load generator: "
          "give the planner's cluster in --planner_config)");
ABSL_FLAG(int, gpus_per_node, ClusterOptions().gpus_per_node, "workers per node");
ABSL_FLAG(int, num_layers, ClusterOptions().num_layers, "MoE layers of the model");
ABSL_FLAG(int, num_experts, ClusterOptions().num_experts, "experts per layer");
ABSL_FLAG(int, top_k, ClusterOptions().top_k, "experts per token");
ABSL_FLAG(int64_t, expert_bytes, ClusterOptions().expert_bytes,
          "bytes of one expert (the planner's model.bytes_per_expert and every worker's)");
ABSL_FLAG(std::string, backend, ClusterOptions().backend,
          "the workers' device backend: cpu, or cuda (with craft-worker-cuda)");
ABSL_FLAG(int, window_ms, ClusterOptions().window_ms, "the workers' load window");
ABSL_FLAG(int, tokens_per_window, ClusterOptions().tokens_per_window,
          "tokens of the whole cluster per window");
ABSL_FLAG(std::string, trace, "",
          "the workers' traffic: a craft or SGLang trace JSON; empty: synthetic, --skew");
ABSL_FLAG(double, skew, ClusterOptions().skew,
          "synthetic traffic: hottest / mean expert load in skewed layers");
ABSL_FLAG(uint64_t, seed, ClusterOptions().seed, "the traffic seed, the same on every worker");
ABSL_FLAG(int, verify_interval_ms, ClusterOptions().verify_interval_ms,
          "workers re-verify their slots this often (0: at start and after every flip)");
ABSL_FLAG(bool, agent_model_flags, ClusterOptions().agent_model_flags,
          "give agents the model shape (--num_layers, --num_experts, --top_k); false: they take "
          "it from the planner, as the shipped DaemonSet does");
ABSL_FLAG(std::string, planner_config, "",
          "YAML merged key by key over the planner config the launcher writes, e.g. "
          "'{replan: {method: fresh, budget: 4}, apply: {timeout_ms: 20000}}'");
ABSL_FLAG(int, planner_port, 0,
          "the planner's port (replica i: the port + i); 0: free ports, chosen at start");
ABSL_FLAG(std::string, etcd_endpoints, "",
          "high availability: etcd's client endpoints, comma-separated (plaintext)");
ABSL_FLAG(int, lease_ttl_s, ClusterOptions().lease_ttl_s, "high availability: the leader lease");
ABSL_FLAG(bool, insecure, false,
          "plaintext on loopback for every process (each says so loudly); otherwise mutual TLS "
          "with certificates made in DIR/certs by scripts/make_certs.sh");
ABSL_FLAG(bool, metrics, false,
          "every process serves /metrics on a free loopback port (NAME_metrics_port in the "
          "description)");
ABSL_FLAG(double, start_timeout_s, absl::ToDoubleSeconds(ClusterOptions().start_timeout),
          "how long a process may take to be ready");
ABSL_FLAG(double, stop_timeout_s, 10,
          "at the stop, how long the processes may take to exit after SIGTERM before SIGKILL");
ABSL_FLAG(bool, commands, false, "read commands on stdin and answer them on stdout (see --help)");

namespace craft::local_cluster {
namespace {

constexpr char kUsage[] =
    "craft-local-cluster: starts a local craft cluster (planner, agents, workers) and keeps it\n"
    "up until SIGTERM, SIGINT or SIGHUP; writes DIR/cluster.env for scripts\n\n"
    "usage: craft-local-cluster [--insecure] [--dir DIR] [--nodes N --gpus_per_node G] ...\n"
    "                           [-- ROLE[INDEX]:FLAG ...]\n\n"
    "ROLE[INDEX]:FLAG gives FLAG to one process (worker3:--seed=8) or to every process of a\n"
    "role (agent:--worker_wait_ms=60000). With --commands, stdin takes one command a line,\n"
    "answered on stdout with 'ok' or 'error: ...':\n"
    "  restart ROLE INDEX [FLAG...]   SIGTERM, then start again with these extra flags\n";

// The description's contents are not quoted: the directory must not need it.
bool ShellSafe(absl::string_view path) {
  return std::all_of(path.begin(), path.end(), [](char c) {
    return absl::ascii_isalnum(c) || absl::StrContains("/._-+@:,%", c);
  });
}

absl::StatusOr<ClusterOptions> OptionsFromFlags(const std::vector<char*>& positional) {
  ClusterOptions options;
  options.dir = absl::GetFlag(FLAGS_dir);
  if (!ShellSafe(options.dir)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--dir '", options.dir,
                     "': letters, digits and /._-+@:,% only (scripts read paths unquoted)"));
  }
  const std::string bin_dir = absl::GetFlag(FLAGS_bin_dir);
  const auto binary = [&](const std::string& given, absl::string_view name) {
    if (!given.empty()) return given;
    return bin_dir.empty() ? std::string() : absl::StrCat(bin_dir, "/", name);
  };
  options.planner_binary = binary(absl::GetFlag(FLAGS_planner_bin), "craft-planner");
  options.agent_binary = binary(absl::GetFlag(FLAGS_agent_bin), "craft-agent");
  options.worker_binary = binary(absl::GetFlag(FLAGS_worker_bin), "craft-worker");
  options.planners = absl::GetFlag(FLAGS_planners);
  options.num_nodes = absl::GetFlag(FLAGS_nodes);
  options.gpus_per_node = absl::GetFlag(FLAGS_gpus_per_node);
  if (options.planners < 1 || options.num_nodes < 0 || options.gpus_per_node < 1) {
    return absl::InvalidArgumentError(
        "--planners and --gpus_per_node must be at least 1, --nodes at least 0");
  }
  options.num_layers = absl::GetFlag(FLAGS_num_layers);
  options.num_experts = absl::GetFlag(FLAGS_num_experts);
  options.top_k = absl::GetFlag(FLAGS_top_k);
  options.expert_bytes = absl::GetFlag(FLAGS_expert_bytes);
  options.backend = absl::GetFlag(FLAGS_backend);
  if (options.backend != "cpu" && options.backend != "cuda") {
    return absl::InvalidArgumentError("--backend is cpu or cuda");
  }
  options.window_ms = absl::GetFlag(FLAGS_window_ms);
  options.tokens_per_window = absl::GetFlag(FLAGS_tokens_per_window);
  options.trace = absl::GetFlag(FLAGS_trace);
  options.skew = absl::GetFlag(FLAGS_skew);
  options.seed = absl::GetFlag(FLAGS_seed);
  options.verify_interval_ms = absl::GetFlag(FLAGS_verify_interval_ms);
  options.agent_model_flags = absl::GetFlag(FLAGS_agent_model_flags);
  options.planner_config = absl::GetFlag(FLAGS_planner_config);
  options.planner_port = absl::GetFlag(FLAGS_planner_port);
  options.etcd_endpoints = absl::GetFlag(FLAGS_etcd_endpoints);
  options.lease_ttl_s = absl::GetFlag(FLAGS_lease_ttl_s);
  options.insecure = absl::GetFlag(FLAGS_insecure);
  options.metrics = absl::GetFlag(FLAGS_metrics);
  options.start_timeout = absl::Seconds(absl::GetFlag(FLAGS_start_timeout_s));
  for (size_t i = 1; i < positional.size(); ++i) {
    absl::StatusOr<ExtraFlag> extra = ParseExtraFlag(positional[i]);
    if (!extra.ok()) return extra.status();
    options.extra_flags.push_back(*std::move(extra));
  }
  if (options.dir.empty()) {  // LocalCluster would remove a directory it made
    std::string pattern = "/tmp/craft-cluster-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) return absl::InternalError("cannot make a /tmp dir");
    options.dir = pattern;
  }
  return options;
}

std::string DescriptionPath(const LocalCluster& cluster) { return cluster.dir() + "/cluster.env"; }

absl::Status WriteDescription(LocalCluster& cluster) {
  return WriteFileAtomically(DescriptionPath(cluster), DescribeCluster(cluster));
}

// "restart ROLE INDEX [FLAG...]".
absl::Status RunCommand(LocalCluster& cluster, absl::string_view line, absl::Duration grace) {
  const std::vector<std::string> words =
      absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  if (words.size() < 3 || words[0] != "restart") {
    return absl::InvalidArgumentError("the command is restart ROLE INDEX [FLAG...]");
  }
  absl::StatusOr<Role> role = ParseRole(words[1]);
  if (!role.ok()) return role.status();
  int index = 0;
  const std::vector<std::pair<Role, int>> all = cluster.AllProcesses();
  if (!absl::SimpleAtoi(words[2], &index) ||
      std::find(all.begin(), all.end(), std::make_pair(*role, index)) == all.end()) {
    return absl::InvalidArgumentError(absl::StrCat("no ", words[1], " ", words[2]));
  }
  (void)cluster.Stop(*role, index, SIGTERM, grace);
  if (absl::Status s = cluster.StartProcess(*role, index, {words.begin() + 3, words.end()});
      !s.ok()) {
    return s;
  }
  return WriteDescription(cluster);
}

// Reports every process that exited since the last call, and leaves it out
// of the description. It is not restarted: the scripts that kill one on
// purpose want it to stay dead.
void ReportExits(LocalCluster& cluster, std::set<pid_t>& reported) {
  bool exited = false;
  for (const auto& [role, index] : cluster.AllProcesses()) {
    Process* process = cluster.process(role, index);
    if (process == nullptr || process->Running() || !reported.insert(process->pid()).second) {
      continue;
    }
    std::cerr << ProcessName(role, index) << " (pid " << process->pid() << ") exited with status "
              << ShellExitCode(*process->exit_status()) << std::endl;
    exited = true;
  }
  if (!exited) return;
  if (absl::Status s = WriteDescription(cluster); !s.ok()) {
    std::cerr << "craft-local-cluster: " << s.message() << std::endl;
  }
}

// Stops every process and reports how each ended; returns the exit status.
int StopAll(LocalCluster& cluster, absl::Duration grace) {
  int status = 0;
  for (const ProcessExit& exit : cluster.Shutdown(grace)) {
    const int code = ShellExitCode(exit.status);
    if (exit.before_shutdown) {
      std::cerr << exit.name << ": had exited with status " << code << std::endl;
      continue;
    }
    if (exit.killed) {
      std::cerr << exit.name << " (pid " << exit.pid << ") did not exit "
                << absl::FormatDuration(grace) << " after SIGTERM: SIGKILL" << std::endl;
    }
    std::cerr << exit.name << ": exit status " << code << " after "
              << absl::ToInt64Milliseconds(exit.took) << " ms" << std::endl;
    if (exit.killed || code != 0) status = 1;
  }
  return status;
}

const char* SignalName(uint32_t signal) {
  switch (signal) {
    case SIGTERM:
      return "SIGTERM";
    case SIGINT:
      return "SIGINT";
    case SIGHUP:
      return "SIGHUP";
  }
  return "a signal";
}

// Reads what stdin has and runs every complete line; false at its end.
bool ReadCommands(LocalCluster& cluster, std::string& pending, absl::Duration grace) {
  char buffer[4096];
  const ssize_t n = ::read(STDIN_FILENO, buffer, sizeof(buffer));
  if (n <= 0) return n < 0 && errno == EINTR;
  pending.append(buffer, n);
  for (size_t end; (end = pending.find('\n')) != std::string::npos; pending.erase(0, end + 1)) {
    const std::string line = pending.substr(0, end);
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const absl::Status result = RunCommand(cluster, line, grace);
    std::cout << (result.ok() ? "ok" : absl::StrCat("error: ", result.ToString())) << std::endl;
  }
  return true;
}

int Run(const std::vector<char*>& positional, int signals) {
  absl::StatusOr<ClusterOptions> options = OptionsFromFlags(positional);
  if (!options.ok()) {
    std::cerr << "craft-local-cluster: " << options.status().message() << std::endl;
    return 2;
  }
  const absl::Duration grace = absl::Seconds(absl::GetFlag(FLAGS_stop_timeout_s));
  LocalCluster cluster(*std::move(options));
  std::remove(DescriptionPath(cluster).c_str());  // a waiting script must not read a stale one
  if (absl::Status s = cluster.Start(); !s.ok()) {
    std::cerr << "craft-local-cluster: the cluster did not start: " << s.message() << std::endl;
    StopAll(cluster, grace);
    return 1;
  }
  if (absl::Status s = WriteDescription(cluster); !s.ok()) {
    std::cerr << "craft-local-cluster: " << s.message() << std::endl;
    StopAll(cluster, grace);
    return 1;
  }
  std::cerr << "up: " << cluster.options().planners << " planner(s), "
            << cluster.options().num_nodes << " agent(s), " << cluster.num_gpus()
            << " worker(s); files in " << cluster.dir() << std::endl;
  std::cout << DescriptionPath(cluster) << std::endl;

  bool read_stdin = absl::GetFlag(FLAGS_commands);
  std::string pending;
  std::set<pid_t> reported;
  while (true) {
    pollfd fds[2] = {{signals, POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
    const int ready = ::poll(fds, read_stdin ? 2 : 1, /*timeout_ms=*/100);
    if (ready > 0 && (fds[0].revents & POLLIN) != 0) {
      signalfd_siginfo info{};
      (void)::read(signals, &info, sizeof(info));
      std::cerr << SignalName(info.ssi_signo) << ": stopping every process" << std::endl;
      return StopAll(cluster, grace);
    }
    if (read_stdin && ready > 0 && (fds[1].revents & (POLLIN | POLLHUP)) != 0) {
      read_stdin = ReadCommands(cluster, pending, grace);
    }
    ReportExits(cluster, reported);
  }
}

}  // namespace
}  // namespace craft::local_cluster

int main(int argc, char** argv) {
  // SIGHUP too: a closed terminal must not leave the cluster running.
  const sigset_t shutdown = craft::BlockShutdownSignals({SIGHUP});
  const int signals = ::signalfd(-1, &shutdown, SFD_CLOEXEC);
  // Answers to commands go to a pipe whose reader may be gone.
  ::signal(SIGPIPE, SIG_IGN);
  const std::vector<char*> positional = craft::ParseFlags(argc, argv, craft::local_cluster::kUsage);
  return craft::local_cluster::Run(positional, signals);
}
