// Fuzzes the planner's handling of agent streams: hellos, acks, nacks and
// load windows (craft.v1.AgentMessage) from a few concurrent streams, fed to
// the real ApplyCoordinator and LoadStore as AgentGatewayService feeds them,
// interleaved with applies the replan loop starts, time passing, streams
// ending, draining and restarts. Input: a serialized craft.fuzz.PlannerSession.
//
// After every step it checks what must hold whatever the agents say: no GPU
// claimed by two connected nodes, the committed layout valid and persisted,
// every planner message under the current epoch, the load trace valid.
#include <algorithm>
#include <array>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "server/apply_coordinator.h"
#include "server/layout_history.h"
#include "server/load_store.h"
#include "server/state_store.h"
#include "tests/fuzz/fuzz_session.pb.h"
#include "tests/fuzz/fuzz_target.h"
#include "wire/layout_delta.h"
#include "wire/layout_proto.h"

namespace craft::fuzz {
namespace {

using craft::v1::AgentMessage;
using craft::v1::PlannerMessage;

constexpr int kStreams = 4;
constexpr int kMaxSteps = 200;
constexpr int64_t kMaxAdvanceMs = 3'600'000;

// The cluster every session runs against: 2 layers x 4 experts, top-2, 4
// GPUs on 2 nodes, a 5 s apply timeout, windows within 60 s of the clock.
server::CoordinatorOptions Options() {
  server::CoordinatorOptions options;
  options.model = {2, 4, 2, 1000};
  options.cluster = {4, 2};
  options.apply_timeout = absl::Seconds(5);
  options.resync_retry = absl::Seconds(2);
  return options;
}

// The coordinator's handle on one stream: records what it is sent.
class FakeLink final : public server::AgentConnection {
 public:
  void Send(const PlannerMessage& message) override {
    if (!message.has_welcome()) last_ = message;
    sent_.push_back(message);
  }
  void Close(const absl::Status& status) override { closed_ = true; }

  const std::vector<PlannerMessage>& sent() const { return sent_; }
  const PlannerMessage& last() const { return last_; }  // the last non-welcome
  bool closed() const { return closed_; }

 private:
  std::vector<PlannerMessage> sent_;
  PlannerMessage last_;
  bool closed_ = false;
};

struct Stream {
  std::shared_ptr<FakeLink> link;  // null: no stream open
  std::string node;                // set by an accepted hello
  std::vector<int> gpus;
};

class Planner {
 public:
  Planner() { Start(); }

  void Run(const PlannerSession& session) {
    const int steps = std::min(session.steps_size(), kMaxSteps);
    for (int i = 0; i < steps; ++i) {
      Step(session.steps(i));
      EndClosedStreams();
      CheckInvariants();
    }
  }

 private:
  // A coordinator (a new epoch) on the persisted state; streams of the
  // previous one are gone with it.
  void Start() {
    streams_ = {};
    loads_.reset();
    coordinator_.reset();
    history_ = std::make_unique<server::LayoutHistory>(8);
    absl::StatusOr<std::unique_ptr<server::ApplyCoordinator>> created =
        server::ApplyCoordinator::Create(Options(), &store_, history_.get(), &clock_);
    CRAFT_FUZZ_CHECK(created.ok())
        << "a coordinator cannot start on what the last one persisted: " << created.status();
    coordinator_ = *std::move(created);
    server::LoadStoreOptions load_options;
    load_options.num_layers = Options().model.num_layers;
    load_options.num_experts = Options().model.num_experts;
    load_options.cluster = Options().cluster;
    load_options.horizon = 8;
    load_options.clock = &clock_;
    load_options.max_clock_skew = absl::Seconds(60);
    loads_ = std::make_unique<server::LoadStore>(load_options, history_.get());
  }

  void Step(const PlannerStep& step) {
    switch (step.step_case()) {
      case PlannerStep::kMessage:
        Deliver(StreamIndex(step.message().stream()), step.message().message());
        return;
      case PlannerStep::kEndStream:
        End(streams_[StreamIndex(step.end_stream())]);
        return;
      case PlannerStep::kAnswer:
        Answer(step.answer());
        return;
      case PlannerStep::kStartApply: {
        // The replan loop only hands over layouts it made, which are valid.
        absl::StatusOr<planner::Layout> layout = LayoutFromProto(step.start_apply());
        if (layout.ok()) coordinator_->StartApply(*layout).status().IgnoreError();
        return;
      }
      case PlannerStep::kAdvanceMs:
        clock_.Advance(
            absl::Milliseconds(std::clamp<int64_t>(step.advance_ms(), 0, kMaxAdvanceMs)));
        coordinator_->CheckTimeouts();
        return;
      case PlannerStep::kDrain:
        coordinator_->BeginDrain();
        return;
      case PlannerStep::kRestart:
        Start();
        return;
      case PlannerStep::STEP_NOT_SET:
        return;
    }
  }

  static int StreamIndex(int32_t stream) {
    return static_cast<int>((static_cast<int64_t>(stream) % kStreams + kStreams) % kStreams);
  }

  // What AgentStream::Handle (server/agent_gateway.cc) does with one message
  // once the Authorizer let the hello's node through (it needs a real gRPC
  // peer); an error ends the stream.
  void Deliver(int index, const AgentMessage& message) {
    Stream& stream = streams_[index];
    if (stream.link == nullptr) stream.link = std::make_shared<FakeLink>();  // a new stream
    if (stream.node.empty()) {
      if (!message.has_hello() || !coordinator_->Connect(message.hello(), stream.link).ok()) {
        End(stream);
        return;
      }
      stream.node = message.hello().node();
      for (const craft::v1::GpuInfo& gpu : message.hello().gpus())
        stream.gpus.push_back(gpu.rank());
      return;
    }
    switch (message.body_case()) {
      case AgentMessage::kHello:  // sent twice: INVALID_ARGUMENT
        End(stream);
        return;
      case AgentMessage::kAck:
        coordinator_->HandleAck(stream.node, stream.link.get(), message.ack());
        return;
      case AgentMessage::kNack:
        coordinator_->HandleNack(stream.node, stream.link.get(), message.nack());
        return;
      case AgentMessage::kLoad:
        coordinator_->OnLoad(stream.node, stream.link.get(), message.load());
        for (const craft::v1::GpuWindow& window : message.load().gpus()) {
          const int64_t rejected = loads_->rejected_total();
          const absl::Status ingested = loads_->Ingest(window, stream.gpus);
          if (!ingested.ok()) coordinator_->CountRejectedWindows(stream.node, 1);
          CRAFT_FUZZ_CHECK(ingested.ok() == (loads_->rejected_total() == rejected))
              << "a window was refused without being counted, or counted and taken: " << ingested;
          CRAFT_FUZZ_CHECK(ingested.ok() || absl::IsInvalidArgument(ingested)) << ingested;
        }
        return;
      case AgentMessage::BODY_NOT_SET:
        return;
    }
  }

  // gRPC's OnDone for the stream.
  void End(Stream& stream) {
    if (stream.link != nullptr && !stream.node.empty()) {
      coordinator_->Disconnect(stream.node, stream.link.get());
    }
    stream = Stream{};
  }

  // Streams the coordinator closed (a newer stream of the same node) end.
  void EndClosedStreams() {
    for (Stream& stream : streams_) {
      if (stream.link != nullptr && stream.link->closed()) End(stream);
    }
  }

  void Answer(const AnswerLast& answer) {
    Stream& stream = streams_[StreamIndex(answer.stream())];
    if (stream.link == nullptr || stream.link->sent().empty()) return;
    const PlannerMessage& last = stream.link->last();
    std::string version;
    if (last.has_prepare()) version = PrepareVersion(last.prepare());
    if (last.has_commit()) version = last.commit().version();
    if (last.has_abort()) version = last.abort().version();
    AgentMessage message;
    if (answer.nack()) {
      craft::v1::Nack* nack = message.mutable_nack();
      nack->set_nonce(last.nonce());
      nack->set_version(version);
      nack->set_last_good_version(answer.last_good_version());
      nack->mutable_error()->set_code(answer.code());
      *nack->mutable_error()->mutable_gpus() = answer.gpus();
    } else {
      craft::v1::Ack* ack = message.mutable_ack();
      ack->set_nonce(last.nonce());
      ack->set_version(version);
      ack->set_phase(answer.phase());
    }
    Deliver(StreamIndex(answer.stream()), message);
  }

  void CheckInvariants() {
    const int64_t epoch = coordinator_->epoch();
    const server::CommittedLayout committed = coordinator_->committed();
    CRAFT_FUZZ_CHECK(committed.layout != nullptr && committed.layout->Validate().ok())
        << "committed layout " << committed.version << " is invalid";
    CRAFT_FUZZ_CHECK(committed.layout->num_layers() == Options().model.num_layers &&
                     committed.layout->num_experts == Options().model.num_experts &&
                     committed.layout->cluster.num_gpus == Options().cluster.num_gpus)
        << "committed layout " << committed.version << " does not fit the configuration";
    CRAFT_FUZZ_CHECK(history_->Find(committed.version) != nullptr)
        << "committed version " << committed.version << " is not in the layout history";

    absl::StatusOr<std::optional<server::PlannerState>> persisted = store_.Load();
    CRAFT_FUZZ_CHECK(persisted.ok() && persisted->has_value()) << "nothing persisted";
    CRAFT_FUZZ_CHECK((*persisted)->epoch == epoch &&
                     (*persisted)->committed.version() == committed.version)
        << "persisted epoch " << (*persisted)->epoch << " version "
        << (*persisted)->committed.version() << ", serving epoch " << epoch << " version "
        << committed.version;

    const server::CoordinatorStats stats = coordinator_->stats();
    CRAFT_FUZZ_CHECK(stats.applies_committed + stats.applies_aborted <= stats.applies_started &&
                     stats.applies_started - stats.applies_committed - stats.applies_aborted <= 1)
        << "applies: " << stats.applies_started << " started, " << stats.applies_committed
        << " committed, " << stats.applies_aborted << " aborted";
    if (!coordinator_->apply_in_progress()) {
      CRAFT_FUZZ_CHECK(coordinator_->pending_version().empty());
    }

    // One connected node per GPU: a second claim is refused (ALREADY_EXISTS).
    // At most one entry per node of the cluster, whatever names hellos use.
    const std::vector<server::AgentSnapshot> agents = coordinator_->Agents();
    CRAFT_FUZZ_CHECK(static_cast<int>(agents.size()) <= Options().cluster.num_nodes)
        << agents.size() << " nodes known in a cluster of " << Options().cluster.num_nodes;
    std::set<int> claimed;
    for (const server::AgentSnapshot& agent : agents) {
      if (!agent.connected) continue;
      for (int gpu : agent.gpus) {
        CRAFT_FUZZ_CHECK(gpu >= 0 && gpu < Options().cluster.num_gpus) << "GPU " << gpu;
        CRAFT_FUZZ_CHECK(claimed.insert(gpu).second)
            << "GPU " << gpu << " is claimed by two connected nodes";
      }
    }
    if (std::optional<int64_t> headroom = coordinator_->MinStagingHeadroom()) {
      CRAFT_FUZZ_CHECK(*headroom >= 0) << "negative staging headroom " << *headroom;
    }
    coordinator_->OutOfSyncNodes();
    coordinator_->NextDeadline();

    // The planner speaks only under its own epoch, with a fresh nonce each time.
    for (const Stream& stream : streams_) {
      if (stream.link == nullptr) continue;
      std::set<std::string> nonces;
      for (const PlannerMessage& message : stream.link->sent()) {
        CRAFT_FUZZ_CHECK(message.epoch() == epoch)
            << "a message under epoch " << message.epoch() << ", ours is " << epoch;
        CRAFT_FUZZ_CHECK(absl::StartsWith(message.nonce(), absl::StrCat(epoch, "-")) &&
                         nonces.insert(message.nonce()).second)
            << "nonce " << message.nonce() << " repeated or not of epoch " << epoch;
      }
    }

    const planner::LoadTrace trace = loads_->Trace();
    CRAFT_FUZZ_CHECK(trace.num_windows() <= 8) << trace.num_windows() << " windows kept";
    if (trace.num_windows() > 0) {
      CRAFT_FUZZ_CHECK(trace.Validate().ok()) << "the load trace is invalid: " << trace.Validate();
    }
    if (std::optional<server::MeasuredBalance> measured = loads_->Measured(committed.version)) {
      CRAFT_FUZZ_CHECK(measured->mean >= 0 && measured->mean <= 1 + 1e-9)
          << "measured balancedness " << measured->mean;
    }
  }

  FakeClock clock_;
  server::InMemoryStateStore store_;
  std::unique_ptr<server::LayoutHistory> history_;
  std::unique_ptr<server::ApplyCoordinator> coordinator_;
  std::unique_ptr<server::LoadStore> loads_;
  std::array<Stream, kStreams> streams_;
};

}  // namespace

const google::protobuf::Message* InputMessage() { return &PlannerSession::default_instance(); }

}  // namespace craft::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  craft::fuzz::PlannerSession session;
  if (!session.ParseFromArray(data, static_cast<int>(size))) return 0;
  craft::fuzz::Planner planner;
  planner.Run(session);
  return 0;
}
