// The worker: one process per GPU. It serves a layout version's experts, routes
// and counts the tokens of every window, reports windows to its node agent,
// and applies new layouts in two phases (proto/README.md): Prepare stages and
// verifies the new version's weights, Commit flips to it at the next window
// boundary, Abort drops it. Which command may do what is VersionRules'
// (version_rules.h); counting and reporting a window is WindowReporter's
// (window_reporter.h); this class runs them on its threads against the
// backend and the agent link.
//
// Threads:
//  - the window loop: at every boundary of --window_ms (aligned on wall time,
//    window id = floor(unix_ms / window_ms), so all workers' windows line up)
//    it applies a committed flip, then at the window's end reports the
//    window with the table that served it. Flips happen only here, between
//    windows, so tokens are never routed with a table that does not match
//    the weights;
//  - the control thread: runs commands in arrival order; a Prepare stages
//    (fetches and copies) here, never on a gRPC thread;
//  - gRPC threads: the ExpertTransfer server and the agent stream
//    (AgentLink), whose commands HandleCommand only queues.
//
// Thread-safety: HandleCommand and the accessors are thread-safe. Start and
// Shutdown must be called from one thread.
#ifndef CRAFT_GPU_WORKER_WORKER_H_
#define CRAFT_GPU_WORKER_WORKER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/transport_security.h"
#include "craft/v1/worker.pb.h"
#include "gpu_worker/agent_link.h"
#include "gpu_worker/backend.h"
#include "gpu_worker/layout_state.h"
#include "gpu_worker/stager.h"
#include "gpu_worker/traffic.h"
#include "gpu_worker/transfer_permits.h"
#include "gpu_worker/transfer_service.h"
#include "gpu_worker/version_rules.h"
#include "gpu_worker/window_reporter.h"
#include "gpu_worker/worker_shape.h"
#include "grpcpp/server.h"

namespace craft::gpu_worker {

// The largest message the ExpertTransfer port reads (its requests are tiny).
inline constexpr int kMaxTransferRequestBytes = 16 << 10;

struct WorkerOptions {
  WorkerShape shape;
  std::string agent;                            // "unix:PATH"; "" runs without an agent
  std::string transfer_listen = "127.0.0.1:0";  // host:port of the ExpertTransfer server
  // Mutual TLS on the transfer port (the node's certificate), or --insecure.
  TransportSecurity security;
  // Host in the advertised transfer endpoint; "" = the listen host, or this
  // machine's hostname when that is a wildcard.
  std::string transfer_advertise_host;
  int64_t transfer_chunk_bytes = 64 << 10;
  absl::Duration window = absl::Seconds(1);
  absl::Duration fetch_timeout = absl::Seconds(5);
  // Re-verify every serving slot's checksum this often (0: only at start and
  // after every flip).
  absl::Duration verify_interval = absl::ZeroDuration();
  bool log_windows = false;  // log every window's per-layer totals
  std::string ready_file;    // written once the transfer server listens
  std::string ready_extra;   // more "key=value\n" lines for the ready file
  AgentLink::Options link;   // `target` is taken from `agent`
};

class Worker {
 public:
  // Loads the initial layout (version "0.0", planner::ContiguousLayout) into
  // the backend's store and verifies it. INVALID_ARGUMENT for bad options or a
  // traffic generator of another shape. `clock` is not owned.
  static absl::StatusOr<std::unique_ptr<Worker>> Create(WorkerOptions options,
                                                        std::unique_ptr<Backend> backend,
                                                        TrafficGenerator traffic, Clock* clock);
  ~Worker();  // Shutdown()

  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Starts the transfer server (then writes the ready file), the window loop,
  // the control thread and the agent link. UNAVAILABLE when the transfer
  // server cannot listen.
  absl::Status Start();
  // Stops everything (staging is cancelled, the agent stream ends). Idempotent.
  void Shutdown();

  // Valid after Start().
  const std::string& transfer_endpoint() const { return transfer_endpoint_; }
  int transfer_port() const { return transfer_port_; }
  std::string serving_version() const;

  // Queues a command from the agent; never blocks (called on gRPC threads).
  void HandleCommand(const craft::v1::WorkerCommand& command);

  // Cumulative counts since Create, plus current values (metrics); the
  // window counts are the WindowReporter's.
  struct Stats : WindowReporter::Stats {
    std::string serving_version;
    int64_t serving_slots = 0;    // this GPU's slots of the serving layout, over layers
    int64_t staged_slots = 0;     // of a staged version waiting for commit (0: none)
    int64_t prepares_ready = 0;   // stagings that finished (READY)
    int64_t prepares_failed = 0;  // prepares answered FAILED
    int64_t fetched_bytes = 0;    // expert bytes received from peers while staging
    int64_t fetched_experts = 0;
    double staging_seconds = 0;  // time spent in finished stagings
    int64_t flips = 0;
    int64_t drops = 0;  // staged versions dropped by an Abort
    AgentLink::Stats link;
  };
  Stats stats() const;

 private:
  using Staged = VersionRules::Staged;

  Worker(WorkerOptions options, std::unique_ptr<Backend> backend, TrafficGenerator traffic,
         Clock* clock, LayoutState initial);

  absl::Status StartTransferServer();
  craft::v1::WorkerHello Hello() const;
  // Sends a fresh hello when the staging headroom changed since the last.
  void MaybeAnnounceHeadroom() ABSL_LOCKS_EXCLUDED(mu_);

  // Control thread.
  void ControlLoop();
  void Prepare(const craft::v1::Prepare& prepare);
  // Decides what a Prepare needs (VersionRules::ClaimStaging): an answer at
  // once (READY with the result, or an error for FAILED), or nullopt after
  // marking the version as staging.
  absl::StatusOr<std::optional<StageResult>> ClaimStagingLocked(const craft::v1::Prepare& prepare)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Keeps a staged version (unless cancelled meanwhile) and answers.
  void FinishStaging(const std::string& version, absl::StatusOr<Staged> staged)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<Staged> Stage(const craft::v1::Prepare& prepare, const LayoutState& serving);
  void Commit(const std::string& version);
  void Abort(const std::string& version);
  bool StoppingOrCommandQueued() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool StoppingOrNoFlipPending() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Window loop.
  void WindowLoop();
  // Sleeps until unix time `ms`; false when shutting down.
  bool SleepUntilUnixMs(int64_t ms);
  // Applies a pending flip, then returns what serves the next window.
  LayoutState FlipIfCommitted();
  // True while an agent resync runs: windows are neither routed nor reported.
  bool HeldForResync() const ABSL_LOCKS_EXCLUDED(mu_);
  // Checks every serving slot against its expected checksum and logs
  // "verify ok version=V slots=N" or what failed.
  absl::Status Verify(const LayoutState& state) const;

  // Sends a WorkerStatus to the agent (and logs it). Must not hold mu_.
  void Report(const std::string& version, craft::v1::WorkerState state,
              const std::string& error = "", const StageResult* result = nullptr)
      ABSL_LOCKS_EXCLUDED(mu_);
  void SendToAgent(craft::v1::WorkerMessage message) ABSL_LOCKS_EXCLUDED(mu_);

  const WorkerOptions options_;
  const std::unique_ptr<Backend> backend_;
  Clock* const clock_;
  BackendStaging backend_staging_;
  TransferPermits permits_;  // what transfer_service_ may serve
  ExpertTransferService transfer_service_;
  std::unique_ptr<grpc::Server> transfer_server_;
  std::string transfer_endpoint_;
  int transfer_port_ = 0;
  std::unique_ptr<AgentLink> link_;
  WindowReporter windows_;  // the window loop's
  std::thread control_thread_;
  std::thread window_thread_;
  // Set to stop the staging in progress (an Abort, a newer Prepare, shutdown).
  std::atomic<bool> cancel_staging_{false};

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  VersionRules versions_ ABSL_GUARDED_BY(mu_);
  // The staging headroom the agent was last told in a hello update (the
  // first hello of every stream carries the current one anyway).
  std::optional<int64_t> announced_headroom_ ABSL_GUARDED_BY(mu_);
  std::deque<craft::v1::WorkerCommand> commands_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);  // the cumulative counts
};

}  // namespace craft::gpu_worker

#endif  // CRAFT_GPU_WORKER_WORKER_H_
