// AgentGateway.Connect (proto/README.md, "Agent <-> planner"): one callback
// reactor per agent stream, no thread per stream. Each reactor keeps one read
// pending at all times and at most one write in flight, with the newest
// planner message waiting behind it (latest wins). The first message must be
// an AgentHello naming the node's placement group, checked by that group's
// authorizer and ApplyCoordinator; loads go to the group's LoadStore
// (a rejected window is counted and the stream continues); Acks and Nacks go
// to the coordinator, which reaches the stream back through an
// AgentConnection.
//
// Thread-safety: gRPC calls Connect and the reactions on its threads; Drain
// and open_streams are thread-safe. Lock order: coordinator, then a stream's
// link, then its writer; the gateway's own mutex is never held while calling
// out except to close streams.
#ifndef CRAFT_SERVER_AGENT_GATEWAY_H_
#define CRAFT_SERVER_AGENT_GATEWAY_H_

#include <functional>
#include <set>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "craft/v1/agent.grpc.pb.h"
#include "server/apply_coordinator.h"
#include "server/leader_directory.h"
#include "server/placement_groups.h"

namespace craft::server {

class AgentStream;

class AgentGatewayService final : public craft::v1::AgentGateway::CallbackService {
 public:
  // The pointers must outlive every stream (i.e. the grpc::Server). A hello
  // names its placement group, whose authorizer, coordinator and load store
  // then serve the stream. A follower (high availability) has no
  // coordinators: it answers every stream with NotLeader and the address in
  // `directory`, so the agent goes to the leader.
  AgentGatewayService(const PlacementGroups* groups, const LeaderDirectory* directory = nullptr);

  grpc::ServerBidiReactor<craft::v1::AgentMessage, craft::v1::PlannerMessage>* Connect(
      grpc::CallbackServerContext* context) override;

  // Ends every open stream with UNAVAILABLE "planner draining" and answers new
  // ones the same way.
  void Drain();
  int open_streams() const;

 private:
  friend class AgentStream;
  // False while draining: the stream must end at once.
  bool Register(AgentStream* stream);
  void Unregister(AgentStream* stream);

  const PlacementGroups* const groups_;
  const LeaderDirectory* const directory_;

  mutable absl::Mutex mu_;
  std::set<AgentStream*> streams_ ABSL_GUARDED_BY(mu_);
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace craft::server

#endif  // CRAFT_SERVER_AGENT_GATEWAY_H_
