// craft-planner: the central planner service.
//
//   craft-planner --config deploy/planner.yaml (--tls_cert PEM --tls_key PEM --tls_ca PEM |
//   --insecure)
//                 [--state_path PATH] [--ready_file PATH]
//                 [--metrics_listen 0.0.0.0:9464] [--planner_threads N]
//                 [--listen_address HOST:PORT] [--advertise_address HOST:PORT]
//
// With the config's ha section it runs as one replica of a highly available
// group (server/ha_planner.h): --advertise_address is then required.
// Exits 0 after a graceful drain on SIGTERM or SIGINT; non-zero when the
// configuration or the state cannot be read or the port cannot be bound.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/flags.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/shutdown_signals.h"
#include "common/transport_flags.h"
#include "server/config.h"
#include "server/ha_planner.h"
#include "server/planner_metrics.h"
#include "server/planner_server.h"

ABSL_FLAG(std::string, config, "", "planner YAML config (see deploy/planner.yaml)");
ABSL_FLAG(std::string, state_path, "", "overrides the config's state_path");
ABSL_FLAG(std::string, listen_address, "",
          "overrides the config's listen_address (replicas of one group share a config)");
ABSL_FLAG(
    std::string, ready_file, "",
    "once listening, atomically write \"grpc_port=<port>\\n\" (and \"metrics_port=<port>\\n\" "
    "when metrics are served) to this file");
ABSL_FLAG(std::string, metrics_listen, "",
          "serve Prometheus metrics on GET http://<this address>/metrics, e.g. 0.0.0.0:9464 "
          "(port 0 picks one); empty: no metrics");

ABSL_FLAG(std::string, advertise_address, "",
          "high availability (the config's ha section): how agents and clients reach this "
          "replica, host:port; followers send them to the leader's");

ABSL_FLAG(int, planner_threads, 0,
          "threads for a re-plan's per-layer work (benefit curves, packing); 0: every core. "
          "Plans are the same on any count");

namespace craft::server {
namespace {

// Blocks until SIGTERM or SIGINT (blocked by BlockShutdownSignals).
void WaitForShutdownSignal(const sigset_t& signals) {
  int signal_number = 0;
  while (sigwait(&signals, &signal_number) != 0) {
  }
  CRAFT_LOG(INFO) << "received " << (signal_number == SIGTERM ? "SIGTERM" : "SIGINT");
}

// Writes --ready_file, if set, for a server listening on `port`.
absl::Status WriteReadyFile(int port, const metrics::MetricsServer* metrics_server) {
  const std::string ready = absl::GetFlag(FLAGS_ready_file);
  if (ready.empty()) return absl::OkStatus();
  return ::craft::WriteFileAtomically(
      ready, absl::StrCat("grpc_port=", port, "\n", metrics::ReadyFileLine(metrics_server)));
}

// One replica of a highly available group: follows and leads (HaPlanner)
// until SIGTERM or SIGINT, which a thread of its own waits for.
// The metrics read every group's coordinator and load store at scrape time.
void WatchGroups(PlannerMetrics& metrics, PlannerServer* server) {
  for (const std::unique_ptr<GroupStack>& group : server->groups().all()) {
    metrics.Watch(group->name(), group->coordinator.get(), group->load_store.get());
  }
}
void UnwatchGroups(PlannerMetrics& metrics, const PlannerServer& server) {
  for (const std::unique_ptr<GroupStack>& group : server.groups().all()) {
    metrics.Watch(group->name(), nullptr, nullptr);
  }
}

int RunHighlyAvailable(const PlannerConfig& config, const ServerOptions& options,
                       const std::shared_ptr<PlannerMetrics>& metrics,
                       metrics::MetricsServer* metrics_server, const sigset_t& signals) {
  const std::string advertise = absl::GetFlag(FLAGS_advertise_address);
  if (advertise.empty()) {
    CRAFT_LOG(ERROR) << "--advertise_address is required with the config's ha section "
                        "(how agents reach this replica, host:port)";
    return 2;
  }
  std::atomic<bool> ready_failed{false};
  bool ready_written = false;  // the Run thread only
  HaPlanner::Hooks hooks;
  hooks.on_started = [&](PlannerServer* server, bool leader) {
    WatchGroups(*metrics, server);
    if (ready_written) return;  // every role listens on the same port
    ready_written = true;
    if (absl::Status s = WriteReadyFile(server->port(), metrics_server); !s.ok()) {
      CRAFT_LOG(ERROR) << s.message();
      ready_failed.store(true);
    }
  };
  hooks.on_stopping = [&](PlannerServer* server) { UnwatchGroups(*metrics, *server); };
  HaPlanner replica(config, options, advertise, std::move(hooks));
  std::thread signal_waiter([&] {
    WaitForShutdownSignal(signals);
    replica.RequestStop();
  });
  const absl::Status ended = replica.Run();
  if (!ended.ok()) {
    CRAFT_LOG(ERROR) << ended.message();
    // Wake the signal thread so that it can be joined.
    pthread_kill(signal_waiter.native_handle(), SIGTERM);
  }
  signal_waiter.join();
  if (!ended.ok()) return 1;
  return ready_failed.load() ? 1 : 0;
}

int Run(const sigset_t& signals) {
  const std::string config_path = absl::GetFlag(FLAGS_config);
  if (config_path.empty()) {
    CRAFT_LOG(ERROR) << "--config is required";
    return 2;
  }
  absl::StatusOr<PlannerConfig> config = LoadConfigFile(config_path);
  if (!config.ok()) {
    CRAFT_LOG(ERROR) << config.status().message();
    return 2;
  }
  if (!absl::GetFlag(FLAGS_state_path).empty())
    config->state_path = absl::GetFlag(FLAGS_state_path);
  if (!absl::GetFlag(FLAGS_listen_address).empty())
    config->listen_address = absl::GetFlag(FLAGS_listen_address);
  if (config->state_path.empty() && !config->ha.enabled()) {
    CRAFT_LOG(ERROR) << "no state_path: set it in " << config_path << " or pass --state_path";
    return 2;
  }
  if (absl::GetFlag(FLAGS_planner_threads) < 0) {
    CRAFT_LOG(ERROR) << "--planner_threads must be >= 0 (0: every core), got "
                     << absl::GetFlag(FLAGS_planner_threads);
    return 2;
  }
  config->plan.threads = absl::GetFlag(FLAGS_planner_threads);

  // Metrics first: a port that cannot be bound fails the start, not a scrape.
  std::unique_ptr<metrics::MetricsServer> metrics_server;
  auto metrics = std::make_shared<PlannerMetrics>(EffectiveGroups(*config));
  if (const std::string listen = absl::GetFlag(FLAGS_metrics_listen); !listen.empty()) {
    absl::StatusOr<std::unique_ptr<metrics::MetricsServer>> started =
        metrics::MetricsServer::Start(listen);
    if (!started.ok()) {
      CRAFT_LOG(ERROR) << started.status().message();
      return 1;
    }
    metrics_server = *std::move(started);
    metrics_server->Register(metrics);
    CRAFT_LOG(INFO) << "metrics on port " << metrics_server->port();
  }

  ServerOptions options;
  options.observer = metrics.get();
  absl::StatusOr<TransportSecurity> security = TransportSecurityFromFlags("craft-planner");
  if (!security.ok()) {
    CRAFT_LOG(ERROR) << security.status().message();
    return 2;
  }
  options.security = *std::move(security);
  if (config->ha.enabled()) {
    return RunHighlyAvailable(*config, options, metrics, metrics_server.get(), signals);
  }
  absl::StatusOr<std::unique_ptr<PlannerServer>> server = PlannerServer::Start(*config, options);
  if (!server.ok()) {
    CRAFT_LOG(ERROR) << "cannot start: " << server.status().message();
    return 1;
  }
  WatchGroups(*metrics, server->get());
  int code = 0;
  if (absl::Status s = WriteReadyFile((*server)->port(), metrics_server.get()); !s.ok()) {
    CRAFT_LOG(ERROR) << s.message();
    code = 1;
  }
  if (code == 0) WaitForShutdownSignal(signals);
  (*server)->Shutdown();
  UnwatchGroups(*metrics, **server);  // before the components go away
  return code;
}

}  // namespace
}  // namespace craft::server

int main(int argc, char** argv) {
  const sigset_t signals = craft::BlockShutdownSignals();
  craft::ParseFlags(argc, argv,
                    "craft-planner: the central planner service\n\n"
                    "usage: craft-planner --config PATH (--tls_cert PEM --tls_key PEM --tls_ca PEM "
                    "| --insecure)\n"
                    "                     [--state_path PATH] [--ready_file PATH]\n"
                    "                     [--metrics_listen HOST:PORT] [--planner_threads N]\n"
                    "                     [--listen_address HOST:PORT] [--advertise_address "
                    "HOST:PORT]  (high availability: the config's ha section)");
  return craft::server::Run(signals);
}
