// craft-agent: the node agent. Serves NodeAgent.Attach to the node's workers
// on a Unix socket and keeps one AgentGateway.Connect stream to the planner.
//
//   craft-agent --node node-0 --gpus 0,1,2,3 --socket /run/craft/agent.sock
//               --planner planner:7070 --state_file /var/lib/craft/agent.state
//               (--tls_cert PEM --tls_key PEM --tls_ca PEM | --insecure)
//               [--metrics_listen 0.0.0.0:9465] [--health_listen 0.0.0.0:9466]
//
// SIGTERM/SIGINT: close the planner stream, end worker streams UNAVAILABLE,
// shut the server down, remove the socket file, exit 0.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "agent/agent.h"
#include "agent/agent_metrics.h"
#include "common/clock.h"
#include "common/flags.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/names.h"
#include "common/shutdown_signals.h"
#include "common/transport_flags.h"

ABSL_FLAG(std::string, node, "", "this node's name (required)");
ABSL_FLAG(std::string, gpus, "", "this node's global GPU ranks, e.g. 0,1,2,3 (required)");
ABSL_FLAG(std::string, socket, "", "Unix socket path workers attach on (required)");
ABSL_FLAG(std::string, socket_mode, "0660", "the socket file's mode (octal permission bits)");
ABSL_FLAG(int64_t, socket_allowed_uid, -1,
          "workers whose effective uid is this may attach (SO_PEERCRED; so may those of "
          "--socket_allowed_gid); -1: the agent's own uid");
ABSL_FLAG(int64_t, socket_allowed_gid, -1,
          "workers whose effective gid is this may attach; -1: the agent's own gid");
ABSL_FLAG(std::string, planner, "", "the planner's AgentGateway address host:port (required)");
ABSL_FLAG(std::string, planner_name, "craft-planner",
          "the DNS name the planner's certificate must carry (mutual TLS)");
ABSL_FLAG(std::string, group, "",
          "the placement group this node's GPUs serve, as the planner's config names it; "
          "empty: the planner's only group");
ABSL_FLAG(int32_t, num_layers, 0,
          "if > 0, workers must report this many MoE layers; 0: as the planner says (its Welcome, "
          "kept in --state_file)");
ABSL_FLAG(int32_t, num_experts, 0,
          "if > 0, workers must report this many experts per layer; 0: as the planner says");
ABSL_FLAG(int32_t, top_k, 0, "if > 0, workers must report this top-k; 0: as the planner says");
ABSL_FLAG(std::string, state_file, "",
          "where the highest epoch and committed version persist (default: memory only)");
ABSL_FLAG(int64_t, worker_wait_ms, 10'000,
          "how long to wait for every --gpus worker before the first planner connect");
ABSL_FLAG(std::string, ready_file, "",
          "written atomically with \"socket=<path>\" once the socket listens");
ABSL_FLAG(int64_t, window_flush_ms, 200,
          "send a window id's NodeLoad this long after its first GPU window at the latest");
ABSL_FLAG(int64_t, apply_timeout_ms, 60'000,
          "agent-side apply phase timeout when a Prepare carries no timeout_ms");
ABSL_FLAG(int32_t, max_buffered_loads, 16, "NodeLoads kept while the planner is away");
ABSL_FLAG(std::string, health_listen, "",
          "serve the gRPC health service (plaintext) on this host:port for Kubernetes probes, "
          "e.g. 0.0.0.0:9466; empty: none");
ABSL_FLAG(std::string, metrics_listen, "",
          "serve Prometheus metrics on GET http://<this address>/metrics, e.g. 0.0.0.0:9465 "
          "(port 0 picks one; the ready file gets \"metrics_port=<port>\"); empty: no metrics");

namespace craft::agent {
namespace {

absl::StatusOr<std::vector<int>> ParseGpus(const std::string& text) {
  std::vector<int> gpus;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    int gpu = 0;
    if (!absl::SimpleAtoi(part, &gpu) || gpu < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--gpus: '", part, "' is not a non-negative rank"));
    }
    gpus.push_back(gpu);
  }
  if (gpus.empty()) return absl::InvalidArgumentError("--gpus is required, e.g. --gpus 0,1,2,3");
  return gpus;
}

absl::StatusOr<mode_t> ParseSocketMode(const std::string& text) {
  mode_t mode = 0;
  for (char c : text) mode = mode * 8 + static_cast<mode_t>(c - '0');
  if (text.empty() || text.size() > 4 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '7'; }) ||
      mode > 0777) {
    return absl::InvalidArgumentError(
        absl::StrCat("--socket_mode: '", text, "' is not octal permission bits, e.g. 0660"));
  }
  return mode;
}

// -1: the agent's own id; else an id (uid_t and gid_t are 32 bits here).
absl::StatusOr<uint32_t> ParseId(const char* flag, int64_t value, uint32_t own) {
  if (value == -1) return own;
  if (value < 0 || value >= int64_t{0xffffffff}) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", value, " is not an id"));
  }
  return static_cast<uint32_t>(value);
}

absl::StatusOr<AgentOptions> OptionsFromFlags() {
  AgentOptions options;
  options.node.node = absl::GetFlag(FLAGS_node);
  if (options.node.node.empty()) return absl::InvalidArgumentError("--node is required");
  absl::StatusOr<std::vector<int>> gpus = ParseGpus(absl::GetFlag(FLAGS_gpus));
  if (!gpus.ok()) return gpus.status();
  options.node.gpus = *std::move(gpus);
  options.node.model_check = {absl::GetFlag(FLAGS_num_layers), absl::GetFlag(FLAGS_num_experts),
                              absl::GetFlag(FLAGS_top_k)};
  options.node.window_flush_delay = absl::Milliseconds(absl::GetFlag(FLAGS_window_flush_ms));
  options.node.default_apply_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_apply_timeout_ms));
  if (absl::GetFlag(FLAGS_max_buffered_loads) < 0) {
    return absl::InvalidArgumentError("--max_buffered_loads must be >= 0");
  }
  options.node.max_buffered_loads = static_cast<size_t>(absl::GetFlag(FLAGS_max_buffered_loads));
  if (absl::Status s = options.node.Validate(); !s.ok()) return s;
  options.socket_path = absl::GetFlag(FLAGS_socket);
  if (options.socket_path.empty()) return absl::InvalidArgumentError("--socket is required");
  absl::StatusOr<mode_t> mode = ParseSocketMode(absl::GetFlag(FLAGS_socket_mode));
  if (!mode.ok()) return mode.status();
  options.socket_mode = *mode;
  absl::StatusOr<uint32_t> uid =
      ParseId("socket_allowed_uid", absl::GetFlag(FLAGS_socket_allowed_uid), ::geteuid());
  if (!uid.ok()) return uid.status();
  absl::StatusOr<uint32_t> gid =
      ParseId("socket_allowed_gid", absl::GetFlag(FLAGS_socket_allowed_gid), ::getegid());
  if (!gid.ok()) return gid.status();
  options.socket_peers = PeerPolicy{*uid, *gid};
  options.planner_target = absl::GetFlag(FLAGS_planner);
  if (options.planner_target.empty()) {
    return absl::InvalidArgumentError("--planner is required (host:port)");
  }
  absl::StatusOr<TransportSecurity> security = TransportSecurityFromFlags("craft-agent");
  if (!security.ok()) return security.status();
  options.security = *std::move(security);
  options.planner_name = absl::GetFlag(FLAGS_planner_name);
  options.group = absl::GetFlag(FLAGS_group);
  if (!options.group.empty() && !IsValidName(options.group)) {
    return absl::InvalidArgumentError(absl::StrCat("--group: '", options.group, "' is not a name"));
  }
  options.state_file = absl::GetFlag(FLAGS_state_file);
  options.ready_file = absl::GetFlag(FLAGS_ready_file);
  options.health_listen = absl::GetFlag(FLAGS_health_listen);
  options.seed = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())) ^
                 (static_cast<uint64_t>(::getpid()) << 32);
  return options;
}

int Run(absl::Notification* shutdown) {
  absl::StatusOr<AgentOptions> options = OptionsFromFlags();
  if (!options.ok()) {
    CRAFT_LOG(ERROR) << options.status();
    return 2;
  }
  const int64_t wait_ms = absl::GetFlag(FLAGS_worker_wait_ms);
  const size_t expected = options->node.gpus.size();
  // Metrics first: a port that cannot be bound fails the start.
  auto metrics = std::make_shared<AgentMetrics>(options->node.gpus);
  std::unique_ptr<metrics::MetricsServer> metrics_server;
  if (const std::string listen = absl::GetFlag(FLAGS_metrics_listen); !listen.empty()) {
    absl::StatusOr<std::unique_ptr<metrics::MetricsServer>> started =
        metrics::MetricsServer::Start(listen);
    if (!started.ok()) {
      CRAFT_LOG(ERROR) << started.status();
      return 1;
    }
    metrics_server = *std::move(started);
    metrics_server->Register(metrics);
    options->ready_extra = metrics::ReadyFileLine(metrics_server.get());
  }
  absl::StatusOr<std::unique_ptr<Agent>> agent = Agent::Start(*std::move(options), Clock::Real());
  if (!agent.ok()) {
    CRAFT_LOG(ERROR) << "cannot start the agent: " << agent.status();
    return 1;
  }
  metrics->Watch((*agent)->node(), (*agent)->listener());
  if (!(*agent)->node()->model().has_value()) {
    // No worker can attach before the planner's Welcome states the model.
    CRAFT_LOG(INFO) << "connecting to the planner first: it states the model shape";
  } else if (!(*agent)->WaitForWorkers(absl::Now() + absl::Milliseconds(wait_ms), shutdown) &&
             !shutdown->HasBeenNotified()) {
    CRAFT_LOG(WARNING) << "not every one of the " << expected << " workers attached within "
                       << wait_ms << " ms; connecting to the planner anyway";
  }
  if (!shutdown->HasBeenNotified()) (*agent)->ConnectPlanner();
  while (!shutdown->WaitForNotificationWithTimeout(absl::Milliseconds(20))) (*agent)->Poll();
  (*agent)->Shutdown();
  metrics->Watch(nullptr);  // before the agent goes away
  return 0;
}

}  // namespace
}  // namespace craft::agent

int main(int argc, char** argv) {
  craft::ParseFlags(
      argc, argv,
      "craft-agent: the node agent\n\n"
      "usage: craft-agent --node NAME --gpus 0,1,2,3 --socket PATH --planner HOST:PORT\n"
      "                   (--tls_cert PEM --tls_key PEM --tls_ca PEM | --insecure) "
      "[--state_file PATH]");

  // Block the signals before any thread exists (gRPC's included), so only
  // the sigwait thread ever sees them.
  const sigset_t signals = craft::BlockShutdownSignals();
  ::signal(SIGPIPE, SIG_IGN);

  // Only this thread notifies `shutdown` (Notify may run once).
  absl::Notification shutdown;
  std::atomic<bool> exiting{false};
  std::thread signal_thread([&] {
    int signal_number = 0;
    sigwait(&signals, &signal_number);
    if (!exiting.load()) CRAFT_LOG(INFO) << "signal " << signal_number << ": shutting down";
    shutdown.Notify();
  });

  const int code = craft::agent::Run(&shutdown);
  if (!shutdown.HasBeenNotified()) {
    exiting.store(true);
    pthread_kill(signal_thread.native_handle(), SIGTERM);  // an error exit: wake the sigwait
  }
  signal_thread.join();
  return code;
}
