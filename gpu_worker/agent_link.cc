#include "gpu_worker/agent_link.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "common/backoff.h"
#include "common/grpc/stream_writer.h"
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

// The reactor of one Attach stream. Its writer holds what waits to be
// written on this stream; the link holds what waits for the next one.
class AgentLink::Call
    : public grpc::ClientBidiReactor<craft::v1::WorkerMessage, craft::v1::WorkerCommand> {
 public:
  Call(AgentLink* link, size_t max_queued_windows)
      : link_(link),
        writer_(
            DropPolicy<craft::v1::WorkerMessage>::DropOldestOf(max_queued_windows, IsWindow),
            [this](const craft::v1::WorkerMessage* message) { StartWrite(message); },
            [this](const grpc::Status&) { RemoveHold(); },
            [this](const craft::v1::WorkerMessage& message) { link_->OnWritten(message); }) {}

  // Guarded by the link's mu_ while this is its current call (the link routes
  // Send through it).
  StreamWriter<craft::v1::WorkerMessage>& writer() { return writer_; }

  // Starts the writes queued so far (the hello first) and keeps one read
  // pending. The hold keeps the stream alive for writes started outside
  // reactions (AgentLink::Send) until the writer's end releases it.
  void Begin(craft::v1::NodeAgent::Stub* stub) {
    stub->async()->Attach(&context_, this);
    AddHold();
    writer_.Open();
    StartRead(&command_);
    StartCall();
  }

  void Cancel() { context_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      writer_.Close(grpc::Status::OK);
      return;
    }
    // Handled before the next read starts, so commands keep their order.
    link_->OnCommand(command_);
    command_.Clear();
    StartRead(&command_);
  }
  // A failed write ends the writer; the pending read fails next.
  void OnWriteDone(bool ok) override { writer_.OnWriteDone(ok); }
  // The last reaction: the link thread deletes this Call once it has run.
  void OnDone(const grpc::Status& status) override { link_->OnCallDone(status); }

 private:
  static bool IsWindow(const craft::v1::WorkerMessage& message) { return message.has_window(); }

  AgentLink* const link_;
  grpc::ClientContext context_;
  craft::v1::WorkerCommand command_;
  StreamWriter<craft::v1::WorkerMessage> writer_;
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
  absl::MutexLock lock(&mu_);
  if (stopping_) return;
  EnqueueLocked(std::move(message));
}

void AgentLink::EnqueueLocked(craft::v1::WorkerMessage message) {
  if (call_ != nullptr) {
    StreamWriter<craft::v1::WorkerMessage>::Pushed pushed =
        call_->writer().Push(std::move(message));
    if (pushed.accepted) {
      if (pushed.left_out.has_value()) CountDroppedWindowLocked();
      return;
    }
    message = std::move(*pushed.left_out);  // that stream has ended: as if none were open
  }
  if (!message.has_window()) {
    CRAFT_LOG(WARNING) << "no agent stream: dropping status of version "
                       << message.status().version();
    return;
  }
  backlog_.push_back(std::move(message));
  TrimBacklogLocked();
}

void AgentLink::TrimBacklogLocked() {
  while (backlog_.size() > options_.max_queued_windows) {
    backlog_.pop_front();
    CountDroppedWindowLocked();
  }
}

void AgentLink::CountDroppedWindowLocked() {
  ++dropped_windows_;  // logged once the next stream opens
  ++stats_.windows_dropped;
}

AgentLink::Stats AgentLink::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

bool AgentLink::CallDoneOrStopping() const { return call_done_ || stopping_; }

void AgentLink::OnCommand(const craft::v1::WorkerCommand& command) { on_command_(command); }

void AgentLink::OnWritten(const craft::v1::WorkerMessage& message) {
  if (!message.has_hello()) return;
  absl::MutexLock lock(&mu_);
  stats_.attached = true;
  ++stats_.attaches;
  CRAFT_LOG(INFO) << "attached to agent at " << options_.target << " (serving "
                  << message.hello().committed_version() << ")";
  if (dropped_windows_ > 0) {
    CRAFT_LOG(WARNING) << "dropped the " << dropped_windows_
                       << " oldest windows while no agent stream was open";
    dropped_windows_ = 0;
  }
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
  auto call = std::make_unique<Call>(this, options_.max_queued_windows);
  {
    absl::MutexLock lock(&mu_);
    call_ = call.get();
    call_done_ = false;
    // The hello first, then the windows that waited for a stream.
    EnqueueLocked(std::move(hello));
    std::deque<craft::v1::WorkerMessage> waiting = std::exchange(backlog_, {});
    for (craft::v1::WorkerMessage& message : waiting) EnqueueLocked(std::move(message));
  }
  call->Begin(stub.get());

  mu_.Lock();
  mu_.Await(absl::Condition(this, &AgentLink::CallDoneOrStopping));
  const bool cancel = !call_done_;
  mu_.Unlock();
  if (cancel) call->Cancel();

  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(&call_done_));
  call_ = nullptr;
  // The windows the stream did not send wait for the next one, ahead of those
  // sent since it ended; answers to its commands mean nothing there.
  std::deque<craft::v1::WorkerMessage> unsent = call->writer().TakeUnsent();
  unsent.erase(std::remove_if(unsent.begin(), unsent.end(),
                              [](const craft::v1::WorkerMessage& m) { return !m.has_window(); }),
               unsent.end());
  for (craft::v1::WorkerMessage& message : backlog_) unsent.push_back(std::move(message));
  backlog_ = std::move(unsent);
  TrimBacklogLocked();
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
