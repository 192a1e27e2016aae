// The agent's one long-lived AgentGateway.Connect stream to the planner, with
// the gRPC callback client API, and the reconnect loop around it.
//
// A dedicated thread owns the loop: build the hello (NodeState::MakeHello),
// open a stream, wait for it to end, tell NodeState, wait a jittered
// exponential backoff (Backoff: 100 ms doubling to 5 s, full jitter; reset
// once the planner sent a first message on a stream, not when it opens), log
// and retry. UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, CANCELLED and
// OK count as transient; any other status (the planner refused the agent) is
// logged as an error and retried no faster than the maximum backoff. While
// the planner is away nothing changes on the node (static stability); loads
// are buffered by NodeState.
//
// Per stream: the hello is the first write, one read always pending, at most
// one write in flight; other messages queue behind it (bounded: the oldest
// load is dropped first). The channel's keepalive detects a dead planner or a
// half-open connection within ~40 s, and its own reconnect backoff is kept
// within ours so a returning planner is found promptly.
//
//   PlannerLink link(options, Clock::Real());
//   auto node = NodeState::Create(node_options, clock, &store, &link);
//   link.Start(node->get());
//   ...
//   link.Stop();  // cancels the stream, joins the thread
//
// Thread-safety: thread-safe. Lock order: NodeState -> PlannerLink::mu_
// (Send is called with NodeState's lock held; the link never calls NodeState
// with mu_ held).
#ifndef CRAFT_AGENT_PLANNER_LINK_H_
#define CRAFT_AGENT_PLANNER_LINK_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "agent/channels.h"
#include "agent/node_state.h"
#include "agent/planner_targets.h"
#include "common/backoff.h"
#include "common/clock.h"
#include "common/transport_security.h"
#include "craft/v1/agent.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace craft::agent {

class PlannerLink final : public PlannerChannel {
 public:
  struct Options {
    // The planner's host:port, or every replica's, comma-separated (high
    // availability: followers redirect to the leader; PlannerTargets).
    std::string target;
    TransportSecurity security;
    std::string server_name;  // the name the planner's certificate carries
    // The placement group this node serves, named in every hello; "": the
    // planner's only group.
    std::string group;
    Backoff::Options backoff;
    uint64_t seed = 0;       // backoff jitter
    size_t max_queued = 64;  // outgoing messages waiting on one stream
  };

  PlannerLink(Options options, Clock* clock);
  ~PlannerLink() override;  // Stop()

  // Starts the connect loop for `node` (which must outlive Stop()). Once.
  void Start(NodeState* node);
  // Cancels the current stream and joins the loop. Idempotent.
  void Stop();

  // PlannerChannel.
  void Send(const craft::v1::AgentMessage& message) override;
  void Reconnect() override;

 private:
  class Stream;

  // The connect loop: RunOneStream, then SleepBeforeReconnect, until Stop.
  void Run();
  // Opens one stream to the current target with a fresh hello and waits for its
  // end; its final status, or nullopt when stopping before it opened.
  std::optional<grpc::Status> RunOneStream();
  // Waits the backoff after a stream that ended with `status`; false when
  // stopping.
  bool SleepBeforeReconnect(const grpc::Status& status);
  void OnStreamDone(const grpc::Status& status, std::optional<std::string> leader, bool healthy);
  craft::v1::AgentGateway::Stub* StubFor(const std::string& target);  // the Run thread only

  const Options options_;
  Clock* const clock_;
  // Where to connect (the Run thread's, read under mu_ for logs), and a
  // stub per address seen (the Run thread's).
  PlannerTargets targets_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::unique_ptr<craft::v1::AgentGateway::Stub>> stubs_;
  NodeState* node_ = nullptr;  // set by Start, before the thread starts
  std::thread thread_;

  mutable absl::Mutex mu_;
  Backoff backoff_ ABSL_GUARDED_BY(mu_);
  Stream* stream_ ABSL_GUARDED_BY(mu_) = nullptr;  // owned by Run()
  bool stream_done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status done_status_ ABSL_GUARDED_BY(mu_);
  std::optional<std::string> done_leader_ ABSL_GUARDED_BY(mu_);  // from the stream's trailers
  bool done_healthy_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int64_t attempts_ ABSL_GUARDED_BY(mu_) = 0;  // streams opened, for the log
};

}  // namespace craft::agent

#endif  // CRAFT_AGENT_PLANNER_LINK_H_
