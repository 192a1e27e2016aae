#include "agent/planner_link.h"

#include <algorithm>
#include <deque>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/logging.h"

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

std::shared_ptr<grpc::Channel> MakeChannel(const PlannerLink::Options& options) {
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
  return MakeChannel(options.target, options.security, options.server_name, args);
}

}  // namespace

// One Connect stream. Its mutable state is guarded by the link's mu_. Owned by
// PlannerLink::Run(), which deletes it after OnDone.
class PlannerLink::Stream final : public grpc::ClientBidiReactor<AgentMessage, PlannerMessage> {
 public:
  Stream(PlannerLink* link, AgentMessage hello) : link_(link) {
    queue_.push_back(std::move(hello));  // always the first write
  }

  void Start() {
    link_->stub_->async()->Connect(&context_, this);  // binds: Start* allowed from here
    StartRead(&incoming_);
    AddHold();  // writes start outside reactions (Send); released when reads end
    {
      absl::MutexLock lock(&link_->mu_);
      started_ = true;
      MaybeWriteLocked();
    }
    StartCall();
  }

  void EnqueueLocked(AgentMessage message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(link_->mu_) {
    if (closing_) return;
    if (queue_.size() >= link_->options_.max_queued) {
      // Loads are replaceable; answers are not: drop the oldest load.
      auto load = std::find_if(queue_.begin(), queue_.end(),
                               [](const AgentMessage& m) { return m.has_load(); });
      CRAFT_LOG(WARNING) << "planner stream backlog full: dropping the oldest "
                         << (load != queue_.end() ? "load" : "message");
      queue_.erase(load != queue_.end() ? load : queue_.begin());
    }
    queue_.push_back(std::move(message));
    MaybeWriteLocked();
  }

  void CancelLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(link_->mu_) { context_.TryCancel(); }

  // The mutex that guards this stream: its link's mu_. The link holds it as
  // its own mu_ and asserts it through this before calling a *Locked method,
  // as the analysis cannot tell that link_ is that link.
  absl::Mutex& mu() const ABSL_LOCK_RETURNED(link_->mu_) { return link_->mu_; }

  void OnWriteDone(bool ok) override {
    bool connected_now = false;
    {
      absl::MutexLock lock(&link_->mu_);
      write_in_flight_ = false;
      if (!ok) {
        closing_ = true;  // the call is over; the pending read fails next
        queue_.clear();
        return;
      }
      if (!hello_sent_) {
        hello_sent_ = true;
        connected_now = true;
      }
      MaybeWriteLocked();
    }
    // OnDone (and so OnPlannerDisconnected) cannot run before this returns.
    if (connected_now) {
      CRAFT_LOG(INFO) << "connected to planner " << link_->options_.target;
      link_->node_->OnPlannerConnected();
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      {
        absl::MutexLock lock(&link_->mu_);
        closing_ = true;
        queue_.clear();
      }
      RemoveHold();  // last touch: OnDone may follow on another thread
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

  void OnDone(const grpc::Status& status) override { link_->OnStreamDone(status); }

 private:
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(link_->mu_) {
    if (!started_ || write_in_flight_ || closing_ || queue_.empty()) return;
    writing_ = std::move(queue_.front());
    queue_.pop_front();
    write_in_flight_ = true;
    StartWrite(&writing_);
  }

  PlannerLink* const link_;
  grpc::ClientContext context_;
  PlannerMessage incoming_;    // owned by the one pending read
  bool received_any_ = false;  // only touched by the read path

  std::deque<AgentMessage> queue_ ABSL_GUARDED_BY(link_->mu_);
  AgentMessage writing_ ABSL_GUARDED_BY(link_->mu_);
  bool started_ ABSL_GUARDED_BY(link_->mu_) = false;  // bound to a call by Start()
  bool write_in_flight_ ABSL_GUARDED_BY(link_->mu_) = false;
  bool hello_sent_ ABSL_GUARDED_BY(link_->mu_) = false;
  bool closing_ ABSL_GUARDED_BY(link_->mu_) = false;  // no more writes
};

PlannerLink::PlannerLink(Options options, Clock* clock)
    : options_(std::move(options)),
      clock_(clock),
      stub_(craft::v1::AgentGateway::NewStub(MakeChannel(options_))),
      backoff_(options_.backoff, options_.seed) {}

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

void PlannerLink::OnStreamDone(const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  done_status_ = status;
  stream_done_ = true;
}

void PlannerLink::Run() {
  while (true) {
    // MakeHello takes NodeState's lock: not under mu_ (lock order).
    AgentMessage hello;
    *hello.mutable_hello() = node_->MakeHello();
    auto stream = std::make_unique<Stream>(this, std::move(hello));
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
      ++attempts_;
      CRAFT_LOG(INFO) << "connecting to planner " << options_.target << " (attempt " << attempts_
                      << ")";
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
    node_->OnPlannerDisconnected();

    absl::MutexLock lock(&mu_);
    if (stopping_) break;
    absl::Duration delay = backoff_.NextDelay();
    const std::string why = absl::StrCat(absl::StatusCodeToString(FromGrpcStatus(status).code()),
                                         ": ", status.error_message());
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
    clock_->SleepUntil(clock_->Now() + delay, &mu_, &stopping_);
  }
  CRAFT_LOG(INFO) << "planner link stopped";
}

}  // namespace craft::agent
