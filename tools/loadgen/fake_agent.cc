#include "tools/loadgen/fake_agent.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "wire/layout_delta.h"
#include "wire/version.h"

namespace craft::loadgen {

using craft::v1::AgentMessage;
using craft::v1::PlannerMessage;

namespace {

bool IsLoad(const AgentMessage& message) { return message.has_load(); }

}  // namespace

FakeAgent::FakeAgent(FakeAgentOptions options, FakeAgentEnv env)
    : options_(std::move(options)),
      env_(std::move(env)),
      rng_(options_.seed),
      serving_version_(kInitialVersion),
      serving_(env_.initial),
      writer_(
          DropPolicy<AgentMessage>::DropOldestOf(
              static_cast<size_t>(std::max(options_.max_queued_loads, 0)), IsLoad),
          [this](const AgentMessage* message) { StartWrite(message); },
          [this](const grpc::Status&) { RemoveHold(); },
          [this](const AgentMessage& message) { OnWritten(message); }) {}

void FakeAgent::Start(craft::v1::AgentGateway::Stub* stub) {
  stub->async()->Connect(&context_, this);
  AgentMessage message;
  craft::v1::AgentHello* hello = message.mutable_hello();
  hello->set_node(options_.node);
  hello->set_group(options_.group);
  for (int rank : options_.gpus) {
    craft::v1::GpuInfo* gpu = hello->add_gpus();
    gpu->set_rank(rank);
    gpu->set_transfer_endpoint("loadgen.invalid:1");  // never dialled: nothing is fetched
  }
  *hello->mutable_model() = options_.model;
  hello->set_committed_version(kInitialVersion);
  writer_.Push(std::move(message));
  AddHold();  // writes also start outside reactions; the writer releases it at its end
  writer_.Open();
  StartRead(&incoming_);
  StartCall();
}

void FakeAgent::SendWindow(int64_t window_id) {
  std::shared_ptr<const SlotLoads> slots;
  std::string version;
  if (writer_.closed()) return;
  {
    absl::MutexLock lock(&mu_);
    if (!welcomed_) return;
    slots = serving_;
    version = serving_version_;
  }
  // The traffic may have drifted since the served layout's loads were made.
  if (absl::StatusOr<std::shared_ptr<const SlotLoads>> now = env_.slot_loads->Get(version);
      now.ok()) {
    slots = *std::move(now);
  }
  AgentMessage message;
  craft::v1::NodeLoad* load = message.mutable_load();
  const int num_layers = options_.model.num_layers();
  for (int gpu : options_.gpus) {
    craft::v1::GpuWindow* window = load->add_gpus();
    window->set_gpu(gpu);
    window->set_layout_version(version);
    window->set_window_id(window_id);
    window->set_start_unix_ms(window_id * options_.window_ms);
    window->set_duration_ms(options_.window_ms);
    window->mutable_layers()->Reserve(num_layers);
    for (int l = 0; l < num_layers; ++l) {
      AppendJittered(slots->Counts(gpu, l), options_.jitter, &rng_,
                     window->add_layers()->mutable_counts());
    }
  }
  Enqueue(std::move(message));
}

void FakeAgent::Cancel() { context_.TryCancel(); }

grpc::Status FakeAgent::status() const {
  absl::MutexLock lock(&mu_);
  return status_;
}

bool FakeAgent::welcomed() const {
  absl::MutexLock lock(&mu_);
  return welcomed_;
}

bool FakeAgent::closed() const { return writer_.closed(); }

bool FakeAgent::idle() const { return writer_.idle(); }

FakeAgentCounters FakeAgent::counters() const {
  absl::MutexLock lock(&mu_);
  FakeAgentCounters counters = counters_;
  counters.loads_dropped = writer_.dropped();
  return counters;
}

void FakeAgent::OnReadDone(bool ok) {
  if (!ok) {
    // Once the write in flight (if any) is done the writer releases the
    // hold, and OnDone may follow on another thread.
    writer_.Close(grpc::Status::OK);
    return;
  }
  Handle(incoming_);
  StartRead(&incoming_);
}

// A failed write ends the writer: the call is over; the pending read fails
// next.
void FakeAgent::OnWriteDone(bool ok) { writer_.OnWriteDone(ok); }

void FakeAgent::OnWritten(const AgentMessage& message) {
  if (!message.has_load()) return;
  absl::MutexLock lock(&mu_);
  counters_.gpu_windows_sent += message.load().gpus_size();
}

void FakeAgent::OnDone(const grpc::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    status_ = status;
  }
  env_.streams_done->DecrementCount();  // last touch: the owner may delete us now
}

void FakeAgent::Handle(const PlannerMessage& message) {
  switch (message.body_case()) {
    case PlannerMessage::kWelcome: {
      absl::MutexLock lock(&mu_);
      welcomed_ = true;
      break;
    }
    case PlannerMessage::kPrepare:
      HandlePrepare(message);
      break;
    case PlannerMessage::kCommit: {
      const std::string& version = message.commit().version();
      env_.recorder->Committed(version);
      bool known = false;
      {
        absl::MutexLock lock(&mu_);
        if (version == prepared_version_) {
          known = true;
          serving_version_ = version;
          serving_ = std::move(prepared_);
          prepared_version_.clear();
        }
      }
      if (known) {
        Answer(message.nonce(), version, craft::v1::COMMITTED);
      } else {
        AgentMessage nack;
        nack.mutable_nack()->set_nonce(message.nonce());
        nack.mutable_nack()->set_version(version);
        nack.mutable_nack()->mutable_error()->set_code(craft::v1::UNKNOWN_VERSION);
        Enqueue(std::move(nack));
      }
      break;
    }
    case PlannerMessage::kAbort: {
      const std::string& version = message.abort().version();
      env_.recorder->Aborted(version);
      {
        absl::MutexLock lock(&mu_);
        if (version == prepared_version_) {
          prepared_version_.clear();
          prepared_.reset();
        }
      }
      Answer(message.nonce(), version, craft::v1::ABORTED);
      break;
    }
    case PlannerMessage::BODY_NOT_SET:
      break;
  }
}

absl::StatusOr<std::shared_ptr<const SlotLoads>> FakeAgent::PreparedSlots(
    const craft::v1::Prepare& prepare) {
  if (!prepare.has_layout_delta()) return env_.slot_loads->Get(prepare.layout());
  const std::string& base = prepare.layout_delta().base_version();
  {
    absl::MutexLock lock(&mu_);
    if (base != serving_version_) {
      return absl::FailedPreconditionError(
          absl::StrCat("layout delta from ", base, ", but this node serves ", serving_version_));
    }
  }
  return env_.slot_loads->Get(prepare.layout_delta());
}

void FakeAgent::HandlePrepare(const PlannerMessage& message) {
  const std::string& version = PrepareVersion(message.prepare());
  env_.recorder->Prepared(version, static_cast<int64_t>(message.ByteSizeLong()));
  absl::StatusOr<std::shared_ptr<const SlotLoads>> slots = PreparedSlots(message.prepare());
  if (!slots.ok()) {
    AgentMessage nack;
    nack.mutable_nack()->set_nonce(message.nonce());
    nack.mutable_nack()->set_version(version);
    nack.mutable_nack()->mutable_error()->set_code(craft::v1::BAD_LAYOUT);
    nack.mutable_nack()->mutable_error()->set_message(std::string(slots.status().message()));
    {
      absl::MutexLock lock(&mu_);
      nack.mutable_nack()->set_last_good_version(serving_version_);
      ++counters_.bad_layouts;
    }
    Enqueue(std::move(nack));
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    prepared_version_ = version;
    prepared_ = *std::move(slots);
  }
  auto ack = [this, nonce = message.nonce(), version] {
    Answer(nonce, version, craft::v1::PREPARED);
  };
  if (options_.stage_delay > absl::ZeroDuration()) {
    env_.timers->RunAfter(options_.stage_delay, std::move(ack));
  } else {
    ack();
  }
}

void FakeAgent::Answer(const std::string& nonce, const std::string& version,
                       craft::v1::AckPhase phase) {
  AgentMessage answer;
  answer.mutable_ack()->set_nonce(nonce);
  answer.mutable_ack()->set_version(version);
  answer.mutable_ack()->set_phase(phase);
  Enqueue(std::move(answer));
}

void FakeAgent::Enqueue(AgentMessage message) { writer_.Push(std::move(message)); }

}  // namespace craft::loadgen
