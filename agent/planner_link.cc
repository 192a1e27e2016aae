#include "agent/planner_link.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/grpc/status.h"
#include "common/grpc/stream_writer.h"
#include "common/logging.h"
#include "wire/metadata.h"

namespace craft::agent {
namespace {

using craft::v1::AgentMessage;
using craft::v1::PlannerMessage;

// Worth a quick retry (R7): the planner is away or overloaded, not refusing.
bool IsTransient(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED ||
         code == grpc::StatusCode::RESOURCE_EXHAUSTED || code == grpc::StatusCode::CANCELLED ||
         code == grpc::StatusCode::OK;
}

// A Prepare carrying a full layout with its node's transfers and endpoints
// is bounded by 16 MiB (proto/README.md, "Layout deltas"), the planner's own
// receive limit; gRPC's default of 4 MiB would refuse large clusters' ones.
constexpr int kMaxPlannerMessageBytes = 16 << 20;

std::shared_ptr<grpc::Channel> MakeChannel(const PlannerLink::Options& options,
                                           const std::string& target) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxPlannerMessageBytes);
  // Keepalive (research notes §3.5): a dead planner or half-open connection
  // is noticed within ~40 s even when nothing is being sent.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // The channel has its own reconnect backoff (1 s doubling to 120 s by
  // default); calls fail fast while it waits. Keep it within ours.
  const int initial_ms = static_cast<int>(absl::ToInt64Milliseconds(options.backoff.initial));
  const int max_ms = static_cast<int>(absl::ToInt64Milliseconds(options.backoff.max));
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, std::max(initial_ms, 1));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, std::max(max_ms, 1));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 1'000);  // the connect timeout floor
  return MakeChannel(target, options.security, options.server_name, args);
}

bool IsLoad(const AgentMessage& message) { return message.has_load(); }

// How soon a follower is asked again after the leader it named was
// unreachable, or while it knows no leader (PlannerTargets::Next::kSoon).
constexpr absl::Duration kFollowerRetryDelay = absl::Milliseconds(200);

}  // namespace

// One Connect stream. Owned by PlannerLink::Run(), which deletes it after
// OnDone; the link calls it only under its mu_ while it is the current one.
class PlannerLink::Stream final : public grpc::ClientBidiReactor<AgentMessage, PlannerMessage> {
 public:
  Stream(PlannerLink* link, std::string target, craft::v1::AgentGateway::Stub* stub,
         AgentMessage hello)
      : link_(link),
        target_(std::move(target)),
        stub_(stub),
        // Loads are replaceable; answers are not: a full backlog drops the
        // oldest load first.
        writer_(
            DropPolicy<AgentMessage>::DropOldestPreferring(link->options_.max_queued, IsLoad),
            [this](const AgentMessage* message) { StartWrite(message); },
            [this](const grpc::Status&) { RemoveHold(); },
            [this](const AgentMessage& message) {
              if (message.has_hello()) OnHelloSent();
            }) {
    writer_.Push(std::move(hello));  // always the first write
  }

  void Start() {
    stub_->async()->Connect(&context_, this);  // binds: Start* allowed from here
    StartRead(&incoming_);
    AddHold();  // writes start outside reactions (Send); the writer releases it at its end
    writer_.Open();
    StartCall();
  }

  void EnqueueLocked(AgentMessage message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(link_->mu_) {
    const StreamWriter<AgentMessage>::Pushed pushed = writer_.Push(std::move(message));
    if (pushed.accepted && pushed.left_out.has_value()) {
      CRAFT_LOG(WARNING) << "planner stream backlog full: dropping the oldest "
                         << (pushed.left_out->has_load() ? "load" : "message");
    }
  }

  void CancelLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(link_->mu_) { context_.TryCancel(); }

  // The mutex that guards this stream: its link's mu_. The link holds it as
  // its own mu_ and asserts it through this before calling a *Locked method,
  // as the analysis cannot tell that link_ is that link.
  absl::Mutex& mu() const ABSL_LOCK_RETURNED(link_->mu_) { return link_->mu_; }

  // A failed write ends the writer; the pending read fails next.
  void OnWriteDone(bool ok) override { writer_.OnWriteDone(ok); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // Last touch: once the writer's last write is done it releases the
      // hold, and OnDone may follow on another thread.
      writer_.Close(grpc::Status::OK);
      return;
    }
    if (!received_any_) {
      received_any_ = true;
      absl::MutexLock lock(&link_->mu_);
      link_->backoff_.Reset();  // the planner answered: this stream is healthy
    }
    // Handle before reading on: messages are processed one at a time, in order.
    link_->node_->OnPlannerMessage(incoming_);
    incoming_.Clear();
    StartRead(&incoming_);
  }

  void OnDone(const grpc::Status& status) override {
    // A follower planner names the leader (or "" while it knows none).
    std::optional<std::string> leader;
    const auto& trailers = context_.GetServerTrailingMetadata();
    if (auto it = trailers.find(kLeaderMetadataKey); it != trailers.end()) {
      leader.emplace(it->second.data(), std::min<size_t>(it->second.size(), 256));
    }
    link_->OnStreamDone(status, std::move(leader), received_any_);
  }

 private:
  // The writer's on_written for the hello, inside OnWriteDone: OnDone (and so
  // OnPlannerDisconnected) cannot run before this returns.
  void OnHelloSent() {
    CRAFT_LOG(INFO) << "connected to planner " << target_;
    link_->node_->OnPlannerConnected();
  }

  PlannerLink* const link_;
  const std::string target_;
  craft::v1::AgentGateway::Stub* const stub_;
  grpc::ClientContext context_;
  PlannerMessage incoming_;    // owned by the one pending read
  bool received_any_ = false;  // only touched by the read path
  StreamWriter<AgentMessage> writer_;
};

PlannerLink::PlannerLink(Options options, Clock* clock)
    : options_(std::move(options)),
      clock_(clock),
      targets_(options_.target),
      backoff_(options_.backoff, options_.seed) {}

craft::v1::AgentGateway::Stub* PlannerLink::StubFor(const std::string& target) {
  std::unique_ptr<craft::v1::AgentGateway::Stub>& stub = stubs_[target];
  if (stub == nullptr) stub = craft::v1::AgentGateway::NewStub(MakeChannel(options_, target));
  return stub.get();
}

PlannerLink::~PlannerLink() { Stop(); }

void PlannerLink::Start(NodeState* node) {
  node_ = node;
  thread_ = std::thread([this] { Run(); });
}

void PlannerLink::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (stream_ != nullptr) {
      stream_->mu().AssertHeld();
      stream_->CancelLocked();
    }
  }
  if (thread_.joinable()) thread_.join();
}

void PlannerLink::Send(const AgentMessage& message) {
  absl::MutexLock lock(&mu_);
  if (stream_ == nullptr) return;  // between streams: answers are moot, loads are buffered
  stream_->mu().AssertHeld();
  stream_->EnqueueLocked(message);
}

void PlannerLink::Reconnect() {
  absl::MutexLock lock(&mu_);
  if (stream_ == nullptr) return;
  stream_->mu().AssertHeld();
  stream_->CancelLocked();  // the loop reconnects
}

void PlannerLink::OnStreamDone(const grpc::Status& status, std::optional<std::string> leader,
                               bool healthy) {
  absl::MutexLock lock(&mu_);
  done_status_ = status;
  done_leader_ = std::move(leader);
  done_healthy_ = healthy;
  stream_done_ = true;
}

void PlannerLink::Run() {
  while (true) {
    const std::optional<grpc::Status> status = RunOneStream();
    if (!status.has_value()) break;  // stopping
    node_->OnPlannerDisconnected();
    if (!SleepBeforeReconnect(*status)) break;
  }
  CRAFT_LOG(INFO) << "planner link stopped";
}

std::optional<grpc::Status> PlannerLink::RunOneStream() {
  // MakeHello takes NodeState's lock: not under mu_ (lock order).
  AgentMessage hello;
  *hello.mutable_hello() = node_->MakeHello();
  hello.mutable_hello()->set_group(options_.group);
  std::string target;
  {
    absl::MutexLock lock(&mu_);
    target = targets_.Current();
  }
  auto stream = std::make_unique<Stream>(this, target, StubFor(target), std::move(hello));
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return std::nullopt;
    ++attempts_;
    CRAFT_LOG(INFO) << "connecting to planner " << target << " (attempt " << attempts_ << ")";
    stream_ = stream.get();
    stream_done_ = false;
  }
  stream->Start();
  grpc::Status status;
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&stream_done_));
    stream_ = nullptr;
    status = done_status_;
  }
  stream.reset();  // OnStreamDone was the last thing OnDone did
  return status;
}

bool PlannerLink::SleepBeforeReconnect(const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return false;
  const std::string why = absl::StrCat(absl::StatusCodeToString(FromGrpcStatus(status).code()),
                                       ": ", status.error_message());
  const std::string target = targets_.Current();
  const PlannerTargets::Next next = targets_.OnStreamEnded(done_leader_, done_healthy_);
  if (next == PlannerTargets::Next::kAtOnce) {
    CRAFT_LOG(INFO) << "planner " << target << " is not the leader (" << why
                    << "); going to the leader at " << targets_.Current();
    return true;
  }
  // Asking a follower again does not grow the backoff.
  absl::Duration delay =
      next == PlannerTargets::Next::kSoon ? kFollowerRetryDelay : backoff_.NextDelay();
  if (IsTransient(status.error_code())) {
    CRAFT_LOG(WARNING) << "planner stream ended (" << why << "); reconnecting in "
                       << absl::FormatDuration(delay);
  } else {
    // The planner refused us (e.g. a model mismatch): retrying fast will
    // not help, and an operator should see it.
    delay = std::max(delay, options_.backoff.max);
    CRAFT_LOG(ERROR) << "planner refused the stream (" << why << "); retrying in "
                     << absl::FormatDuration(delay);
  }
  return clock_->SleepUntil(clock_->Now() + delay, &mu_, &stopping_);
}

}  // namespace craft::agent
