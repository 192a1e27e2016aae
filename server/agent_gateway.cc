#include "server/agent_gateway.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/grpc/status.h"
#include "common/grpc/stream_writer.h"
#include "common/logging.h"
#include "common/peer_identity.h"

namespace craft::server {

using craft::v1::AgentMessage;
using craft::v1::PlannerMessage;

namespace {

// Log the first few rejected windows of a stream, then every Nth, so a
// misbehaving agent cannot flood the log.
constexpr int64_t kRejectionsLoggedInFull = 5;
constexpr int64_t kRejectionLogPeriod = 100;

}  // namespace

// One agent stream. Lives from Connect until OnDone deletes it. Writes are
// latest wins (proto/README.md): a newer message replaces one still waiting.
class AgentStream final : public grpc::ServerBidiReactor<AgentMessage, PlannerMessage> {
 public:
  AgentStream(AgentGatewayService* gateway, const grpc::CallbackServerContext* context)
      : gateway_(gateway),
        context_(context),
        writer_(
            DropPolicy<PlannerMessage>::KeepLatest(),
            [this](const PlannerMessage* message) { StartWrite(message); },
            [this](const grpc::Status& status) {
              absl::MutexLock lock(&read_mu_);
              finished_ = true;
              Finish(status);
            }) {
    writer_.Open();
    if (!gateway_->Register(this)) {
      Close(grpc::Status(grpc::StatusCode::UNAVAILABLE, "planner draining"));
      return;
    }
    ReadNext();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the agent closed its side or the stream broke
      Close(grpc::Status::OK);
      return;
    }
    if (grpc::Status status = Handle(incoming_); !status.ok()) {
      CRAFT_LOG(WARNING) << "ending agent stream" << (node_.empty() ? "" : " of " + node_) << ": "
                         << status.error_message();
      Close(status);
      return;
    }
    ReadNext();
  }

  // Thread-safe; see StreamWriter.
  void Push(const PlannerMessage& message) { writer_.Push(message); }
  void Close(const grpc::Status& status) { writer_.Close(status); }

  void OnWriteDone(bool ok) override { writer_.OnWriteDone(ok); }
  void OnCancel() override { Close(grpc::Status::CANCELLED); }

  void OnDone() override {
    if (link_ != nullptr) {
      link_->Detach();
      group_->coordinator->Disconnect(node_, link_.get());
    }
    gateway_->Unregister(this);
    delete this;
  }

 private:
  // The coordinator's handle on this stream; outlives it (the coordinator may
  // hold it after OnDone), so it forwards only while attached.
  class Link final : public AgentConnection {
   public:
    explicit Link(AgentStream* stream) : stream_(stream) {}
    void Send(const PlannerMessage& message) override {
      absl::MutexLock lock(&mu_);
      if (stream_ != nullptr) stream_->Push(message);
    }
    void Close(const absl::Status& status) override {
      absl::MutexLock lock(&mu_);
      if (stream_ != nullptr) stream_->Close(ToGrpcStatus(status));
    }
    void Detach() {
      absl::MutexLock lock(&mu_);
      stream_ = nullptr;
    }

   private:
    absl::Mutex mu_;
    AgentStream* stream_ ABSL_GUARDED_BY(mu_);
  };

  // Reads are sequential, so the members below are only touched by one
  // reaction at a time (and by OnDone, after every reaction).
  grpc::Status Handle(const AgentMessage& message) {
    if (node_.empty()) {
      if (message.body_case() != AgentMessage::kHello) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "the first message on a stream must be AgentHello");
      }
      const craft::v1::AgentHello& hello = message.hello();
      absl::StatusOr<GroupStack*> group = gateway_->groups_->Find(hello.group());
      if (!group.ok()) return ToGrpcStatus(group.status());
      if (absl::Status allowed = (*group)->agents->AuthorizeAgent(*context_, hello);
          !allowed.ok()) {
        CRAFT_LOG(WARNING) << "refused an agent hello from " << PeerLabel(*context_) << ": "
                           << allowed.message();
        return ToGrpcStatus(allowed);
      }
      auto link = std::make_shared<Link>(this);
      if (absl::Status connected = (*group)->coordinator->Connect(hello, link); !connected.ok()) {
        return ToGrpcStatus(connected);
      }
      group_ = *group;
      link_ = std::move(link);
      node_ = hello.node();
      for (const craft::v1::GpuInfo& gpu : hello.gpus()) gpus_.push_back(gpu.rank());
      return grpc::Status::OK;
    }
    ApplyCoordinator* coordinator = group_->coordinator.get();
    switch (message.body_case()) {
      case AgentMessage::kHello:
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "AgentHello sent twice");
      case AgentMessage::kAck:
        coordinator->HandleAck(node_, link_.get(), message.ack());
        break;
      case AgentMessage::kNack:
        coordinator->HandleNack(node_, link_.get(), message.nack());
        break;
      case AgentMessage::kLoad:
        HandleLoad(message.load());
        break;
      case AgentMessage::BODY_NOT_SET:
        CRAFT_LOG(WARNING) << "agent " << node_ << " sent an empty message; ignored";
        break;
    }
    return grpc::Status::OK;
  }

  // Timed from before the coordinator's lock is taken: what an agent's load
  // stream waits for on the planner.
  void HandleLoad(const craft::v1::NodeLoad& load) {
    ApplyCoordinator* coordinator = group_->coordinator.get();
    const absl::Time start = gateway_->clock_->Now();
    coordinator->OnLoad(node_, link_.get(), load);
    int64_t rejected = 0;
    for (const craft::v1::GpuWindow& window : load.gpus()) {
      absl::Status ingested = group_->load_store->Ingest(window, gpus_);
      if (ingested.ok()) continue;
      ++rejected;
      if (ShouldLogRejection()) {
        CRAFT_LOG(WARNING) << "agent " << node_ << ": " << ingested.message() << " (" << rejections_
                           << " rejected on this stream)";
      }
    }
    // Once per message: the coordinator's lock is not taken per window.
    if (rejected > 0) coordinator->CountRejectedWindows(node_, rejected);
    if (gateway_->on_load_handled_) gateway_->on_load_handled_(gateway_->clock_->Now() - start);
  }

  // Another thread may end the stream at any time (Drain, the coordinator's
  // Close): the check and the StartRead happen under the lock the end takes,
  // so no read ever starts after Finish.
  void ReadNext() {
    absl::MutexLock lock(&read_mu_);
    if (!finished_ && !writer_.closed()) StartRead(&incoming_);
  }

  bool ShouldLogRejection() {
    ++rejections_;
    return rejections_ <= kRejectionsLoggedInFull || rejections_ % kRejectionLogPeriod == 0;
  }

  AgentGatewayService* const gateway_;
  const grpc::CallbackServerContext* const context_;  // valid until OnDone
  AgentMessage incoming_;
  std::string node_;             // set by a successful hello
  GroupStack* group_ = nullptr;  // the hello's group, set with node_
  std::vector<int> gpus_;
  std::shared_ptr<Link> link_;
  int64_t rejections_ = 0;
  absl::Mutex read_mu_;
  bool finished_ ABSL_GUARDED_BY(read_mu_) = false;
  StreamWriter<PlannerMessage> writer_;
};

namespace {

// A follower's answer to an agent: the stream ends at once, naming the leader.
class RefusedStream final : public grpc::ServerBidiReactor<AgentMessage, PlannerMessage> {
 public:
  explicit RefusedStream(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

AgentGatewayService::AgentGatewayService(const PlacementGroups* groups,
                                         const LeaderDirectory* directory, Clock* clock,
                                         std::function<void(absl::Duration)> on_load_handled)
    : groups_(groups),
      directory_(directory),
      clock_(clock),
      on_load_handled_(std::move(on_load_handled)) {}

grpc::ServerBidiReactor<AgentMessage, PlannerMessage>* AgentGatewayService::Connect(
    grpc::CallbackServerContext* context) {
  if (groups_->all().front()->coordinator == nullptr) {
    return new RefusedStream(NotLeader(context, directory_ ? directory_->Get() : ""));
  }
  return new AgentStream(this, context);
}

bool AgentGatewayService::Register(AgentStream* stream) {
  absl::MutexLock lock(&mu_);
  if (draining_) return false;
  streams_.insert(stream);
  return true;
}

void AgentGatewayService::Unregister(AgentStream* stream) {
  absl::MutexLock lock(&mu_);
  streams_.erase(stream);
}

void AgentGatewayService::Drain() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
  for (AgentStream* stream : streams_) {
    stream->Close(grpc::Status(grpc::StatusCode::UNAVAILABLE, "planner draining"));
  }
}

int AgentGatewayService::open_streams() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(streams_.size());
}

}  // namespace craft::server
