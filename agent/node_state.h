// The node agent's protocol state (proto/README.md), free of gRPC: the node's
// attached workers (WorkerRegistry), the two-phase apply relayed between the
// planner and them with what survives a restart (ApplyRelay), and the load
// windows forwarded to the planner (LoadForwarder), behind one lock. The gRPC
// adapters (WorkerService, PlannerLink) turn stream events into calls here;
// everything it says goes out through PlannerChannel and WorkerChannel, and
// time comes from an injected Clock, so tests drive it with fakes and a
// FakeClock.
//
//   MemoryStateStore store;
//   auto node = NodeState::Create(options, Clock::Real(), &store, &planner_link);
//   (*node)->AttachWorker(hello, &worker_stream);    // worker stream adapter
//   (*node)->OnPlannerMessage(message);              // planner stream adapter
//   (*node)->Poll();                                 // every few ms: timeouts, load flushes
//
// The rules are the parts' own: apply_relay.h (the apply lifecycle, recovery,
// the model shape), load_forwarder.h (window checks, batching, buffering).
//
// Thread-safety: thread-safe; every public method takes the one internal lock.
// Channels are called with that lock held (see channels.h). State-file writes
// (rare: a new epoch, a commit) happen under the lock too.
#ifndef CRAFT_AGENT_NODE_STATE_H_
#define CRAFT_AGENT_NODE_STATE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "agent/apply_relay.h"
#include "agent/channels.h"
#include "agent/load_forwarder.h"
#include "agent/state_file.h"
#include "agent/worker_registry.h"
#include "common/clock.h"
#include "craft/v1/agent.pb.h"
#include "craft/v1/worker.pb.h"

namespace craft::agent {

class NodeState {
 public:
  // The parts' options side by side, so that callers set them in one place.
  struct Options : ApplyRelay::Options, LoadForwarder::Options {
    std::vector<int> gpus;  // this node's global ranks

    absl::Status Validate() const;
  };

  // The parts' cumulative counts, plus a few current values (metrics).
  struct Stats : ApplyRelay::Stats, LoadForwarder::Stats {
    bool planner_connected = false;
    std::vector<int> attached_gpus;
  };

  // Loads what `store` saved. INVALID_ARGUMENT on bad options; the store's
  // error when it cannot be read. The pointers must outlive the NodeState.
  static absl::StatusOr<std::unique_ptr<NodeState>> Create(Options options, Clock* clock,
                                                           StateStore* store,
                                                           PlannerChannel* planner);

  // ---- Workers (the UDS stream adapters): see ApplyRelay, and
  // LoadForwarder::OnWindow for windows. An error ends the worker's stream.
  absl::Status AttachWorker(const craft::v1::WorkerHello& hello, WorkerChannel* channel);
  absl::Status UpdateWorker(const craft::v1::WorkerHello& hello, WorkerChannel* channel);
  void DetachWorker(int gpu, WorkerChannel* channel);
  absl::Status OnWorkerWindow(int gpu, const craft::v1::GpuWindow& window);
  void OnWorkerStatus(int gpu, const craft::v1::WorkerStatus& status);
  bool AllWorkersAttached() const;

  // ---- Planner (the planner stream adapter): see ApplyRelay. The hello
  // going out also releases the loads buffered while the planner was away.
  craft::v1::AgentHello MakeHello() const;
  void OnPlannerConnected();
  void OnPlannerDisconnected();
  void OnPlannerMessage(const craft::v1::PlannerMessage& message);

  // ---- Time: apply deadlines, resync retries and load flushes. Call every
  // few milliseconds.
  void Poll();

  // ---- Observers: see ApplyRelay.
  std::string committed_version() const;
  int64_t highest_epoch() const;
  bool apply_pending() const;
  std::optional<craft::v1::ModelShape> model() const;
  Stats stats() const;

 private:
  NodeState(const Options& options, Clock* clock, PlannerChannel* planner,
            std::unique_ptr<WorkerRegistry> workers, std::unique_ptr<ApplyRelay> relay);

  mutable absl::Mutex mu_;
  // Both parts hold pointers to it; the registry itself is not thread-safe.
  const std::unique_ptr<WorkerRegistry> workers_ ABSL_PT_GUARDED_BY(mu_);
  const std::unique_ptr<ApplyRelay> relay_ ABSL_PT_GUARDED_BY(mu_);
  LoadForwarder loads_ ABSL_GUARDED_BY(mu_);
};

}  // namespace craft::agent

#endif  // CRAFT_AGENT_NODE_STATE_H_
