#include "gpu_worker/worker.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/crash_point.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "planner/initial_layout.h"
#include "wire/layout_proto.h"
#include "wire/version.h"

namespace craft::gpu_worker {
namespace {

using craft::v1::WorkerCommand;
using craft::v1::WorkerMessage;
using craft::v1::WorkerState;

// Commands queue only while a Prepare stages; the agent sends one at a time.
constexpr size_t kMaxQueuedCommands = 64;
constexpr absl::Duration kServerShutdownGrace = absl::Seconds(1);

// The host of "host:port" ("[::1]:0" -> "[::1]").
std::string HostOf(const std::string& address) {
  const size_t colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

std::string AdvertisedHost(const std::string& listen, const std::string& advertise) {
  if (!advertise.empty()) return advertise;
  const std::string host = HostOf(listen);
  if (host.empty() || host == "0.0.0.0" || host == "[::]" || host == "::") {
    char name[256] = {};
    if (gethostname(name, sizeof(name) - 1) == 0) return name;
    return "localhost";
  }
  return host;
}

std::string StateName(WorkerState state) { return craft::v1::WorkerState_Name(state); }

}  // namespace

absl::StatusOr<std::unique_ptr<Worker>> Worker::Create(WorkerOptions options,
                                                       std::unique_ptr<Backend> backend,
                                                       TrafficGenerator traffic, Clock* clock) {
  const WorkerShape& shape = options.shape;
  CRAFT_RETURN_IF_ERROR(shape.Validate());
  if (traffic.num_layers() != shape.num_layers || traffic.num_experts() != shape.num_experts ||
      traffic.options().top_k != shape.top_k) {
    return absl::InvalidArgumentError(
        absl::StrCat("traffic has ", traffic.num_layers(), " layers x ", traffic.num_experts(),
                     " experts, top ", traffic.options().top_k, "; the worker runs ",
                     shape.num_layers, " x ", shape.num_experts, ", top ", shape.top_k));
  }
  if (backend->store()->bytes_per_expert() != shape.bytes_per_expert) {
    return absl::InvalidArgumentError("the backend's expert size differs from the shape's");
  }
  if (options.window < absl::Milliseconds(1) || options.fetch_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("window and fetch timeout must be at least 1 ms");
  }
  if (!options.agent.empty() && !absl::StartsWith(options.agent, "unix:")) {
    return absl::InvalidArgumentError(
        absl::StrCat("the agent address must be unix:PATH, got '", options.agent, "'"));
  }
  CRAFT_ASSIGN_OR_RETURN(
      planner::Layout initial,
      planner::ContiguousLayout(shape.num_layers, shape.num_experts, shape.cluster));
  LayoutState state = LayoutState::Of(std::move(initial), kInitialVersion, shape.gpu);
  CRAFT_RETURN_IF_ERROR(backend->store()->LoadServing(*state.local));
  std::unique_ptr<Worker> worker(
      new Worker(std::move(options), std::move(backend), std::move(traffic), clock, state));
  CRAFT_RETURN_IF_ERROR(worker->Verify(state));
  return worker;
}

Worker::Worker(WorkerOptions options, std::unique_ptr<Backend> backend, TrafficGenerator traffic,
               Clock* clock, LayoutState initial)
    : options_(std::move(options)),
      backend_(std::move(backend)),
      clock_(clock),
      backend_staging_(backend_.get(), clock, {options_.fetch_timeout}),
      permits_(options_.shape.gpu, !options_.security.insecure),
      transfer_service_(backend_->store(), &permits_, {options_.transfer_chunk_bytes}),
      windows_({options_.shape.gpu, options_.window, options_.log_windows}, std::move(traffic),
               backend_->counter(),
               [this](WorkerMessage message) { SendToAgent(std::move(message)); }),
      versions_(std::move(initial)) {}

Worker::~Worker() { Shutdown(); }

std::string Worker::serving_version() const {
  absl::MutexLock lock(&mu_);
  return versions_.serving().version;
}

namespace {

int64_t SlotsOf(const LocalLayout& layout) {
  int64_t slots = 0;
  for (int l = 0; l < layout.num_layers(); ++l) slots += layout.layers[l].num_slots();
  return slots;
}

}  // namespace

Worker::Stats Worker::stats() const {
  Stats stats;
  {
    absl::MutexLock lock(&mu_);
    stats = stats_;
    stats.serving_version = versions_.serving().version;
    stats.serving_slots = SlotsOf(*versions_.serving().local);
    const Staged* staged = versions_.staged();
    stats.staged_slots = staged != nullptr ? SlotsOf(*staged->state.local) : 0;
  }
  static_cast<WindowReporter::Stats&>(stats) = windows_.stats();
  // After mu_: the link never calls into the worker with its lock held, but
  // keep the two locks apart anyway.
  if (link_ != nullptr) stats.link = link_->stats();
  return stats;
}

absl::Status Worker::Start() {
  CRAFT_RETURN_IF_ERROR(StartTransferServer());
  if (!options_.ready_file.empty()) {
    CRAFT_RETURN_IF_ERROR(::craft::WriteFileAtomically(
        options_.ready_file,
        absl::StrCat("transfer_port=", transfer_port_, "\n", options_.ready_extra)));
  }
  {
    absl::MutexLock lock(&mu_);
    announced_headroom_ = backend_->store()->staging_headroom_bytes();  // every hello has it
  }
  // The link exists before the threads that send through it.
  if (!options_.agent.empty()) {
    AgentLink::Options link_options = options_.link;
    link_options.target = options_.agent;
    link_ = std::make_unique<AgentLink>(
        link_options, [this] { return Hello(); },
        [this](const WorkerCommand& command) { HandleCommand(command); }, clock_);
  }
  control_thread_ = std::thread([this] { ControlLoop(); });
  window_thread_ = std::thread([this] { WindowLoop(); });
  if (link_ == nullptr) {
    CRAFT_LOG(WARNING) << "no agent address: gpu " << options_.shape.gpu
                       << " runs standalone (windows are not reported)";
  } else {
    link_->Start();
  }
  return absl::OkStatus();
}

absl::Status Worker::StartTransferServer() {
  CRAFT_RETURN_IF_ERROR(ValidateTransportSecurity(options_.security));
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.transfer_listen, MakeServerCredentials(options_.security),
                           &transfer_port_);
  builder.RegisterService(&transfer_service_);
  // A FetchExpertRequest is a few dozen bytes; nothing bigger is read.
  builder.SetMaxReceiveMessageSize(kMaxTransferRequestBytes);
  transfer_server_ = builder.BuildAndStart();
  if (transfer_server_ == nullptr || transfer_port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve ExpertTransfer on ", options_.transfer_listen));
  }
  transfer_endpoint_ =
      absl::StrCat(AdvertisedHost(options_.transfer_listen, options_.transfer_advertise_host), ":",
                   transfer_port_);
  CRAFT_LOG(INFO) << "gpu " << options_.shape.gpu << " (" << backend_->name()
                  << " backend) serves ExpertTransfer at " << transfer_endpoint_;
  return absl::OkStatus();
}

void Worker::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cancel_staging_ = true;
  if (link_ != nullptr) link_->Stop();
  if (window_thread_.joinable()) window_thread_.join();
  if (control_thread_.joinable()) control_thread_.join();
  if (transfer_server_ != nullptr) {
    transfer_server_->Shutdown(absl::ToChronoTime(clock_->Now() + kServerShutdownGrace));
  }
}

craft::v1::WorkerHello Worker::Hello() const {
  craft::v1::WorkerHello hello;
  hello.set_gpu(options_.shape.gpu);
  hello.set_memory_bytes(backend_->store()->capacity_bytes());
  hello.set_transfer_endpoint(transfer_endpoint_);
  *hello.mutable_model() = options_.shape.ModelProto();
  hello.set_committed_version(serving_version());
  hello.set_transfer_group_id(backend_->transfer_group_id());
  if (std::optional<int64_t> headroom = backend_->store()->staging_headroom_bytes()) {
    hello.set_staging_headroom_bytes(*headroom);
  }
  return hello;
}

void Worker::MaybeAnnounceHeadroom() {
  const std::optional<int64_t> headroom = backend_->store()->staging_headroom_bytes();
  {
    absl::MutexLock lock(&mu_);
    if (headroom == announced_headroom_) return;
    announced_headroom_ = headroom;
  }
  WorkerMessage message;
  *message.mutable_hello() = Hello();
  SendToAgent(std::move(message));
}

// --- Commands ---------------------------------------------------------------

void Worker::HandleCommand(const WorkerCommand& command) {
  // Peers may fetch what this Prepare names from the moment it is here, even
  // while this worker still stages (or flips) before it.
  if (command.has_prepare()) permits_.Grant(command.prepare());
  if (command.has_abort()) permits_.Revoke(command.abort().version());
  absl::MutexLock lock(&mu_);
  if (stopping_) return;
  const VersionRules::Arrival arrival = versions_.OnArrival(command);
  if (arrival.hold_windows) {
    CRAFT_LOG(WARNING) << "serving " << versions_.serving().version << " but the node committed "
                       << versions_.held_for() << ": not serving until it is loaded and flipped";
  }
  if (arrival.cancel_staging) cancel_staging_ = true;
  if (commands_.size() >= kMaxQueuedCommands) {
    CRAFT_LOG(ERROR) << "command queue full: dropping the oldest command";
    commands_.pop_front();
  }
  commands_.push_back(command);
}

void Worker::ControlLoop() {
  while (true) {
    WorkerCommand command;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &Worker::StoppingOrCommandQueued));
      if (stopping_) return;
      command = std::move(commands_.front());
      commands_.pop_front();
    }
    switch (command.body_case()) {
      case WorkerCommand::kPrepare:
        Prepare(command.prepare());
        break;
      case WorkerCommand::kCommit:
        Commit(command.commit().version());
        break;
      case WorkerCommand::kAbort:
        Abort(command.abort().version());
        break;
      case WorkerCommand::BODY_NOT_SET:
        CRAFT_LOG(WARNING) << "ignoring an empty command from the agent";
        break;
    }
  }
}

bool Worker::StoppingOrCommandQueued() const { return stopping_ || !commands_.empty(); }

bool Worker::StoppingOrNoFlipPending() const { return stopping_ || !versions_.flip_pending(); }

void Worker::Prepare(const craft::v1::Prepare& prepare) {
  const std::string& version = prepare.layout().version();
  LayoutState serving;
  absl::StatusOr<std::optional<StageResult>> claimed;
  {
    absl::MutexLock lock(&mu_);
    // A committed version flips at the next boundary; stage on top of it.
    mu_.Await(absl::Condition(this, &Worker::StoppingOrNoFlipPending));
    if (stopping_) return;
    claimed = ClaimStagingLocked(prepare);
    serving = versions_.serving();
  }
  if (!claimed.ok()) {
    {
      absl::MutexLock lock(&mu_);
      ++stats_.prepares_failed;
    }
    Report(version, craft::v1::FAILED, std::string(claimed.status().message()));
  } else if (claimed->has_value()) {
    Report(version, craft::v1::READY, "", &**claimed);
  } else {
    const std::string group_before = backend_->transfer_group_id();
    FinishStaging(version, Stage(prepare, serving));
    // A staging that aborted the weight-transfer group spends its id; rank 0
    // announces the next one on the open stream, for the planner's next
    // Prepare.
    if (backend_->transfer_group_id() != group_before) {
      CRAFT_LOG(INFO) << "gpu " << options_.shape.gpu << " announces a new weight-transfer group";
      WorkerMessage message;
      *message.mutable_hello() = Hello();
      SendToAgent(std::move(message));
    }
  }
}

absl::StatusOr<std::optional<StageResult>> Worker::ClaimStagingLocked(
    const craft::v1::Prepare& prepare) {
  CRAFT_ASSIGN_OR_RETURN(VersionRules::Claim claim, versions_.ClaimStaging(prepare));
  if (claim.ready.has_value()) return claim.ready;
  if (!claim.replaced.empty()) {
    CRAFT_LOG(INFO) << "prepare " << prepare.layout().version() << " replaces staged "
                    << claim.replaced;
    backend_->store()->DropStaging(claim.replaced).IgnoreError();
  }
  cancel_staging_ = false;
  return std::nullopt;
}

void Worker::FinishStaging(const std::string& version, absl::StatusOr<Staged> staged) {
  bool cancelled = false;
  {
    absl::MutexLock lock(&mu_);
    cancelled = cancel_staging_ || stopping_;
    versions_.EndStaging(staged.ok() && !cancelled ? std::optional<Staged>(*staged) : std::nullopt);
    if (staged.ok() && cancelled) {
      backend_->store()->DropStaging(version).IgnoreError();
    } else if (staged.ok()) {
      ++stats_.prepares_ready;
      stats_.fetched_bytes += staged->result.bytes_received;
      stats_.fetched_experts += staged->result.fetched;
      stats_.staging_seconds += absl::ToDoubleSeconds(staged->result.elapsed);
    } else if (!cancelled) {
      ++stats_.prepares_failed;
    }
  }
  if (cancelled) {  // an Abort answers DROPPED; a newer Prepare supersedes
    CRAFT_LOG(INFO) << "staging of " << version << " cancelled";
  } else if (!staged.ok()) {
    Report(version, craft::v1::FAILED, std::string(staged.status().message()));
  } else {
    CRAFT_CRASH_POINT("worker.staged");
    Report(version, craft::v1::READY, "", &staged->result);
  }
}

absl::StatusOr<Worker::Staged> Worker::Stage(const craft::v1::Prepare& prepare,
                                             const LayoutState& serving) {
  const std::string& version = prepare.layout().version();
  const absl::Time start = clock_->Now();
  CRAFT_ASSIGN_OR_RETURN(StagePlan plan,
                         PlanStaging(prepare, options_.shape, serving.version, *serving.layout));
  const absl::Time deadline = prepare.timeout_ms() > 0
                                  ? start + absl::Milliseconds(prepare.timeout_ms())
                                  : absl::InfiniteFuture();
  CRAFT_LOG(INFO) << "staging " << version << ": " << plan.CountOf(SlotSource::Kind::kFetch)
                  << " fetches, " << plan.sources.size() << " slots";
  CRAFT_ASSIGN_OR_RETURN(StageResult result,
                         backend_staging_.engine()->Execute(plan, deadline, cancel_staging_));
  result.elapsed = clock_->Now() - start;
  return Staged{LayoutState::Of(std::move(plan.layout), version, options_.shape.gpu), result};
}

void Worker::Commit(const std::string& version) {
  absl::StatusOr<VersionRules::CommitAction> action;
  {
    absl::MutexLock lock(&mu_);
    action = versions_.Commit(version);
    if (action.ok() && *action == VersionRules::CommitAction::kFlipAtBoundary) {
      CRAFT_LOG(INFO) << "commit " << version << ": flipping at the next window boundary";
      CRAFT_CRASH_POINT("worker.commit_received");
    }
  }
  if (!action.ok()) {
    Report(version, craft::v1::FAILED, std::string(action.status().message()));
  } else if (*action == VersionRules::CommitAction::kServing) {
    Report(version, craft::v1::FLIPPED);
  }  // else FLIPPED follows the flip
}

void Worker::Abort(const std::string& version) {
  absl::StatusOr<VersionRules::AbortAction> action;
  {
    absl::MutexLock lock(&mu_);
    action = versions_.Abort(version);
    if (action.ok() && *action == VersionRules::AbortAction::kDropStaged) {
      backend_->store()->DropStaging(version).IgnoreError();
      ++stats_.drops;
    }
  }
  if (action.ok()) {
    Report(version, craft::v1::DROPPED);
  } else {
    Report(version, craft::v1::FAILED, std::string(action.status().message()));
  }
}

// --- Windows ----------------------------------------------------------------

bool Worker::SleepUntilUnixMs(int64_t ms) {
  absl::MutexLock lock(&mu_);
  return clock_->SleepUntil(absl::FromUnixMillis(ms), &mu_, &stopping_);
}

void Worker::WindowLoop() {
  const int64_t window_ms = absl::ToInt64Milliseconds(options_.window);
  // The first whole window starts at the next boundary.
  int64_t window_id = UnixMillis(clock_->Now()) / window_ms + 1;
  if (!SleepUntilUnixMs(window_id * window_ms)) return;
  absl::Time last_verify = clock_->Now();
  while (true) {
    const LayoutState state = FlipIfCommitted();
    if (options_.verify_interval > absl::ZeroDuration() &&
        clock_->Now() - last_verify >= options_.verify_interval) {
      Verify(state).IgnoreError();  // logged
      last_verify = clock_->Now();
    }
    if (!SleepUntilUnixMs((window_id + 1) * window_ms)) return;
    if (HeldForResync()) {
      windows_.Hold();
    } else {
      windows_.Report(window_id, state);
    }
    // Windows missed while this process was not scheduled are skipped.
    window_id = std::max(window_id + 1, UnixMillis(clock_->Now()) / window_ms);
  }
}

LayoutState Worker::FlipIfCommitted() {
  std::string version;
  absl::Status flipped;
  LayoutState state;
  {
    absl::MutexLock lock(&mu_);
    version = versions_.TakePendingFlip();
    if (!version.empty()) {
      flipped = backend_->store()->Flip(version);
      if (flipped.ok()) ++stats_.flips;
      if (versions_.FinishFlip(flipped.ok())) {
        CRAFT_LOG(INFO) << "serving again, on " << version;
      }
    }
    state = versions_.serving();
  }
  if (version.empty()) return state;
  // The store lost the staged bank: a bug, but a contained one (the serving
  // layout is whole, and the agent hears FAILED): docs/error_policy.md.
  if (!flipped.ok()) {
    CRAFT_LOG(ERROR) << "flip to " << version << " failed: " << flipped;
    Report(version, craft::v1::FAILED, std::string(flipped.message()));
    return state;
  }
  CRAFT_CRASH_POINT("worker.flipped");
  Report(version, craft::v1::FLIPPED);
  MaybeAnnounceHeadroom();      // the new layout may hold more or fewer slots
  Verify(state).IgnoreError();  // logged
  return state;
}

bool Worker::HeldForResync() const {
  absl::MutexLock lock(&mu_);
  return versions_.holding_windows();
}

absl::Status Worker::Verify(const LayoutState& state) const {
  const ExpertStore* store = backend_->store();
  int slots = 0;
  for (int l = 0; l < state.local->num_layers(); ++l) {
    const LocalLayer& layer = state.local->layers[l];
    for (int s = 0; s < layer.num_slots(); ++s, ++slots) {
      const absl::StatusOr<uint64_t> got = store->SlotChecksum(state.version, l, s);
      const uint64_t want = store->ExpectedChecksum(l, layer.experts[s]);
      if (!got.ok() || *got != want) {
        const std::string problem = got.ok()
                                        ? absl::StrCat("checksum ", *got, " != expected ", want)
                                        : std::string(got.status().message());
        CRAFT_LOG(ERROR) << "verify FAILED version=" << state.version << " layer=" << l
                         << " slot=" << layer.first_slot + s << " expert=" << layer.experts[s]
                         << ": " << problem;
        return absl::DataLossError(absl::StrCat("verify of ", state.version, " failed at layer ", l,
                                                " slot ", layer.first_slot + s, ": ", problem));
      }
    }
  }
  CRAFT_LOG(INFO) << "verify ok version=" << state.version << " slots=" << slots;
  return absl::OkStatus();
}

// --- Messages ---------------------------------------------------------------

void Worker::Report(const std::string& version, WorkerState state, const std::string& error,
                    const StageResult* result) {
  WorkerMessage message;
  craft::v1::WorkerStatus* status = message.mutable_status();
  status->set_version(version);
  status->set_state(state);
  status->set_error(error);
  if (result != nullptr) {
    status->set_bytes_received(result->bytes_received);
    status->set_staging_ms(absl::ToInt64Milliseconds(result->elapsed));
  }
  if (state == craft::v1::FAILED) {
    CRAFT_LOG(WARNING) << "status " << StateName(state) << " version=" << version << ": " << error;
  } else {
    CRAFT_LOG(INFO) << "status " << StateName(state) << " version=" << version
                    << (result ? absl::StrCat(" bytes_received=", result->bytes_received,
                                              " staging_ms=", status->staging_ms())
                               : "");
  }
  SendToAgent(std::move(message));
}

void Worker::SendToAgent(WorkerMessage message) {
  if (link_ != nullptr) link_->Send(std::move(message));
}

}  // namespace craft::gpu_worker
