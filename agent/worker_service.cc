#include "agent/worker_service.h"

#include <atomic>
#include <deque>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/logging.h"

namespace craft::agent {
namespace {

using craft::v1::WorkerCommand;
using craft::v1::WorkerMessage;

constexpr size_t kMaxQueuedCommands = 8;

}  // namespace

// One worker's stream. Lock order: WorkerService::mu_ -> NodeState -> mu_.
// Never calls into NodeState while holding mu_ (NodeState calls Send with
// its own lock held).
class WorkerService::AttachReactor final
    : public grpc::ServerBidiReactor<WorkerMessage, WorkerCommand>,
      public WorkerChannel {
 public:
  AttachReactor(WorkerService* service, NodeState* node, grpc::CallbackServerContext* context)
      : service_(service), node_(node), context_(context), peer_(context->peer()) {}

  // Starts reading, or refuses the stream at once while draining.
  void Begin(bool refuse) {
    if (refuse) {
      End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "agent shutting down"));
      return;
    }
    absl::MutexLock lock(&mu_);
    StartRead(&incoming_);
  }

  // WorkerChannel: called by NodeState with its lock held.
  void Send(const WorkerCommand& command) override {
    absl::MutexLock lock(&mu_);
    if (finishing_) return;
    if (queue_.size() >= kMaxQueuedCommands) {
      CRAFT_LOG(WARNING) << "gpu " << gpu_.load() << ": command queue full, dropping the oldest";
      queue_.pop_front();
    }
    queue_.push_back(command);
    MaybeWriteLocked();
  }

  // WorkerChannel: NodeState detached this worker (its lock is held, so no
  // Detach here; a later End's Detach finds nothing to detach).
  void Close(const absl::Status& status) override { FinishWith(ToGrpcStatus(status)); }

  // Detaches from NodeState and finishes with `status` once the write in
  // flight (if any) is done. Idempotent; callable from any thread.
  void End(const grpc::Status& status) {
    Detach();
    FinishWith(status);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The worker half-closed or went away, or sent bytes that do not parse
      // (gRPC reports all of these as a failed read). Before a hello that is
      // an error worth telling; after it, the worker is leaving.
      if (gpu_.load() < 0) {
        End(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                         "stream ended before a WorkerHello, or a message did not parse as "
                         "craft.v1.WorkerMessage"));
      } else {
        CRAFT_LOG(INFO) << "worker stream of gpu " << gpu_.load() << " closed by the worker";
        End(grpc::Status::OK);
      }
      return;
    }
    if (absl::Status s = Handle(incoming_); !s.ok()) {
      End(ToGrpcStatus(s));
      return;
    }
    absl::MutexLock lock(&mu_);
    if (!finishing_) StartRead(&incoming_);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    write_in_flight_ = false;
    if (finishing_) {
      Finish(finish_status_);
      return;
    }
    if (ok) MaybeWriteLocked();
    // Not ok: the stream is broken; the pending read fails and ends it.
  }

  void OnCancel() override { End(grpc::Status::CANCELLED); }

  void OnDone() override {
    Detach();
    service_->Remove(this);
    { absl::MutexLock lock(&mu_); }  // let a thread inside End/Send leave first
    delete this;
  }

 private:
  absl::Status Handle(const WorkerMessage& message) {
    const int gpu = gpu_.load();
    if (message.has_hello()) {
      if (gpu >= 0) {
        // A worker re-states itself on its open stream (a new transfer group
        // id after its communicator was aborted); a stream stays one GPU's.
        if (message.hello().gpu() != gpu) {
          return absl::InvalidArgumentError(absl::StrCat(
              "WorkerHello for gpu ", message.hello().gpu(), " on the stream of gpu ", gpu));
        }
        return node_->UpdateWorker(message.hello(), this);
      }
      {
        // Before registering: NodeState may write to us as soon as it has.
        absl::MutexLock lock(&mu_);
        hello_gpu_ = message.hello().gpu();
      }
      if (absl::Status s = node_->AttachWorker(message.hello(), this); !s.ok()) return s;
      gpu_.store(message.hello().gpu());
      SignalAccepted();
      return absl::OkStatus();
    }
    if (gpu < 0) {
      return absl::InvalidArgumentError(
          "the first message on a worker stream must be a WorkerHello");
    }
    switch (message.body_case()) {
      case WorkerMessage::kWindow:
        return node_->OnWorkerWindow(gpu, message.window());
      case WorkerMessage::kStatus:
        node_->OnWorkerStatus(gpu, message.status());
        return absl::OkStatus();
      default:
        return absl::InvalidArgumentError("empty WorkerMessage");
    }
  }

  // Tells the worker its hello was accepted: initial metadata, unless the
  // first command already carried it (a write sends it implicitly; sending
  // it twice is invalid).
  void SignalAccepted() {
    absl::MutexLock lock(&mu_);
    if (finishing_ || metadata_sent_) return;
    AddAttachedMetadataLocked();
    StartSendInitialMetadata();
  }

  void AddAttachedMetadataLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    metadata_sent_ = true;
    context_->AddInitialMetadata(kAttachedMetadataKey, std::to_string(hello_gpu_));
  }

  // Finishes with `status` once the write in flight (if any) is done; the
  // first call wins.
  void FinishWith(const grpc::Status& status) {
    absl::MutexLock lock(&mu_);
    if (finishing_) return;
    finishing_ = true;
    queue_.clear();
    finish_status_ = status;
    if (!status.ok()) {
      CRAFT_LOG(WARNING) << "worker stream " << peer_ << " (gpu " << gpu_.load()
                         << ") ends: " << status.error_message();
    }
    if (!write_in_flight_) Finish(finish_status_);
  }

  void Detach() {
    const int gpu = gpu_.load();
    if (gpu >= 0) node_->DetachWorker(gpu, this);
  }

  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (write_in_flight_ || finishing_ || queue_.empty()) return;
    writing_ = std::move(queue_.front());
    queue_.pop_front();
    write_in_flight_ = true;
    if (!metadata_sent_) AddAttachedMetadataLocked();  // only attached streams get commands
    StartWrite(&writing_);
  }

  WorkerService* const service_;
  NodeState* const node_;
  grpc::CallbackServerContext* const context_;
  const std::string peer_;
  WorkerMessage incoming_;    // owned by the one pending read
  std::atomic<int> gpu_{-1};  // set once, when the hello is accepted

  absl::Mutex mu_;
  std::deque<WorkerCommand> queue_ ABSL_GUARDED_BY(mu_);
  WorkerCommand writing_ ABSL_GUARDED_BY(mu_);  // the write in flight
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;  // End called: no new reads or writes
  bool metadata_sent_ ABSL_GUARDED_BY(mu_) = false;
  int hello_gpu_ ABSL_GUARDED_BY(mu_) = -1;  // the GPU the hello claims
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
};

grpc::ServerBidiReactor<WorkerMessage, WorkerCommand>* WorkerService::Attach(
    grpc::CallbackServerContext* context) {
  auto* stream = new AttachReactor(this, node_, context);
  bool refuse;
  {
    absl::MutexLock lock(&mu_);
    streams_.insert(stream);
    refuse = draining_;
  }
  stream->Begin(refuse);
  return stream;
}

void WorkerService::Drain() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
  // Holding mu_ keeps every stream alive: OnDone waits in Remove().
  for (AttachReactor* stream : streams_) {
    stream->End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "agent shutting down"));
  }
}

bool WorkerService::WaitUntilIdle(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return streams_.empty(); };
  return mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
}

size_t WorkerService::open_streams() const {
  absl::MutexLock lock(&mu_);
  return streams_.size();
}

void WorkerService::Remove(AttachReactor* stream) {
  absl::MutexLock lock(&mu_);
  streams_.erase(stream);
}

}  // namespace craft::agent
