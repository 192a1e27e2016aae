#include "gpu_worker/agent_link.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "common/backoff.h"
#include "common/logging.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace craft::gpu_worker {
namespace {

// Prepares carry whole layouts: allow more than gRPC's default 4 MiB.
constexpr int kMaxCommandBytes = 64 << 20;

std::shared_ptr<grpc::Channel> NewChannel(const std::string& target) {
  grpc::ChannelArguments args;
  // A fresh subchannel per stream: no reconnect backoff inherited from the
  // last, failed one (this class does its own).
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxReceiveMessageSize(kMaxCommandBytes);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

}  // namespace

// The reactor of one Attach stream: forwards every reaction to the link,
// which holds the stream's state under its mutex.
class AgentLink::Call
    : public grpc::ClientBidiReactor<craft::v1::WorkerMessage, craft::v1::WorkerCommand> {
 public:
  explicit Call(AgentLink* link) : link_(link) {}

  // Writes `hello` first and keeps one read pending. The hold keeps the
  // stream alive for writes started outside reactions (AgentLink::Send)
  // until the link releases it.
  void Begin(craft::v1::NodeAgent::Stub* stub, const craft::v1::WorkerMessage* hello) {
    stub->async()->Attach(&context_, this);
    AddHold();
    StartWrite(hello);
    StartRead(&command_);
    StartCall();
  }

  void Cancel() { context_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      link_->OnReadsEnded();
      return;
    }
    // Handled before the next read starts, so commands keep their order.
    link_->OnCommand(command_);
    command_.Clear();
    StartRead(&command_);
  }
  void OnWriteDone(bool ok) override { link_->OnWriteDone(ok); }
  // The last reaction: the link thread deletes this Call once it has run.
  void OnDone(const grpc::Status& status) override { link_->OnCallDone(status); }

 private:
  AgentLink* const link_;
  grpc::ClientContext context_;
  craft::v1::WorkerCommand command_;
};

AgentLink::AgentLink(Options options, HelloFn hello, CommandFn on_command, Clock* clock)
    : options_(std::move(options)),
      hello_(std::move(hello)),
      on_command_(std::move(on_command)),
      clock_(clock) {}

AgentLink::~AgentLink() { Stop(); }

void AgentLink::Start() {
  thread_ = std::thread([this] { Run(); });
}

void AgentLink::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void AgentLink::Send(craft::v1::WorkerMessage message) {
  Call* call = nullptr;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    if (!CanWriteLocked() && !message.has_window()) {
      CRAFT_LOG(WARNING) << "no agent stream: dropping status of version "
                         << message.status().version();
      return;
    }
    EnqueueLocked(std::move(message));
    if (!TakeNextWriteLocked()) return;
    call = call_;
  }
  call->StartWrite(&in_flight_);
}

void AgentLink::EnqueueLocked(craft::v1::WorkerMessage message) {
  queue_.push_back(std::move(message));
  size_t windows = 0;
  for (const auto& m : queue_) windows += m.has_window();
  if (windows <= options_.max_queued_windows) return;
  const auto oldest =
      std::find_if(queue_.begin(), queue_.end(),
                   [](const craft::v1::WorkerMessage& m) { return m.has_window(); });
  queue_.erase(oldest);
  ++dropped_windows_;  // logged once the next stream opens
  ++stats_.windows_dropped;
}

AgentLink::Stats AgentLink::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

bool AgentLink::CallDoneOrStopping() const { return call_done_ || stopping_; }

bool AgentLink::CanWriteLocked() const {
  return call_ != nullptr && !reads_ended_ && !write_failed_;
}

bool AgentLink::TakeNextWriteLocked() {
  if (write_in_flight_ || queue_.empty() || !CanWriteLocked()) return false;
  in_flight_ = std::move(queue_.front());
  queue_.pop_front();
  write_in_flight_ = true;
  return true;
}

bool AgentLink::TakeHoldReleaseLocked() {
  if (!reads_ended_ || write_in_flight_ || hold_released_) return false;
  hold_released_ = true;
  return true;
}

void AgentLink::OnCommand(const craft::v1::WorkerCommand& command) { on_command_(command); }

void AgentLink::OnReadsEnded() {
  Call* call = nullptr;
  {
    absl::MutexLock lock(&mu_);
    reads_ended_ = true;
    if (!TakeHoldReleaseLocked()) return;
    call = call_;
  }
  call->RemoveHold();
}

void AgentLink::OnWriteDone(bool ok) {
  Call* call = nullptr;
  bool start = false;
  bool release = false;
  {
    absl::MutexLock lock(&mu_);
    write_in_flight_ = false;
    if (!ok) {
      write_failed_ = true;
    } else if (in_flight_.has_hello()) {
      stats_.attached = true;
      ++stats_.attaches;
      CRAFT_LOG(INFO) << "attached to agent at " << options_.target << " (serving "
                      << in_flight_.hello().committed_version() << ")";
      if (dropped_windows_ > 0) {
        CRAFT_LOG(WARNING) << "dropped the " << dropped_windows_
                           << " oldest windows while no agent stream was open";
        dropped_windows_ = 0;
      }
    }
    start = TakeNextWriteLocked();
    release = TakeHoldReleaseLocked();
    call = call_;
  }
  if (start) call->StartWrite(&in_flight_);
  if (release) call->RemoveHold();
}

void AgentLink::OnCallDone(const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  call_done_ = true;
  stats_.attached = false;
  call_status_ = status;
}

grpc::Status AgentLink::RunOneStream() {
  // The hello is built outside mu_: it reads the worker's state, whose lock
  // may be held by a thread calling Send.
  craft::v1::WorkerMessage hello;
  *hello.mutable_hello() = hello_();
  std::shared_ptr<grpc::Channel> channel = NewChannel(options_.target);
  std::unique_ptr<craft::v1::NodeAgent::Stub> stub = craft::v1::NodeAgent::NewStub(channel);
  auto call = std::make_unique<Call>(this);
  {
    absl::MutexLock lock(&mu_);
    call_ = call.get();
    reads_ended_ = write_failed_ = hold_released_ = call_done_ = false;
    in_flight_ = std::move(hello);
    write_in_flight_ = true;
  }
  call->Begin(stub.get(), &in_flight_);

  mu_.Lock();
  mu_.Await(absl::Condition(this, &AgentLink::CallDoneOrStopping));
  const bool cancel = !call_done_;
  mu_.Unlock();
  if (cancel) call->Cancel();

  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(&call_done_));
  call_ = nullptr;
  // Answers to the ended stream's commands mean nothing on the next one.
  queue_.erase(std::remove_if(queue_.begin(), queue_.end(),
                              [](const craft::v1::WorkerMessage& m) { return !m.has_window(); }),
               queue_.end());
  return call_status_;
}

void AgentLink::SleepBeforeRetry(absl::Duration delay) {
  absl::MutexLock lock(&mu_);
  clock_->SleepUntil(clock_->Now() + delay, &mu_, &stopping_);
}

void AgentLink::Run() {
  // Seeded from the clock so that workers restarted together draw different
  // delays and do not reconnect in lockstep.
  Backoff backoff(Backoff::Options{options_.min_backoff, options_.max_backoff, /*multiplier=*/2.0},
                  static_cast<uint64_t>(absl::ToUnixNanos(clock_->Now())));
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
    }
    const absl::Time opened = clock_->Now();
    const grpc::Status status = RunOneStream();
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
    }
    if (clock_->Now() - opened >= options_.healthy_after) backoff.Reset();
    const absl::Duration delay = backoff.NextDelay();
    CRAFT_LOG(WARNING) << "agent stream to " << options_.target << " ended (" << status.error_code()
                       << ": " << status.error_message() << "); retrying in "
                       << absl::FormatDuration(delay);
    SleepBeforeRetry(delay);
  }
}

}  // namespace craft::gpu_worker
