// NodeAgent.Attach on the agent's Unix socket: one callback-API stream per
// worker, a thin adapter between the wire and NodeState.
//
// Per stream: one read always pending; at most one write in flight; a small
// bounded queue of commands (prepare/commit/abort are few; when it overflows,
// the oldest is dropped and the apply's timeout reports the worker). The first
// message must be a WorkerHello (else INVALID_ARGUMENT); NodeState refuses
// unknown GPUs and model mismatches, a GPU whose worker is attached on
// another stream, and every worker while the node's model shape is not known
// (UNAVAILABLE), and the stream ends with that status. NodeState may also end
// an attached stream (WorkerChannel::Close) when the model changes under
// it. A further hello for the stream's GPU updates what the agent knows of
// the worker (NodeState::UpdateWorker); a bad one, or one for another GPU,
// ends the stream. Any other protocol violation ends only that stream. An
// accepted hello is answered with initial metadata carrying
// kAttachedMetadataKey = the GPU (no reply message exists for it), so a
// worker can tell "attached" from "refused" before its first command.
//
//   WorkerService service(node);
//   builder.RegisterService(&service);
//   ...
//   service.Drain();                       // on shutdown: UNAVAILABLE to every worker
//   server->Shutdown(deadline);
//   service.WaitUntilIdle(absl::Seconds(2));
//
// Thread-safety: thread-safe. Must outlive the server's calls (WaitUntilIdle).
#ifndef CRAFT_AGENT_WORKER_SERVICE_H_
#define CRAFT_AGENT_WORKER_SERVICE_H_

#include <cstddef>
#include <set>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/node_state.h"
#include "craft/v1/worker.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace craft::agent {

// Initial-metadata key the agent sets when it accepts a worker's hello.
inline constexpr char kAttachedMetadataKey[] = "craft-attached-gpu";

class WorkerService final : public craft::v1::NodeAgent::CallbackService {
 public:
  explicit WorkerService(NodeState* node) : node_(node) {}

  grpc::ServerBidiReactor<craft::v1::WorkerMessage, craft::v1::WorkerCommand>* Attach(
      grpc::CallbackServerContext* context) override;

  // Ends every open stream with UNAVAILABLE and refuses new ones.
  void Drain();
  // Waits until every stream is done (OnDone ran); false on timeout.
  bool WaitUntilIdle(absl::Duration timeout);
  size_t open_streams() const;

 private:
  class AttachReactor;
  void Remove(AttachReactor* stream);

  NodeState* const node_;
  mutable absl::Mutex mu_;
  std::set<AttachReactor*> streams_ ABSL_GUARDED_BY(mu_);
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace craft::agent

#endif  // CRAFT_AGENT_WORKER_SERVICE_H_
