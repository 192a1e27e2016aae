// The worker's end of NodeAgent.Attach: one bidirectional stream to the node
// agent over its Unix socket, reopened after a Backoff (common/backoff.h: from
// min_backoff doubling to max_backoff, full jitter, reset after a stream that
// stayed open healthy_after) whenever it ends (the agent restarted, refused
// us, or is not up yet).
//
// Every stream starts with a fresh WorkerHello (from `hello`, so it carries
// the version served at that moment); then queued messages follow in order.
// Commands from the agent are handed to `on_command` on a gRPC callback
// thread: it must not block (the worker queues them).
//
// While no stream is open the worker keeps serving (static stability):
// GpuWindows queue up to Options::max_queued_windows (the oldest are dropped
// beyond) and are sent once a stream opens; WorkerStatus answers are dropped,
// because they answer commands of a stream that is gone (the agent reports
// the worker missing and the planner aborts; the next hello tells it what
// the worker serves).
//
//   AgentLink link(options, [&] { return MakeHello(); },
//                  [&](const WorkerCommand& c) { worker.HandleCommand(c); }, Clock::Real());
//   link.Start();
//   link.Send(message);
//   link.Stop();
//
// Thread-safety: Send, Start and Stop are thread-safe. Lock order: callers
// must not hold locks that `hello` or `on_command` take when calling Send.
#ifndef CRAFT_GPU_WORKER_AGENT_LINK_H_
#define CRAFT_GPU_WORKER_AGENT_LINK_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "craft/v1/worker.grpc.pb.h"

namespace craft::gpu_worker {

class AgentLink {
 public:
  struct Options {
    std::string target;  // "unix:/path/to/agent.sock"
    absl::Duration min_backoff = absl::Milliseconds(100);
    absl::Duration max_backoff = absl::Seconds(5);
    // A stream that stayed open this long resets the backoff to the minimum.
    absl::Duration healthy_after = absl::Seconds(10);
    size_t max_queued_windows = 64;
  };
  using HelloFn = std::function<craft::v1::WorkerHello()>;
  using CommandFn = std::function<void(const craft::v1::WorkerCommand&)>;

  AgentLink(Options options, HelloFn hello, CommandFn on_command, Clock* clock);
  ~AgentLink();  // Stop()

  AgentLink(const AgentLink&) = delete;
  AgentLink& operator=(const AgentLink&) = delete;

  // Starts the connection thread. Call once.
  void Start();
  // Ends the stream and the thread; Send() does nothing afterwards.
  void Stop();
  // Queues `message` for the agent (see the class comment for what happens
  // while no stream is open). Never blocks on the network.
  void Send(craft::v1::WorkerMessage message);

  struct Stats {
    bool attached = false;        // a stream is open and its hello went out
    int64_t attaches = 0;         // streams whose hello went out
    int64_t windows_dropped = 0;  // oldest windows dropped while no stream was open
  };
  Stats stats() const;

 private:
  class Call;

  void Run();
  // One stream, from hello to end; returns its final status.
  grpc::Status RunOneStream();
  void SleepBeforeRetry(absl::Duration delay);

  // Queues `message` on the current stream, or, when none is writable, keeps
  // it for the next one if it is a window.
  void EnqueueLocked(craft::v1::WorkerMessage message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops the oldest waiting windows beyond max_queued_windows.
  void TrimBacklogLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CountDroppedWindowLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Reactions of the current Call (gRPC callback threads).
  void OnCommand(const craft::v1::WorkerCommand& command);
  void OnWritten(const craft::v1::WorkerMessage& message);
  void OnCallDone(const grpc::Status& status);

  bool CallDoneOrStopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  const HelloFn hello_;
  const CommandFn on_command_;
  Clock* const clock_;
  std::thread thread_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Windows waiting for a stream (none open, or the current one has ended).
  std::deque<craft::v1::WorkerMessage> backlog_ ABSL_GUARDED_BY(mu_);
  int64_t dropped_windows_ ABSL_GUARDED_BY(mu_) = 0;
  Stats stats_ ABSL_GUARDED_BY(mu_);
  // The current stream (reset for each).
  Call* call_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool call_done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status call_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace craft::gpu_worker

#endif  // CRAFT_GPU_WORKER_AGENT_LINK_H_
