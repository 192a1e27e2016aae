// The two seams between the agent's protocol logic (NodeState) and gRPC: where
// it sends to the planner and where it sends to one worker. The gRPC adapters
// (PlannerLink, WorkerService's reactors) implement them; tests use fakes.
#ifndef CRAFT_AGENT_CHANNELS_H_
#define CRAFT_AGENT_CHANNELS_H_

#include "absl/status/status.h"
#include "craft/v1/agent.pb.h"
#include "craft/v1/worker.pb.h"

namespace craft::agent {

// The agent's stream to the planner.
//
// Thread-safety: Send is called with NodeState's lock held, so an
// implementation must only queue (never block) and must never call back into
// NodeState from Send.
class PlannerChannel {
 public:
  virtual ~PlannerChannel() = default;
  // Queues `message` on the current stream; dropped when there is none (an
  // answer to a message of a dead stream means nothing to the next one).
  virtual void Send(const craft::v1::AgentMessage& message) = 0;
  // Ends the current stream so that the next one opens with a fresh hello:
  // the hello is the only place the node states its GPUs' endpoints and
  // serving versions, and a restarted worker changes both.
  virtual void Reconnect() = 0;
};

// One attached worker's stream.
//
// Thread-safety: as PlannerChannel. After NodeState::DetachWorker returns for
// this channel, or after NodeState called its Close, NodeState never calls it
// again.
class WorkerChannel {
 public:
  virtual ~WorkerChannel() = default;
  virtual void Send(const craft::v1::WorkerCommand& command) = 0;
  // Ends the stream with `status`. NodeState has already detached the
  // worker: the implementation must not call NodeState (its lock is held).
  virtual void Close(const absl::Status& status) = 0;
};

}  // namespace craft::agent

#endif  // CRAFT_AGENT_CHANNELS_H_
