// One simulated node agent: an AgentGateway.Connect stream driven by a gRPC
// callback reactor (no thread of its own), speaking the agent side of
// proto/README.md without workers behind it.
//
//   hello (every GPU serving "0.0")  ->  Welcome: nothing
//   SendWindow(id) -> one NodeLoad: a GpuWindow per GPU, the counts of the
//                     slots it serves, jittered around SlotLoads
//   Prepare  -> Ack{PREPARED} after `stage_delay` (BAD_LAYOUT Nack if unusable,
//               or a layout delta from another version than the served one)
//   Commit   -> serve the prepared layout; Ack{COMMITTED}
//   Abort    -> drop it; Ack{ABORTED}
//
// Every Prepare, Commit and Abort is reported to an ApplyRecorder. At most
// one write is in flight; answers queue behind it, loads too but bounded: a
// load that finds `max_queued_loads` waiting drops the oldest (counted).
//
//   FakeAgent agent(options, env);
//   agent.Start(stub);
//   agent.SendWindow(window_id);  // from one thread, every window
//   agent.Cancel();
//   streams_done.Wait();  // env.streams_done: every agent's stream is over
//   grpc::Status status = agent.status();
//
// Thread-safety: SendWindow must be called from one thread at a time; the
// other methods are thread-safe. The agent must outlive its stream (it
// decrements env.streams_done as its very last action) and every task it
// posted to the TimerQueue.
#ifndef CRAFT_TOOLS_LOADGEN_FAKE_AGENT_H_
#define CRAFT_TOOLS_LOADGEN_FAKE_AGENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/grpc/stream_writer.h"
#include "craft/v1/agent.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "tools/loadgen/apply_recorder.h"
#include "tools/loadgen/slot_loads.h"
#include "tools/loadgen/timer_queue.h"

namespace craft::loadgen {

struct FakeAgentOptions {
  std::string node;
  std::string group;      // the placement group named in the hello; "": the only one
  std::vector<int> gpus;  // the group's ranks
  craft::v1::ModelShape model;
  int window_ms = 1000;
  double jitter = 0.05;  // relative, per count and window
  absl::Duration stage_delay = absl::ZeroDuration();
  int max_queued_loads = 2;
  uint64_t seed = 1;
};

// Shared by every agent; must outlive them.
struct FakeAgentEnv {
  SlotLoadCache* slot_loads = nullptr;
  ApplyRecorder* recorder = nullptr;
  TimerQueue* timers = nullptr;
  absl::BlockingCounter* streams_done = nullptr;  // decremented once per agent
  std::shared_ptr<const SlotLoads> initial;       // under the initial layout "0.0"
};

struct FakeAgentCounters {
  int64_t gpu_windows_sent = 0;  // in NodeLoads the stream accepted
  int64_t loads_dropped = 0;     // NodeLoads dropped before sending (backlog)
  int64_t bad_layouts = 0;       // Prepares answered with Nack{BAD_LAYOUT}
};

class FakeAgent final
    : public grpc::ClientBidiReactor<craft::v1::AgentMessage, craft::v1::PlannerMessage> {
 public:
  FakeAgent(FakeAgentOptions options, FakeAgentEnv env);

  // Opens the stream and sends the hello. Once.
  void Start(craft::v1::AgentGateway::Stub* stub) ABSL_LOCKS_EXCLUDED(mu_);
  // Queues the NodeLoad of window `window_id` (start = window_id x window_ms).
  void SendWindow(int64_t window_id) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends the stream (CANCELLED).
  void Cancel();
  // The stream's final status, once it is over (OK before).
  grpc::Status status() const ABSL_LOCKS_EXCLUDED(mu_);

  // The planner's Welcome arrived on this stream.
  bool welcomed() const ABSL_LOCKS_EXCLUDED(mu_);
  // The stream ended or is ending (reads or a write failed).
  bool closed() const ABSL_LOCKS_EXCLUDED(mu_);
  // Nothing is queued or being written.
  bool idle() const ABSL_LOCKS_EXCLUDED(mu_);
  FakeAgentCounters counters() const ABSL_LOCKS_EXCLUDED(mu_);

  // Reactions (gRPC's threads).
  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  void Handle(const craft::v1::PlannerMessage& message) ABSL_LOCKS_EXCLUDED(mu_);
  void HandlePrepare(const craft::v1::PlannerMessage& message) ABSL_LOCKS_EXCLUDED(mu_);
  // What the Prepare's layout routes to this node's slots; a delta must be
  // from the version this node serves.
  absl::StatusOr<std::shared_ptr<const SlotLoads>> PreparedSlots(const craft::v1::Prepare& prepare)
      ABSL_LOCKS_EXCLUDED(mu_);
  void Answer(const std::string& nonce, const std::string& version, craft::v1::AckPhase phase);
  // Queues `message`; starts the write if none is in flight.
  void Enqueue(craft::v1::AgentMessage message) ABSL_LOCKS_EXCLUDED(mu_);
  // The writer's on_written.
  void OnWritten(const craft::v1::AgentMessage& message) ABSL_LOCKS_EXCLUDED(mu_);

  const FakeAgentOptions options_;
  const FakeAgentEnv env_;
  grpc::ClientContext context_;
  craft::v1::PlannerMessage incoming_;  // owned by the one pending read
  FastRng rng_;                         // SendWindow's

  mutable absl::Mutex mu_;
  std::string serving_version_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const SlotLoads> serving_ ABSL_GUARDED_BY(mu_);
  std::string prepared_version_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const SlotLoads> prepared_ ABSL_GUARDED_BY(mu_);
  bool welcomed_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  FakeAgentCounters counters_ ABSL_GUARDED_BY(mu_);  // but loads_dropped: the writer's

  // Closed when reads end or a write fails. Lock order: mu_ -> the writer's.
  StreamWriter<craft::v1::AgentMessage> writer_;
};

}  // namespace craft::loadgen

#endif  // CRAFT_TOOLS_LOADGEN_FAKE_AGENT_H_
