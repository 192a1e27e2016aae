#include "server/apply_coordinator.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/check.h"
#include "common/clip.h"
#include "common/crash_point.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "planner/initial_layout.h"
#include "server/prepare_fanout.h"
#include "server/transfer_sources.h"
#include "wire/layout_proto.h"
#include "wire/version.h"

namespace craft::server {
namespace {

absl::Status CheckLayoutFits(const planner::Layout& layout, const ModelShape& model,
                             const planner::ClusterShape& cluster) {
  CRAFT_RETURN_IF_ERROR(layout.Validate());
  return planner::CheckLayoutShape(
      "layout", layout.shape(), "the configured shape",
      {model.num_layers, model.num_experts, cluster.num_gpus, cluster.num_nodes});
}

// A stored layout, if it parses and fits the configuration.
std::optional<CommittedLayout> RestoreLayout(const craft::v1::Layout& stored,
                                             const CoordinatorOptions& options) {
  absl::StatusOr<planner::Layout> layout = LayoutFromProto(stored);
  absl::Status fits =
      layout.ok() ? CheckLayoutFits(*layout, options.model, options.cluster) : layout.status();
  if (!fits.ok()) {
    CRAFT_LOG(WARNING) << "stored layout " << stored.version()
                       << " does not fit the configuration: " << fits.message();
    return std::nullopt;
  }
  return CommittedLayout{stored.version(),
                         std::make_shared<const planner::Layout>(*std::move(layout))};
}

constexpr absl::string_view kAbortReasonNames[kNumAbortReasons] = {
    "agent_nack", "timeout", "agent_left", "draining", "persist_failed"};

}  // namespace

absl::string_view AbortReasonName(AbortReason reason) {
  return kAbortReasonNames[static_cast<int>(reason)];
}

absl::StatusOr<std::unique_ptr<ApplyCoordinator>> ApplyCoordinator::Create(
    const CoordinatorOptions& options, StateStore* state_store, LayoutHistory* history,
    Clock* clock) {
  CRAFT_ASSIGN_OR_RETURN(std::optional<PlannerState> state, state_store->Load());
  CRAFT_ASSIGN_OR_RETURN(planner::Layout initial_layout,
                         planner::ContiguousLayout(options.model.num_layers,
                                                   options.model.num_experts, options.cluster));
  const CommittedLayout initial{kInitialVersion,
                                std::make_shared<const planner::Layout>(std::move(initial_layout))};
  std::optional<CommittedLayout> committed, previous;
  if (state.has_value()) {
    committed = RestoreLayout(state->committed, options);
    if (state->previous.has_value()) previous = RestoreLayout(*state->previous, options);
    if (!committed.has_value()) CRAFT_LOG(WARNING) << "starting from the initial layout";
  }
  if (!committed.has_value()) committed = initial;

  PlannerState next;
  next.epoch = state.has_value() ? state->epoch + 1 : 1;
  if (options.epoch > 0) {
    if (options.epoch < next.epoch) {
      return absl::FailedPreconditionError(
          absl::StrCat("the elected epoch ", options.epoch, " is not above the stored epoch ",
                       next.epoch - 1, ": versions could be minted twice"));
    }
    next.epoch = options.epoch;
  }
  next.seq = state.has_value() ? state->seq : 0;
  next.committed = LayoutToProto(*committed->layout, committed->version);
  if (previous.has_value()) next.previous = LayoutToProto(*previous->layout, previous->version);
  // Persist the new epoch before minting anything under it.
  CRAFT_RETURN_IF_ERROR(state_store->Save(next));

  history->Add(initial.version, initial.layout);
  if (previous.has_value()) history->Add(previous->version, previous->layout);
  history->AddCommitted(committed->version, committed->layout);
  CRAFT_LOG(INFO) << "planner epoch " << next.epoch << ", committed layout " << committed->version;
  return std::unique_ptr<ApplyCoordinator>(new ApplyCoordinator(
      options, state_store, history, clock, next.epoch, next.seq, *std::move(committed)));
}

ApplyCoordinator::ApplyCoordinator(const CoordinatorOptions& options, StateStore* state_store,
                                   LayoutHistory* history, Clock* clock, int64_t epoch, int64_t seq,
                                   CommittedLayout committed)
    : options_(options),
      state_store_(state_store),
      history_(history),
      clock_(clock),
      epoch_(epoch),
      seq_(seq),
      committed_(std::move(committed)),
      registry_(options.model, options.cluster, clock) {}

ApplyCoordinator::NodeApplyState& ApplyCoordinator::ApplyStateOf(const std::string& name) {
  auto it = node_apply_.find(name);
  CRAFT_CHECK(it != node_apply_.end()) << "node " << name << " has no apply state";
  return it->second;
}

const ApplyCoordinator::NodeApplyState& ApplyCoordinator::ApplyStateOf(
    const std::string& name) const {
  auto it = node_apply_.find(name);
  CRAFT_CHECK(it != node_apply_.end()) << "node " << name << " has no apply state";
  return it->second;
}

void ApplyCoordinator::SetHooks(Hooks hooks) {
  absl::MutexLock lock(&mu_);
  hooks_ = std::move(hooks);
}

absl::Status ApplyCoordinator::Connect(const craft::v1::AgentHello& hello,
                                       std::shared_ptr<AgentConnection> connection) {
  std::function<void()> on_deadline_changed;
  {
    absl::MutexLock lock(&mu_);
    if (draining_) return absl::UnavailableError("planner draining");
    CRAFT_RETURN_IF_ERROR(registry_.CheckHello(hello));
    CRAFT_ASSIGN_OR_RETURN(std::optional<std::string> forgotten,
                           registry_.MakeRoomFor(hello.node()));
    if (forgotten.has_value()) node_apply_.erase(*forgotten);
    if (AgentRegistry::Node* known = registry_.Find(hello.node());
        known != nullptr && known->connection != nullptr) {
      CRAFT_LOG(INFO) << "agent " << hello.node() << " reconnected; closing its older stream";
      ParticipantLeftLocked(hello.node(), "reconnected");  // may still send it an Abort
      known->connection->Close(absl::AbortedError("replaced by a newer stream from the same node"));
    }
    const AgentRegistry::Node& node = registry_.Register(hello, std::move(connection));
    ++stats_.agent_connects;
    NodeApplyState& apply = node_apply_[hello.node()];
    apply.resync_nonce.clear();
    apply.resync_retry_at = absl::InfinitePast();  // a new hello is worth a resync at once
    // A claim, not a proof: it stops this planner pushing to that node (which
    // would refuse anyway) until the node says otherwise, and nothing else.
    apply.refuses_our_epoch = hello.highest_epoch() > epoch_;
    if (apply.refuses_our_epoch) {
      CRAFT_LOG(ERROR) << "agent " << hello.node() << " has seen epoch " << hello.highest_epoch()
                       << " > ours (" << epoch_
                       << "): another planner leads, or led; nothing is applied while it is "
                          "connected";
    }
    craft::v1::PlannerMessage welcome = NewMessage();
    craft::v1::ModelShape* model = welcome.mutable_welcome()->mutable_model();
    model->set_num_layers(options_.model.num_layers);
    model->set_num_experts(options_.model.num_experts);
    model->set_top_k(options_.model.top_k);
    model->set_bytes_per_expert(options_.model.bytes_per_expert);
    node.connection->Send(welcome);
    const bool in_sync = node.InSync(committed_.version);
    CRAFT_LOG(INFO) << "agent " << hello.node() << " connected: GPUs ["
                    << absl::StrJoin(node.gpus, ",") << "], serving " << node.serving_version
                    << (in_sync ? "" : " (out of sync with " + committed_.version + ")")
                    << (hello.prepared_version().empty()
                            ? ""
                            : ", in doubt about " + hello.prepared_version());
    const std::string in_doubt = VersionOrInitial(hello.prepared_version());
    // A version being persisted is not dead: the save decides, and the node
    // gets its Commit (a resync) or its Abort once it returned.
    const bool undecided = phase_ == Phase::kPersisting && in_doubt == apply_version_;
    if (!hello.prepared_version().empty() && in_doubt != committed_.version && in_sync &&
        !apply.refuses_our_epoch && !undecided) {
      // Prepared but never committed (a commit would be the committed
      // version): the node may drop it. An out-of-sync node's resync below
      // supersedes it instead (one message in flight per stream).
      craft::v1::PlannerMessage abort = NewMessage();
      abort.mutable_abort()->set_version(hello.prepared_version());
      abort.mutable_abort()->set_reason(
          absl::StrCat("not committed; the committed version is ", committed_.version));
      node.connection->Send(abort);
      ++stats_.in_doubt_aborted;
    }
    DriveResyncsLocked();
    on_deadline_changed = hooks_.on_deadline_changed;
  }
  if (on_deadline_changed) on_deadline_changed();
  return absl::OkStatus();
}

void ApplyCoordinator::Disconnect(const std::string& node, const AgentConnection* connection) {
  absl::MutexLock lock(&mu_);
  if (!registry_.Disconnect(node, connection)) return;  // an older, replaced stream
  ApplyStateOf(node).resync_nonce.clear();
  ++stats_.agent_disconnects;
  CRAFT_LOG(INFO) << "agent " << node << " disconnected";
  ParticipantLeftLocked(node, "disconnected");
}

void ApplyCoordinator::OnLoad(const std::string& node, const AgentConnection* connection,
                              const craft::v1::NodeLoad& load) {
  absl::MutexLock lock(&mu_);
  registry_.OnLoad(node, connection, load);
}

std::optional<int64_t> ApplyCoordinator::MinStagingHeadroom() const {
  absl::MutexLock lock(&mu_);
  return registry_.MinStagingHeadroom();
}

void ApplyCoordinator::ParticipantLeftLocked(const std::string& node, const std::string& why) {
  auto it = participants_.find(node);
  if (it == participants_.end()) return;
  if (phase_ == Phase::kPreparing) {
    AbortLocked(AbortReason::kAgentLeft, absl::StrCat("node ", node, " ", why, " during prepare"));
    return;
  }
  // Persisting, the save decides; past the commit point nothing is undone.
  // The node reports what it serves when it comes back and is resynchronised
  // if needed.
  participants_.erase(it);
  FinishCommittingIfDoneLocked();
}

ApplyCoordinator::Participant* ApplyCoordinator::AwaitedParticipant(const std::string& node,
                                                                    const std::string& nonce) {
  auto it = participants_.find(node);
  if (it == participants_.end() || it->second.answered || it->second.nonce != nonce) {
    ++stats_.stale_answers_ignored;
    return nullptr;
  }
  return &it->second;
}

void ApplyCoordinator::HandleAck(const std::string& node, const AgentConnection* connection,
                                 const craft::v1::Ack& ack) {
  std::optional<CommitToPersist> commit;
  {
    absl::MutexLock lock(&mu_);
    commit = HandleAckLocked(node, connection, ack);
  }
  if (commit.has_value()) PersistCommit(*commit);
}

std::optional<ApplyCoordinator::CommitToPersist> ApplyCoordinator::HandleAckLocked(
    const std::string& node, const AgentConnection* connection, const craft::v1::Ack& ack) {
  AgentRegistry::Node* state = registry_.Seen(node, connection);
  if (state == nullptr) return std::nullopt;
  NodeApplyState& apply = ApplyStateOf(node);
  if (AnswersResync(apply, ack.nonce())) {
    if (ack.phase() == craft::v1::COMMITTED && ack.version() == committed_.version) {
      state->SetServing(committed_.version);
      apply.needs_full_layout = false;  // it holds the layout the resync carried
      ++stats_.resyncs_completed;
      CRAFT_LOG(INFO) << "agent " << node << " is on " << committed_.version << " again";
    }
    return std::nullopt;
  }
  if (ack.phase() == craft::v1::ABORTED) return std::nullopt;  // aborts are fire-and-forget
  const bool expected = (phase_ == Phase::kPreparing && ack.phase() == craft::v1::PREPARED) ||
                        (phase_ == Phase::kCommitting && ack.phase() == craft::v1::COMMITTED);
  if (!expected || ack.version() != apply_version_) {
    ++stats_.stale_answers_ignored;
    return std::nullopt;
  }
  Participant* participant = AwaitedParticipant(node, ack.nonce());
  if (participant == nullptr) return std::nullopt;
  participant->answered = true;
  if (phase_ == Phase::kCommitting) {
    state->SetServing(apply_version_);
    apply.needs_full_layout = false;  // it holds the layout it staged, fingerprint checked
    FinishCommittingIfDoneLocked();
    return std::nullopt;
  }
  for (const auto& [name, other] : participants_) {
    if (!other.answered) return std::nullopt;
  }
  // Every agent is PREPARED: the commit point is the save, made without the
  // mutex. From here until it is published, the apply only waits for it.
  phase_ = Phase::kPersisting;
  return CommitToPersist{seq_, {apply_version_, apply_layout_}, committed_};
}

void ApplyCoordinator::HandleNack(const std::string& node, const AgentConnection* connection,
                                  const craft::v1::Nack& nack) {
  std::function<void()> on_deadline_changed;
  {
    absl::MutexLock lock(&mu_);
    if (HandleNackLocked(node, connection, nack)) on_deadline_changed = hooks_.on_deadline_changed;
  }
  if (on_deadline_changed) on_deadline_changed();
}

bool ApplyCoordinator::HandleNackLocked(const std::string& node, const AgentConnection* connection,
                                        const craft::v1::Nack& nack) {
  AgentRegistry::Node* state = registry_.Seen(node, connection);
  if (state == nullptr) return false;
  NodeApplyState& apply = ApplyStateOf(node);
  // Clipped: it is logged and becomes the abort's reason.
  const std::string error = absl::StrCat(craft::v1::ErrorCode_Name(nack.error().code()), ": ",
                                         Clip(nack.error().message()));
  if (craft::v1::ErrorCode_IsValid(nack.error().code())) {
    ++stats_.nacks_by_code[nack.error().code()];
  }
  if (nack.error().code() == craft::v1::STALE_EPOCH && !apply.refuses_our_epoch) {
    apply.refuses_our_epoch = true;  // until its next hello
    CRAFT_LOG(ERROR) << "agent " << node << " refused epoch " << epoch_
                     << " as stale: another planner leads, or led; nothing is applied while it "
                        "is connected";
  }
  if (AnswersResync(apply, nack.nonce())) {
    if (!nack.last_good_version().empty()) {
      state->SetServing(VersionOrInitial(nack.last_good_version()));
    }
    state->MarkLagging(nack);
    apply.resync_retry_at = clock_->Now() + options_.resync_retry;
    ++stats_.resyncs_failed;
    CRAFT_LOG(WARNING) << "agent " << node << " could not resync to " << committed_.version << " ("
                       << error << "); again in " << absl::FormatDuration(options_.resync_retry);
    return true;  // a retry time to wake up for
  }
  if (phase_ == Phase::kIdle || nack.version() != apply_version_) {
    ++stats_.stale_answers_ignored;
    return false;
  }
  Participant* participant = AwaitedParticipant(node, nack.nonce());
  if (participant == nullptr) return false;
  if (!nack.last_good_version().empty()) {
    state->SetServing(VersionOrInitial(nack.last_good_version()));
  }
  if (phase_ == Phase::kPreparing) {
    if (participant->got_delta && nack.error().code() == craft::v1::BAD_LAYOUT) {
      apply.needs_full_layout = true;  // it could not rebuild our layout from its own
    }
    AbortLocked(AbortReason::kAgentNack,
                absl::StrCat("node ", node, " refused ", apply_version_, " (", error, ")"));
    return false;
  }
  // A refused commit: the GPUs that did not flip are out of sync; a resync
  // brings them to the committed version once the apply is over.
  state->MarkLagging(nack);
  CRAFT_LOG(WARNING) << "agent " << node << " refused commit of " << apply_version_ << " (" << error
                     << "); serving " << state->serving_version;
  participant->answered = true;
  FinishCommittingIfDoneLocked();
  return true;  // resyncs of the nodes that did not flip may have gone out
}

craft::v1::PlannerMessage ApplyCoordinator::NewMessage() {
  craft::v1::PlannerMessage message;
  message.set_epoch(epoch_);
  message.set_nonce(absl::StrCat(epoch_, "-", ++nonce_counter_));
  return message;
}

absl::StatusOr<std::string> ApplyCoordinator::StartApply(const planner::Layout& target) {
  absl::MutexLock lock(&mu_);
  if (draining_) return absl::UnavailableError("planner draining");
  if (options_.may_push && !options_.may_push()) {
    return absl::UnavailableError("this planner lost its leadership lease");
  }
  if (std::vector<std::string> refusing = RefusingNodesLocked(); !refusing.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("fenced: nodes [", absl::StrJoin(refusing, ","),
                     "] have seen a newer planner epoch and refuse this one"));
  }
  if (phase_ != Phase::kIdle) {
    return absl::FailedPreconditionError(
        absl::StrCat("the apply of ", apply_version_, " is still in progress"));
  }
  CRAFT_RETURN_IF_ERROR(CheckLayoutFits(target, options_.model, options_.cluster));
  if (std::vector<int> missing = registry_.GpusWithoutAgent(); !missing.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("GPUs [", absl::StrJoin(missing, ","), "] have no connected agent"));
  }
  if (std::vector<std::string> behind = OutOfSyncNodesLocked(); !behind.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("nodes [", absl::StrJoin(behind, ","),
                                                      "] are being resynchronised to ",
                                                      committed_.version));
  }
  // Every GPU's weights come from the version it serves.
  std::vector<ServingGpu> serving(options_.cluster.num_gpus);
  for (const auto& [name, node] : registry_.nodes()) {
    if (node.connection == nullptr) continue;
    for (const auto& [gpu, version] : node.gpu_serving) {
      serving[gpu] = {version, history_->Find(version)};
    }
  }
  CRAFT_ASSIGN_OR_RETURN(SourcedTransfers plan,
                         PlanSourcedTransfers(target, serving, options_.model.bytes_per_expert));

  const std::string version = Version(epoch_, ++seq_).ToString();
  PrepareFanout::Inputs inputs;
  inputs.base = committed_.layout.get();
  inputs.base_version = committed_.version;
  inputs.target = &target;
  inputs.version = version;
  inputs.cluster = options_.cluster;
  inputs.transfers = std::move(plan.transfers);
  inputs.endpoints.resize(options_.cluster.num_gpus);
  inputs.node_names.resize(options_.cluster.num_gpus);
  for (const auto& [name, node] : registry_.nodes()) {
    if (node.connection == nullptr) continue;
    for (const auto& [gpu, endpoint] : node.endpoints) inputs.endpoints[gpu] = endpoint;
    for (int gpu : node.gpus) inputs.node_names[gpu] = name;
  }
  inputs.common.set_bytes_per_expert(options_.model.bytes_per_expert);
  inputs.common.set_timeout_ms(absl::ToInt64Milliseconds(options_.apply_timeout));
  // Every worker needs it, not just those with transfers: joining the
  // communicator is collective over all ranks.
  inputs.common.set_transfer_group_id(registry_.transfer_group_id());
  CRAFT_ASSIGN_OR_RETURN(const PrepareFanout fanout, PrepareFanout::Create(std::move(inputs)));
  participants_.clear();
  int full_layouts = 0;
  for (const auto& [name, node] : registry_.nodes()) {
    if (node.connection == nullptr) continue;
    craft::v1::PlannerMessage message = NewMessage();
    *message.mutable_prepare() = fanout.ForNode(options_.cluster.NodeOf(node.gpus.front()),
                                                ApplyStateOf(name).needs_full_layout);
    const bool delta = message.prepare().has_layout_delta();
    if (!delta) ++full_layouts;
    participants_[name] = Participant{node.connection.get(), message.nonce(), false, delta};
    node.connection->Send(message);
  }
  phase_ = Phase::kPreparing;
  apply_version_ = version;
  apply_layout_ = std::make_shared<const planner::Layout>(target);
  apply_started_ = clock_->Now();
  apply_persist_duration_ = absl::ZeroDuration();
  apply_deadline_ = apply_started_ + options_.apply_timeout;
  apply_transfers_ = fanout.transfers_between_gpus();
  apply_transfer_bytes_ = int64_t{apply_transfers_} * options_.model.bytes_per_expert;
  ++stats_.applies_started;
  CRAFT_LOG(INFO) << "preparing " << version << " on " << participants_.size() << " agents, "
                  << fanout.num_transfers() << " transfers, layout "
                  << (fanout.sends_delta()
                          ? absl::StrCat("delta from ", committed_.version, " (",
                                         fanout.delta_bytes(), " bytes; full ",
                                         fanout.full_layout_bytes(), ") to ",
                                         participants_.size() - full_layouts, " agents, full to ",
                                         full_layouts)
                          : absl::StrCat("in full (", fanout.full_layout_bytes(), " bytes)"));
  CRAFT_CRASH_POINT("planner.prepare_sent");
  return version;
}

void ApplyCoordinator::PersistCommit(const CommitToPersist& commit) {
  PlannerState state;
  state.epoch = epoch_;
  state.seq = commit.seq;
  state.committed = LayoutToProto(*commit.next.layout, commit.next.version);
  state.previous = LayoutToProto(*commit.previous.layout, commit.previous.version);
  const absl::Time save_started = clock_->Now();
  const absl::Status saved = state_store_->Save(state);
  const absl::Duration save_took = clock_->Now() - save_started;
  // The commit point: once saved, commit.next is the committed layout,
  // whether or not a Commit leaves before a crash.
  if (saved.ok()) CRAFT_CRASH_POINT("planner.commit_persisted");
  std::function<void()> on_deadline_changed;
  {
    absl::MutexLock lock(&mu_);
    CRAFT_CHECK(phase_ == Phase::kPersisting && apply_version_ == commit.next.version)
        << "the apply of " << commit.next.version << " left the persisting phase during its save";
    apply_persist_duration_ = save_took;
    if (saved.ok()) {
      PublishCommitLocked();
    } else {
      AbortLocked(AbortReason::kPersistFailed,
                  absl::StrCat("cannot persist the commit: ", saved.message()));
    }
    DriveResyncsLocked();                              // held back while persisting
    on_deadline_changed = hooks_.on_deadline_changed;  // the apply's deadline moved
  }
  if (on_deadline_changed) on_deadline_changed();
}

void ApplyCoordinator::PublishCommitLocked() {
  committed_ = {apply_version_, apply_layout_};
  history_->AddCommitted(apply_version_, apply_layout_);
  ++stats_.applies_committed;
  stats_.transfer_bytes_committed += apply_transfer_bytes_;
  RecordFinishedLocked(/*committed=*/true, AbortReason::kAgentNack);
  phase_ = Phase::kCommitting;
  apply_deadline_ = clock_->Now() + options_.apply_timeout;
  for (auto& [name, participant] : participants_) {
    // A participant that left while persisting was dropped from the apply.
    AgentRegistry::Node* node = registry_.Current(name, participant.connection);
    CRAFT_CHECK(node != nullptr) << "participant " << name << " is not on its stream any more";
    craft::v1::PlannerMessage message = NewMessage();
    message.mutable_commit()->set_version(apply_version_);
    participant.nonce = message.nonce();
    participant.answered = false;
    node->connection->Send(message);
  }
  CRAFT_LOG(INFO) << "committed " << apply_version_;
  CRAFT_CRASH_POINT("planner.commit_sent");
  if (hooks_.on_commit) hooks_.on_commit(committed_, epoch_);
  FinishCommittingIfDoneLocked();  // every participant may have left while persisting
}

void ApplyCoordinator::RecordFinishedLocked(bool committed, AbortReason why) {
  if (!hooks_.on_apply_finished) return;
  ApplyRecord record;
  record.version = apply_version_;
  record.committed = committed;
  record.abort_reason = why;
  record.prepare_duration = clock_->Now() - apply_started_;
  record.persist_duration = apply_persist_duration_;
  record.transfer_bytes = apply_transfer_bytes_;
  record.transfers = apply_transfers_;
  hooks_.on_apply_finished(record);
}

void ApplyCoordinator::AbortLocked(AbortReason why, const std::string& reason) {
  CRAFT_LOG(WARNING) << "aborting " << apply_version_ << ": " << reason;
  for (const auto& [name, node] : registry_.nodes()) {
    if (node.connection == nullptr) continue;
    craft::v1::PlannerMessage message = NewMessage();
    message.mutable_abort()->set_version(apply_version_);
    message.mutable_abort()->set_reason(reason);
    node.connection->Send(message);
  }
  ++stats_.applies_aborted;
  ++stats_.aborts_by_reason[static_cast<int>(why)];
  RecordFinishedLocked(/*committed=*/false, why);
  last_abort_reason_ = reason;
  phase_ = Phase::kIdle;
  participants_.clear();
  apply_layout_.reset();
}

void ApplyCoordinator::FinishCommittingIfDoneLocked() {
  if (phase_ != Phase::kCommitting) return;
  for (const auto& [name, participant] : participants_) {
    if (!participant.answered) return;
  }
  CRAFT_LOG(INFO) << "every agent answered the commit of " << apply_version_;
  phase_ = Phase::kIdle;
  participants_.clear();
  apply_layout_.reset();
  DriveResyncsLocked();  // nodes that refused the commit
}

bool ApplyCoordinator::AnswersResync(NodeApplyState& apply, const std::string& nonce) {
  if (apply.resync_nonce.empty() || apply.resync_nonce != nonce) return false;
  apply.resync_nonce.clear();
  return true;
}

bool ApplyCoordinator::ResyncHeldBackLocked(const std::string& name,
                                            const NodeApplyState& apply) const {
  return draining_ || phase_ == Phase::kPersisting ||
         apply.refuses_our_epoch ||  // it would refuse the commit
         (phase_ != Phase::kIdle && participants_.count(name) > 0);
}

void ApplyCoordinator::DriveResyncsLocked() {
  const absl::Time now = clock_->Now();
  std::optional<craft::v1::Layout> layout;  // built once, for the first node that needs it
  for (const auto& [name, node] : registry_.nodes()) {
    if (node.connection == nullptr || node.InSync(committed_.version)) continue;
    NodeApplyState& apply = ApplyStateOf(name);
    if (!apply.resync_nonce.empty() || now < apply.resync_retry_at) continue;
    if (ResyncHeldBackLocked(name, apply)) continue;
    if (!layout.has_value()) layout = LayoutToProto(*committed_.layout, committed_.version);
    craft::v1::PlannerMessage message = NewMessage();
    message.mutable_commit()->set_version(committed_.version);
    *message.mutable_commit()->mutable_layout() = *layout;
    apply.resync_nonce = message.nonce();
    apply.resync_deadline = now + options_.apply_timeout;
    ++stats_.resyncs_started;
    CRAFT_LOG(INFO) << "resync: re-driving the commit of " << committed_.version << " to agent "
                    << name << " (serving " << node.serving_version << ")";
    node.connection->Send(message);
  }
}

void ApplyCoordinator::CheckTimeouts() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  for (auto& [name, apply] : node_apply_) {
    if (apply.resync_nonce.empty() || now < apply.resync_deadline) continue;
    CRAFT_LOG(WARNING) << "agent " << name << " did not answer its resync to " << committed_.version
                       << " in time; re-driving it";
    apply.resync_nonce.clear();
    ++stats_.resyncs_failed;
  }
  DriveResyncsLocked();
  // Persisting, the save decides: a deadline that passes meanwhile aborts
  // nothing.
  if (phase_ == Phase::kIdle || phase_ == Phase::kPersisting || now < apply_deadline_) return;
  std::vector<std::string> waiting;
  for (const auto& [name, participant] : participants_) {
    if (!participant.answered) waiting.push_back(name);
  }
  if (phase_ == Phase::kPreparing) {
    AbortLocked(
        AbortReason::kTimeout,
        absl::StrCat("prepare timed out after ", absl::FormatDuration(options_.apply_timeout),
                     " waiting for [", absl::StrJoin(waiting, ","), "]"));
    return;
  }
  CRAFT_LOG(WARNING) << "no commit answer for " << apply_version_ << " from ["
                     << absl::StrJoin(waiting, ",") << "]; resyncing them";
  for (const std::string& name : waiting) {
    if (AgentRegistry::Node* node = registry_.Find(name); node != nullptr) {
      node->serving_version.clear();
    }
  }
  phase_ = Phase::kIdle;
  participants_.clear();
  apply_layout_.reset();
  DriveResyncsLocked();
}

std::optional<absl::Time> ApplyCoordinator::NextDeadline() const {
  absl::MutexLock lock(&mu_);
  std::optional<absl::Time> next;
  const auto consider = [&next](absl::Time t) { next = next.has_value() ? std::min(*next, t) : t; };
  if (phase_ == Phase::kPreparing || phase_ == Phase::kCommitting) consider(apply_deadline_);
  for (const auto& [name, node] : registry_.nodes()) {
    if (node.connection == nullptr || node.InSync(committed_.version)) continue;
    const NodeApplyState& apply = ApplyStateOf(name);
    if (!apply.resync_nonce.empty()) {
      consider(apply.resync_deadline);
    } else if (!ResyncHeldBackLocked(name, apply)) {
      consider(apply.resync_retry_at);
    }
  }
  return next;
}

void ApplyCoordinator::BeginDrain() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
  // A commit being persisted is left to its save, and one past the commit
  // point is not undone.
  if (phase_ == Phase::kPreparing) AbortLocked(AbortReason::kDraining, "planner draining");
}

CommittedLayout ApplyCoordinator::committed() const {
  absl::MutexLock lock(&mu_);
  return committed_;
}

std::string ApplyCoordinator::pending_version() const {
  absl::MutexLock lock(&mu_);
  return phase_ == Phase::kPreparing || phase_ == Phase::kPersisting ? apply_version_ : "";
}

bool ApplyCoordinator::apply_in_progress() const {
  absl::MutexLock lock(&mu_);
  return phase_ != Phase::kIdle;
}

std::string ApplyCoordinator::last_abort_reason() const {
  absl::MutexLock lock(&mu_);
  return last_abort_reason_;
}

bool ApplyCoordinator::fenced() const {
  absl::MutexLock lock(&mu_);
  return !RefusingNodesLocked().empty();
}

std::vector<std::string> ApplyCoordinator::RefusingNodesLocked() const {
  std::vector<std::string> refusing;
  for (const auto& [name, node] : registry_.nodes()) {
    if (node.connection != nullptr && ApplyStateOf(name).refuses_our_epoch) {
      refusing.push_back(name);
    }
  }
  return refusing;
}

std::vector<AgentSnapshot> ApplyCoordinator::Agents() const {
  absl::MutexLock lock(&mu_);
  return registry_.Snapshots();
}

void ApplyCoordinator::CountRejectedWindows(const std::string& node, int64_t count) {
  absl::MutexLock lock(&mu_);
  registry_.CountRejectedWindows(node, count);
}

std::vector<std::string> ApplyCoordinator::OutOfSyncNodes() const {
  absl::MutexLock lock(&mu_);
  return OutOfSyncNodesLocked();
}

std::vector<std::string> ApplyCoordinator::OutOfSyncNodesLocked() const {
  std::vector<std::string> nodes;
  for (const auto& [name, node] : registry_.nodes()) {
    if (node.connection == nullptr) continue;
    if (!node.InSync(committed_.version) || !ApplyStateOf(name).resync_nonce.empty()) {
      nodes.push_back(name);
    }
  }
  return nodes;
}

std::vector<int> ApplyCoordinator::GpusWithoutAgent() const {
  absl::MutexLock lock(&mu_);
  return registry_.GpusWithoutAgent();
}

CoordinatorStats ApplyCoordinator::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace craft::server
