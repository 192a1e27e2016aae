// Fuzzes the agent's handling of its planner stream (craft.v1.PlannerMessage:
// Welcome, Prepare, Commit, Abort) and of its workers' streams
// (craft.v1.WorkerMessage: hellos, windows, statuses), fed to the real
// NodeState as PlannerLink and WorkerService feed them, interleaved with
// time passing, streams ending and restarts. Input: a serialized
// craft.fuzz.AgentSession.
//
// After every step it checks what must hold whatever the peers say: what the
// agent persists reads back the same, the epoch it fences with never goes
// down, it forwards to workers only layouts that parse, and its hello is one
// the planner accepts.
#include <algorithm>
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "agent/channels.h"
#include "agent/node_state.h"
#include "agent/state_file.h"
#include "common/clock.h"
#include "server/apply_coordinator.h"
#include "tests/fuzz/fuzz_session.pb.h"
#include "tests/fuzz/fuzz_target.h"
#include "wire/layout_proto.h"
#include "wire/limits.h"

namespace craft::fuzz {
namespace {

using craft::v1::WorkerCommand;
using craft::v1::WorkerMessage;

constexpr int kWorkerStreams = 4;
constexpr int kMaxSteps = 200;
constexpr int64_t kMaxAdvanceMs = 3'600'000;

// The agent's state store as FileStateStore persists it (the text format),
// kept in memory: whatever the agent saves must read back the same, or the
// agent could not start again after a restart.
class TextStateStore final : public agent::StateStore {
 public:
  absl::StatusOr<agent::AgentState> Load() override {
    if (text_.empty()) return agent::AgentState{};
    return agent::ParseAgentState(text_);
  }
  absl::Status Save(const agent::AgentState& state) override {
    CRAFT_FUZZ_CHECK(state.committed_version.find('\n') == std::string::npos)
        << "FileStateStore refuses to save committed_version '" << state.committed_version << "'";
    text_ = agent::SerializeAgentState(state);
    absl::StatusOr<agent::AgentState> read = agent::ParseAgentState(text_);
    // The model is kept as its four numbers: fields a newer planner might add
    // to ModelShape (unknown here) are not part of it.
    agent::AgentState known = state;
    if (known.model.has_value()) known.model->DiscardUnknownFields();
    CRAFT_FUZZ_CHECK(read.ok() && *read == known)
        << "the agent's state does not read back: " << read.status() << "\n"
        << text_;
    return absl::OkStatus();
  }

 private:
  std::string text_;
};

class FakePlanner final : public agent::PlannerChannel {
 public:
  void Send(const craft::v1::AgentMessage& message) override { sent_.push_back(message); }
  void Reconnect() override { reconnect_ = true; }
  bool TakeReconnect() { return std::exchange(reconnect_, false); }

 private:
  std::vector<craft::v1::AgentMessage> sent_;
  bool reconnect_ = false;
};

// One worker stream as WorkerService's reactor sees it.
class FakeWorker final : public agent::WorkerChannel {
 public:
  void Send(const WorkerCommand& command) override {
    if (command.has_prepare()) {
      const craft::v1::Prepare& prepare = command.prepare();
      CRAFT_FUZZ_CHECK(!prepare.has_layout_delta())
          << "the agent forwarded a layout delta; workers get the full layout";
      CRAFT_FUZZ_CHECK(LayoutFromProto(prepare.layout()).ok())
          << "the agent forwarded a Prepare whose layout does not parse: "
          << LayoutFromProto(prepare.layout()).status();
      const std::string& version = prepare.layout().version();
      CRAFT_FUZZ_CHECK(!version.empty() && version.size() <= kMaxVersionBytes)
          << "the agent forwarded a Prepare of version '" << version << "'";
    }
    if (command.has_commit()) {
      CRAFT_FUZZ_CHECK(!command.commit().version().empty())
          << "the agent forwarded a Commit without a version";
    }
    last_ = command;
    has_last_ = true;
  }
  // NodeState detached the worker and ends its stream.
  void Close(const absl::Status& status) override { closed = true; }

  int gpu = -1;         // set when its hello is accepted
  bool closed = false;  // NodeState ended the stream
  bool has_last() const { return has_last_; }
  const WorkerCommand& last() const { return last_; }

 private:
  WorkerCommand last_;
  bool has_last_ = false;
};

class Agent {
 public:
  explicit Agent(const AgentSession& session) {
    const auto check = [](int32_t value) { return std::clamp<int32_t>(value, 0, 1 << 20); };
    options_.node = "node0";
    options_.gpus = {0, 1};
    options_.model_check = {check(session.model_check().num_layers()),
                            check(session.model_check().num_experts()),
                            check(session.model_check().top_k())};
    Start();
  }

  void Run(const AgentSession& session) {
    const int steps = std::min(session.steps_size(), kMaxSteps);
    for (int i = 0; i < steps; ++i) {
      Step(session.steps(i));
      for (auto& worker : workers_) {
        if (worker != nullptr && worker->closed) worker.reset();  // gRPC's OnDone
      }
      if (planner_.TakeReconnect()) {  // PlannerLink ends the stream and opens a new one
        DisconnectPlanner();
        ConnectPlanner();
      }
      CheckInvariants();
    }
  }

 private:
  // A NodeState on what the last one persisted; worker and planner streams
  // are gone with the old one.
  void Start() {
    node_.reset();
    for (auto& worker : workers_) worker.reset();
    planner_connected_ = false;
    absl::StatusOr<std::unique_ptr<agent::NodeState>> created =
        agent::NodeState::Create(options_, &clock_, &store_, &planner_);
    CRAFT_FUZZ_CHECK(created.ok())
        << "the agent cannot start on what it persisted: " << created.status();
    node_ = *std::move(created);
  }

  void Step(const AgentStep& step) {
    switch (step.step_case()) {
      case AgentStep::kWorker:
        DeliverToAgent(WorkerIndex(step.worker().stream()), step.worker().message());
        return;
      case AgentStep::kEndWorkerStream:
        EndWorker(WorkerIndex(step.end_worker_stream()));
        return;
      case AgentStep::kWorkerAnswer:
        AnswerCommand(step.worker_answer());
        return;
      case AgentStep::kPlanner:
        if (!planner_connected_) ConnectPlanner();
        node_->OnPlannerMessage(step.planner());
        return;
      case AgentStep::kPlannerDisconnect:
        if (planner_connected_) DisconnectPlanner();
        return;
      case AgentStep::kAdvanceMs:
        clock_.Advance(
            absl::Milliseconds(std::clamp<int64_t>(step.advance_ms(), 0, kMaxAdvanceMs)));
        node_->Poll();
        return;
      case AgentStep::kRestart:
        Start();
        return;
      case AgentStep::STEP_NOT_SET:
        return;
    }
  }

  static int WorkerIndex(int32_t stream) {
    return static_cast<int>((static_cast<int64_t>(stream) % kWorkerStreams + kWorkerStreams) %
                            kWorkerStreams);
  }

  // What WorkerService's AttachReactor::Handle does with one message; an
  // error ends the stream.
  void DeliverToAgent(int index, const WorkerMessage& message) {
    std::unique_ptr<FakeWorker>& worker = workers_[index];
    if (worker == nullptr) worker = std::make_unique<FakeWorker>();  // a new stream
    absl::Status status;
    if (message.has_hello()) {
      if (worker->gpu >= 0) {
        status = message.hello().gpu() != worker->gpu
                     ? absl::InvalidArgumentError("hello for another gpu")
                     : node_->UpdateWorker(message.hello(), worker.get());
      } else {
        status = node_->AttachWorker(message.hello(), worker.get());
        if (status.ok()) worker->gpu = message.hello().gpu();
      }
    } else if (worker->gpu < 0) {
      status = absl::InvalidArgumentError("the first message must be a WorkerHello");
    } else if (message.has_window()) {
      status = node_->OnWorkerWindow(worker->gpu, message.window());
    } else if (message.has_status()) {
      node_->OnWorkerStatus(worker->gpu, message.status());
    } else {
      status = absl::InvalidArgumentError("empty WorkerMessage");
    }
    if (!status.ok()) EndWorker(index);
  }

  void EndWorker(int index) {
    std::unique_ptr<FakeWorker>& worker = workers_[index];
    if (worker != nullptr && worker->gpu >= 0) node_->DetachWorker(worker->gpu, worker.get());
    worker.reset();
  }

  void AnswerCommand(const WorkerAnswer& answer) {
    const int index = WorkerIndex(answer.stream());
    const FakeWorker* worker = workers_[index].get();
    if (worker == nullptr || !worker->has_last()) return;
    const WorkerCommand& last = worker->last();
    WorkerMessage message;
    craft::v1::WorkerStatus* status = message.mutable_status();
    status->set_version(last.has_prepare()  ? last.prepare().layout().version()
                        : last.has_commit() ? last.commit().version()
                                            : last.abort().version());
    status->set_state(answer.state());
    status->set_error(answer.error());
    DeliverToAgent(index, message);
  }

  // PlannerLink: the hello goes out first on every stream.
  void ConnectPlanner() {
    const craft::v1::AgentHello hello = node_->MakeHello();
    CheckHello(hello);
    node_->OnPlannerConnected();
    planner_connected_ = true;
  }

  void DisconnectPlanner() {
    node_->OnPlannerDisconnected();
    planner_connected_ = false;
  }

  // The hello describes this node, within the bounds the planner checks
  // (server/apply_coordinator.cc CheckHello): one it refuses would keep the
  // node away from the planner for good.
  void CheckHello(const craft::v1::AgentHello& hello) {
    CRAFT_FUZZ_CHECK(hello.node() == options_.node) << hello.node();
    CRAFT_FUZZ_CHECK(hello.gpus_size() == static_cast<int>(options_.gpus.size()))
        << hello.ShortDebugString();
    CRAFT_FUZZ_CHECK(hello.committed_version().size() <= kMaxVersionBytes &&
                     hello.prepared_version().size() <= kMaxVersionBytes)
        << "the hello carries a version the planner refuses: " << hello.ShortDebugString();
    for (int i = 0; i < hello.gpus_size(); ++i) {
      const craft::v1::GpuInfo& gpu = hello.gpus(i);
      CRAFT_FUZZ_CHECK(gpu.rank() == options_.gpus[i]) << hello.ShortDebugString();
      CRAFT_FUZZ_CHECK(gpu.transfer_endpoint().size() <= kMaxEndpointBytes &&
                       gpu.serving_version().size() <= kMaxVersionBytes)
          << "the hello carries a GPU the planner refuses: " << gpu.ShortDebugString();
      CRAFT_FUZZ_CHECK(gpu.transfer_group_id().empty() ||
                       gpu.transfer_group_id().size() == kTransferGroupIdBytes)
          << gpu.ShortDebugString();
    }
  }

  void CheckInvariants() {
    const int64_t epoch = node_->highest_epoch();
    CRAFT_FUZZ_CHECK(epoch >= highest_epoch_)
        << "the fencing epoch went down from " << highest_epoch_ << " to " << epoch;
    highest_epoch_ = epoch;
    const agent::NodeState::Stats stats = node_->stats();
    CRAFT_FUZZ_CHECK(stats.windows_rejected <= stats.windows_received &&
                     stats.windows_malformed + stats.windows_out_of_order == stats.windows_rejected)
        << "window counts: " << stats.windows_received << " received, " << stats.windows_rejected
        << " rejected";
    CRAFT_FUZZ_CHECK(stats.planner_connected == planner_connected_);
    node_->committed_version();
    node_->apply_pending();
    node_->model();
  }

  agent::NodeState::Options options_;
  FakeClock clock_;
  TextStateStore store_;
  FakePlanner planner_;
  std::unique_ptr<agent::NodeState> node_;
  std::array<std::unique_ptr<FakeWorker>, kWorkerStreams> workers_;
  bool planner_connected_ = false;
  int64_t highest_epoch_ = 0;
};

}  // namespace

const google::protobuf::Message* InputMessage() { return &AgentSession::default_instance(); }

}  // namespace craft::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  craft::fuzz::AgentSession session;
  if (!session.ParseFromArray(data, static_cast<int>(size))) return 0;
  craft::fuzz::Agent agent(session);
  agent.Run(session);
  return 0;
}
