#include "agent/worker_service.h"

#include <atomic>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/grpc/status.h"
#include "common/grpc/stream_writer.h"
#include "common/logging.h"

namespace craft::agent {
namespace {

using craft::v1::WorkerCommand;
using craft::v1::WorkerMessage;

constexpr size_t kMaxQueuedCommands = 8;

}  // namespace

// One worker's stream. Lock order: WorkerService::mu_ -> NodeState -> mu_ ->
// the writer's. mu_ serializes the gRPC operations that the writer does not
// (StartRead, StartSendInitialMetadata) with those it does (its hooks take
// mu_), so the writer is never called with mu_ held, except for closed().
// Never calls into NodeState while holding mu_ (NodeState calls Send with its
// own lock held).
class WorkerService::AttachReactor final
    : public grpc::ServerBidiReactor<WorkerMessage, WorkerCommand>,
      public WorkerChannel {
 public:
  AttachReactor(WorkerService* service, NodeState* node, grpc::CallbackServerContext* context)
      : service_(service),
        node_(node),
        context_(context),
        peer_(context->peer()),
        // Prepare, commit and abort are few; when they overflow, the oldest
        // goes and the apply's timeout reports the worker.
        writer_(
            DropPolicy<WorkerCommand>::DropOldest(kMaxQueuedCommands),
            [this](const WorkerCommand* command) { StartCommandWrite(command); },
            [this](const grpc::Status& status) { FinishStream(status); }) {
    writer_.Open();
  }

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
    const int gpu = gpu_.load();
    const StreamWriter<WorkerCommand>::Pushed pushed = writer_.Push(command);
    if (pushed.accepted && pushed.left_out.has_value()) {
      CRAFT_LOG(WARNING) << "gpu " << gpu << ": command queue full, dropping the oldest";
    }
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
    if (!writer_.closed()) StartRead(&incoming_);
  }

  // A failed write ends the stream (the writer finishes it).
  void OnWriteDone(bool ok) override { writer_.OnWriteDone(ok); }

  void OnCancel() override { End(grpc::Status::CANCELLED); }

  void OnDone() override {
    Detach();
    service_->Remove(this);
    { absl::MutexLock lock(&mu_); }  // let a thread inside a writer hook leave first
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
    if (writer_.closed() || metadata_sent_) return;
    AddAttachedMetadataLocked();
    StartSendInitialMetadata();
  }

  void AddAttachedMetadataLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    metadata_sent_ = true;
    context_->AddInitialMetadata(kAttachedMetadataKey, std::to_string(hello_gpu_));
  }

  // The writer's start_write.
  void StartCommandWrite(const WorkerCommand* command) {
    absl::MutexLock lock(&mu_);
    if (!metadata_sent_) AddAttachedMetadataLocked();  // only attached streams get commands
    StartWrite(command);
  }

  // The writer's on_closed.
  void FinishStream(const grpc::Status& status) {
    absl::MutexLock lock(&mu_);
    Finish(status);
  }

  // Finishes with `status` once the write in flight (if any) is done; the
  // first call wins.
  void FinishWith(const grpc::Status& status) {
    if (status.ok()) {
      writer_.Close(status);
      return;
    }
    // Copied first: once closed, the stream may be deleted at any moment.
    const std::string peer = peer_;
    const int gpu = gpu_.load();
    if (writer_.Close(status)) {
      CRAFT_LOG(WARNING) << "worker stream " << peer << " (gpu " << gpu
                         << ") ends: " << status.error_message();
    }
  }

  void Detach() {
    const int gpu = gpu_.load();
    if (gpu >= 0) node_->DetachWorker(gpu, this);
  }

  WorkerService* const service_;
  NodeState* const node_;
  grpc::CallbackServerContext* const context_;
  const std::string peer_;
  WorkerMessage incoming_;    // owned by the one pending read
  std::atomic<int> gpu_{-1};  // set once, when the hello is accepted

  absl::Mutex mu_;
  bool metadata_sent_ ABSL_GUARDED_BY(mu_) = false;
  int hello_gpu_ ABSL_GUARDED_BY(mu_) = -1;  // the GPU the hello claims
  StreamWriter<WorkerCommand> writer_;
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
