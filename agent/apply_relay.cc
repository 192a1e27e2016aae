#include "agent/apply_relay.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/crash_point.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "planner/initial_layout.h"
#include "planner/layout.h"
#include "wire/layout_delta.h"
#include "wire/layout_proto.h"
#include "wire/limits.h"
#include "wire/version.h"

namespace craft::agent {
namespace {

using craft::v1::AckPhase;
using craft::v1::ErrorCode;
using craft::v1::GpuError;

constexpr size_t kRecentVersions = 32;
constexpr absl::Duration kMaxApplyTimeout = absl::Hours(24);
// The largest cluster a layout delta from the initial layout may name, far
// above any expert-parallel group: the agent builds that layout itself, one
// slot count per GPU and layer, so the bound keeps a bad delta cheap.
constexpr int kMaxClusterGpus = 1 << 16;

bool SameModel(const std::optional<craft::v1::ModelShape>& a,
               const std::optional<craft::v1::ModelShape>& b) {
  return a.has_value() == b.has_value() &&
         (!a.has_value() || a->SerializeAsString() == b->SerializeAsString());
}

GpuError MakeGpuError(int gpu, std::string message) {
  GpuError error;
  error.set_gpu(gpu);
  error.set_message(std::move(message));
  return error;
}

const std::string& MessageVersion(const craft::v1::PlannerMessage& message) {
  switch (message.body_case()) {
    case craft::v1::PlannerMessage::kPrepare:
      return PrepareVersion(message.prepare());
    case craft::v1::PlannerMessage::kCommit:
      return message.commit().version();
    case craft::v1::PlannerMessage::kAbort:
      return message.abort().version();
    default: {
      static const std::string* const kNone = new std::string();
      return *kNone;
    }
  }
}

absl::Status ValidateTransfers(const craft::v1::Prepare& prepare, const planner::Layout& layout) {
  for (int i = 0; i < prepare.transfers_size(); ++i) {
    const craft::v1::Transfer& t = prepare.transfers(i);
    const std::string where = absl::StrCat("transfer ", i, ": ");
    if (t.layer() < 0 || t.layer() >= layout.num_layers()) {
      return absl::InvalidArgumentError(absl::StrCat(where, "layer ", t.layer(), " out of range"));
    }
    if (t.expert() < 0 || t.expert() >= layout.num_experts) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "expert ", t.expert(), " out of range"));
    }
    const int num_gpus = layout.cluster.num_gpus;
    if (t.dst_gpu() < 0 || t.dst_gpu() >= num_gpus || t.src_gpu() < 0 || t.src_gpu() >= num_gpus) {
      return absl::InvalidArgumentError(absl::StrCat(where, "gpu out of range"));
    }
    const planner::LayerPlacement& layer = layout.layers[t.layer()];
    const int begin = layer.SlotOffset(t.dst_gpu());
    const int end = begin + layer.slots_per_gpu[t.dst_gpu()];
    if (t.dst_slot() < begin || t.dst_slot() >= end) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "dst_slot ", t.dst_slot(), " is not on gpu ", t.dst_gpu()));
    }
    if (layer.phy2log[t.dst_slot()] != t.expert()) {
      return absl::InvalidArgumentError(absl::StrCat(where, "dst_slot ", t.dst_slot(),
                                                     " holds expert ", layer.phy2log[t.dst_slot()],
                                                     ", not ", t.expert()));
    }
    if (t.src_slot() < 0) {
      return absl::InvalidArgumentError(absl::StrCat(where, "negative src_slot"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ApplyRelay::Options::Validate() const {
  if (node.empty()) return absl::InvalidArgumentError("the node name is empty");
  if (model_check.num_layers < 0 || model_check.num_experts < 0 || model_check.top_k < 0) {
    return absl::InvalidArgumentError("model checks must be non-negative (0 = unchecked)");
  }
  if (default_apply_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("the default apply timeout must be positive");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ApplyRelay>> ApplyRelay::Create(Options options, Clock* clock,
                                                               StateStore* store,
                                                               PlannerChannel* planner,
                                                               WorkerRegistry* workers) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  absl::StatusOr<AgentState> persisted = store->Load();
  if (!persisted.ok()) return persisted.status();
  return std::unique_ptr<ApplyRelay>(
      new ApplyRelay(std::move(options), clock, store, planner, workers, *std::move(persisted)));
}

ApplyRelay::ApplyRelay(Options options, Clock* clock, StateStore* store, PlannerChannel* planner,
                       WorkerRegistry* workers, AgentState persisted)
    : options_(std::move(options)),
      clock_(clock),
      store_(store),
      planner_(planner),
      workers_(workers),
      model_(options_.model_check, std::move(persisted.model)),
      highest_epoch_(persisted.highest_epoch),
      committed_version_(std::move(persisted.committed_version)),
      committed_layout_(std::move(persisted.committed_layout)) {
  workers_->SetModel(model_.shape());  // nobody is attached yet
  if (!model_.shape().has_value()) {
    CRAFT_LOG(INFO) << "the model shape is not known yet (no --num_layers/--num_experts, none "
                       "from a planner so far): workers attach once the planner's Welcome says it";
  }
}

// ---------------------------------------------------------------- workers

absl::Status ApplyRelay::AttachWorker(const craft::v1::WorkerHello& hello, WorkerChannel* channel) {
  if (absl::Status s = workers_->Attach(hello, channel); !s.ok()) {
    CRAFT_LOG(WARNING) << "refused worker: " << s;
    return s;
  }
  const std::string serving = VersionOrInitial(hello.committed_version());
  CRAFT_LOG(INFO) << "worker attached: gpu " << hello.gpu() << " serving " << serving
                  << " endpoint '" << hello.transfer_endpoint() << "'"
                  << (hello.transfer_group_id().empty() ? "" : " with a transfer group id");
  if (!committed_version_.empty() && serving != committed_version_) {
    CRAFT_LOG(WARNING) << "gpu " << hello.gpu() << " serves " << serving
                       << " but this node committed " << committed_version_ << "; bringing it to "
                       << committed_version_;
  }
  // A worker that came back (new endpoint, maybe the initial layout) makes
  // what the planner was told stale: tell it again with a fresh hello.
  MaybeReannounce(hello.gpu(), absl::StrCat("re-attached with endpoint '",
                                            hello.transfer_endpoint(), "' serving ", serving));
  resync_retry_at_.erase(hello.gpu());
  Reconcile();
  return absl::OkStatus();
}

absl::Status ApplyRelay::UpdateWorker(const craft::v1::WorkerHello& hello, WorkerChannel* channel) {
  if (absl::Status s = workers_->Update(hello, channel); !s.ok()) {
    CRAFT_LOG(WARNING) << "refused hello update: " << s;
    return s;
  }
  // Never the id's bytes: it admits a process to the cluster's communicator.
  CRAFT_LOG(INFO) << "worker of gpu " << hello.gpu() << " updated its hello: serving "
                  << VersionOrInitial(hello.committed_version()) << ", endpoint '"
                  << hello.transfer_endpoint() << "', "
                  << (hello.transfer_group_id().empty() ? "without" : "with")
                  << " a transfer group id";
  // Typically rank 0 with a fresh transfer group id after its communicator
  // was aborted: the next Prepare must carry it, and the planner learns it
  // only from a hello.
  MaybeReannounce(hello.gpu(), "updated its hello");
  return absl::OkStatus();
}

bool ApplyRelay::PlannerKnowsCurrent(int gpu) const {
  if (!workers_->HasInfo(gpu)) return true;  // nothing to tell
  std::optional<craft::v1::GpuInfo> now;
  for (craft::v1::GpuInfo& info : workers_->GpuInfos()) {
    if (info.rank() == gpu) now = std::move(info);
  }
  auto advertised = advertised_.find(gpu);
  // A worker that attached after the last hello: the planner has neither its
  // transfer endpoint nor, for rank 0, the transfer group id, so no apply
  // could move experts to or from it until the node is re-announced.
  if (advertised == advertised_.end()) return !now.has_value();
  // Every field the planner reads: transfers dial the endpoint and read the
  // serving version, Prepares carry rank 0's transfer group id.
  const craft::v1::GpuInfo& was = advertised->second;
  return now.has_value() && now->memory_bytes() == was.memory_bytes() &&
         now->transfer_endpoint() == was.transfer_endpoint() &&
         now->serving_version() == was.serving_version() &&
         now->transfer_group_id() == was.transfer_group_id();
}

void ApplyRelay::MaybeReannounce(int gpu, const std::string& why) {
  // Not connected: the hello of the next stream describes it, and
  // OnPlannerConnected catches a change made while that hello was on its way.
  if (!planner_connected_ || PlannerKnowsCurrent(gpu)) return;
  CRAFT_LOG(INFO) << "gpu " << gpu << " " << why << "; re-announcing the node to the planner";
  planner_->Reconnect();
}

void ApplyRelay::EndWorker(int gpu, const absl::Status& status) {
  WorkerChannel* channel = workers_->channel(gpu);
  if (channel == nullptr) return;
  CRAFT_LOG(WARNING) << "ending the stream of gpu " << gpu << ": " << status;
  DetachWorker(gpu, channel);
  channel->Close(status);
}

void ApplyRelay::DetachWorker(int gpu, WorkerChannel* channel) {
  if (!workers_->Detach(gpu, channel)) return;
  CRAFT_LOG(INFO) << "worker detached: gpu " << gpu;
  if (resyncs_.erase(gpu) > 0) Reconcile();  // may answer the planner: gpu missing
  if (!apply_.has_value() || apply_->waiting.count(gpu) == 0) return;
  switch (apply_->phase) {
    case Phase::kPreparing:
      FailApply(craft::v1::WORKER_MISSING,
                absl::StrCat("gpu ", gpu, " detached while preparing ", apply_->version),
                {MakeGpuError(gpu, "detached during prepare")});
      return;
    case Phase::kCommitting:
      apply_->waiting.erase(gpu);
      apply_->missing.insert(gpu);
      MaybeFinishCommit(/*timed_out=*/false);
      return;
    case Phase::kAborting:
      apply_->waiting.erase(gpu);  // a worker that is gone holds no staging
      MaybeFinishAbort();
      return;
    case Phase::kPrepared:
      return;  // nothing is awaited; Commit finds the worker missing
  }
}

void ApplyRelay::OnWorkerStatus(int gpu, const craft::v1::WorkerStatus& status) {
  if (OnResyncStatus(gpu, status)) return;
  if (!apply_.has_value() || status.version() != apply_->version) {
    // Expected after a local abort (DROPPED of a closed version); anything
    // else is a worker out of step.
    if (!RecentOutcome(status.version()).has_value()) {
      CRAFT_LOG(WARNING) << "gpu " << gpu << ": ignored status " << status.ShortDebugString()
                         << " (no apply of that version)";
    }
    return;
  }
  Apply& apply = *apply_;
  if (apply.waiting.count(gpu) == 0) {
    CRAFT_LOG(WARNING) << "gpu " << gpu << ": ignored status " << status.ShortDebugString()
                       << " (not awaited)";
    return;
  }
  const craft::v1::WorkerState state = status.state();
  switch (apply.phase) {
    case Phase::kPreparing:
      if (state == craft::v1::READY) {
        apply.waiting.erase(gpu);
        if (apply.waiting.empty()) {
          apply.phase = Phase::kPrepared;
          SendAck(apply.nonce, apply.version, craft::v1::PREPARED);
          CRAFT_CRASH_POINT("agent.prepared_acked");
        }
        return;
      }
      if (state == craft::v1::FAILED) {
        FailApply(
            craft::v1::WORKER_FAILED,
            absl::StrCat("gpu ", gpu, " failed to stage ", apply.version, ": ", status.error()),
            {MakeGpuError(gpu, status.error())});
        return;
      }
      break;
    case Phase::kCommitting:
      if (state == craft::v1::FLIPPED || state == craft::v1::FAILED) {
        apply.waiting.erase(gpu);
        if (state == craft::v1::FLIPPED) {
          RecordFlip(gpu, apply.version, /*planner_hears=*/true);
        } else {
          apply.errors.push_back(MakeGpuError(gpu, status.error()));
        }
        MaybeFinishCommit(/*timed_out=*/false);
        return;
      }
      break;
    case Phase::kAborting:
      if (state == craft::v1::DROPPED || state == craft::v1::FAILED) {
        apply.waiting.erase(gpu);
        MaybeFinishAbort();
        return;
      }
      break;
    case Phase::kPrepared:
      break;
  }
  CRAFT_LOG(WARNING) << "gpu " << gpu << ": ignored status " << status.ShortDebugString()
                     << " (out of turn)";
}

// ---------------------------------------------------------------- planner

craft::v1::AgentHello ApplyRelay::MakeHello() const {
  craft::v1::AgentHello hello;
  hello.set_node(options_.node);
  advertised_.clear();
  for (craft::v1::GpuInfo& info : workers_->GpuInfos()) {
    if (workers_->HasInfo(info.rank())) advertised_[info.rank()] = info;
    *hello.add_gpus() = std::move(info);
  }
  // What this agent's own configuration says (zero fields: it has none for
  // them), not what it learned from the planner: a planner with a new model
  // is told nothing stale, and its Welcome updates the node.
  const craft::v1::ModelShape configured = model_.configured();
  if (configured.num_layers() > 0 || configured.num_experts() > 0 || configured.top_k() > 0) {
    *hello.mutable_model() = configured;
  }
  hello.set_committed_version(committed_version());
  hello.set_highest_epoch(highest_epoch_);
  if (apply_.has_value() && apply_->phase == Phase::kPrepared) {
    hello.set_prepared_version(apply_->version);  // in doubt: the planner decides
  }
  return hello;
}

void ApplyRelay::OnPlannerConnected() {
  planner_connected_ = true;
  ++stats_.planner_connects;
  // A worker hello that came between MakeHello and now changed what the
  // hello just sent says: announce again.
  for (int gpu : workers_->gpus()) {
    if (!PlannerKnowsCurrent(gpu)) {
      CRAFT_LOG(INFO) << "gpu " << gpu
                      << " changed while the hello was on its way; re-announcing the node";
      planner_->Reconnect();
      break;
    }
  }
}

void ApplyRelay::OnPlannerDisconnected() {
  planner_connected_ = false;
  ++stats_.planner_disconnects;
  deferred_prepare_.reset();
  resync_nonce_.clear();  // the next planner re-drives what it still needs
  if (!apply_.has_value()) return;
  switch (apply_->phase) {
    case Phase::kPreparing:
      // Not PREPARED yet, so the planner cannot have committed it: drop the
      // staging now instead of holding its memory.
      AbortLocally("planner stream lost");
      return;
    case Phase::kPrepared:
      // In doubt: the planner may have passed the commit point. Keep the
      // staging; the next hello names it and the planner decides.
      CRAFT_LOG(WARNING) << "planner stream lost with " << apply_->version
                         << " prepared; keeping it staged until the planner decides";
      return;
    case Phase::kAborting:
      CloseApply(/*aborted=*/true);
      return;
    case Phase::kCommitting:
      return;  // past the commit point: let the workers finish flipping
  }
}

void ApplyRelay::OnPlannerMessage(const craft::v1::PlannerMessage& message) {
  if (message.epoch() < highest_epoch_) {
    SendNack(
        message.nonce(), MessageVersion(message), craft::v1::STALE_EPOCH,
        absl::StrCat("epoch ", message.epoch(), " is below ", highest_epoch_, ", already seen"));
    return;
  }
  if (message.epoch() > highest_epoch_) {
    CRAFT_LOG(INFO) << "planner epoch " << highest_epoch_ << " -> " << message.epoch();
    highest_epoch_ = message.epoch();
    Persist();
  }
  switch (message.body_case()) {
    case craft::v1::PlannerMessage::kPrepare:
      HandlePrepare(message.nonce(), message.prepare());
      return;
    case craft::v1::PlannerMessage::kCommit:
      HandleCommit(message.nonce(), message.commit());
      return;
    case craft::v1::PlannerMessage::kAbort:
      HandleAbort(message.nonce(), message.abort().version());
      return;
    case craft::v1::PlannerMessage::kWelcome:
      HandleWelcome(message.welcome());
      return;
    default:
      SendNack(message.nonce(), "", craft::v1::ERROR_CODE_UNSPECIFIED,
               "planner message without prepare, commit or abort");
      return;
  }
}

absl::Status ApplyRelay::ValidatePrepare(const craft::v1::Prepare& prepare) const {
  const std::string& version = prepare.layout().version();
  if (!IsVersionName(version)) {
    return absl::InvalidArgumentError(absl::StrCat("layout version '", version,
                                                   "' is empty, longer than ", kMaxVersionBytes,
                                                   " bytes or has blanks"));
  }
  if (version == committed_version() || RecentOutcome(version).has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("version ", version, " was already used here; versions are never reused"));
  }
  if (std::optional<craft::v1::ModelShape> model = workers_->model()) {
    if (model->bytes_per_expert() > 0 && prepare.bytes_per_expert() > 0 &&
        prepare.bytes_per_expert() != model->bytes_per_expert()) {
      return absl::InvalidArgumentError(
          absl::StrCat("bytes_per_expert ", prepare.bytes_per_expert(),
                       " differs from the model's ", model->bytes_per_expert()));
    }
  }
  if (prepare.load_missing_from_checkpoint()) {
    return absl::InvalidArgumentError(
        "load_missing_from_checkpoint is the agent's own resync; a planner never sets it");
  }
  CRAFT_ASSIGN_OR_RETURN(const planner::Layout layout, ParseNodeLayout(prepare.layout()));
  return ValidateTransfers(prepare, layout);
}

absl::StatusOr<planner::Layout> ApplyRelay::ParseNodeLayout(const craft::v1::Layout& proto) const {
  if (!model_.contradiction().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(model_.contradiction(), "; this node refuses that planner's layouts"));
  }
  absl::StatusOr<planner::Layout> layout = LayoutFromProto(proto);
  if (!layout.ok()) return layout.status();
  const planner::ClusterShape& cluster = layout->cluster;
  if (cluster.num_gpus <= workers_->gpus().back()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layout has ", cluster.num_gpus, " GPUs; this node has gpu ", workers_->gpus().back()));
  }
  const int node = cluster.NodeOf(workers_->gpus().front());
  for (int gpu : workers_->gpus()) {
    if (cluster.NodeOf(gpu) != node) {
      return absl::InvalidArgumentError(
          absl::StrCat("layout puts this node's GPUs on different nodes (", cluster.num_gpus,
                       " GPUs on ", cluster.num_nodes, " nodes)"));
    }
  }
  if (std::optional<craft::v1::ModelShape> model = workers_->model()) {
    // The node knows its model's layers and experts (both set, NodeModel),
    // not the cluster's size: the GPUs and nodes are the layout's own,
    // checked above against this node's GPUs.
    CRAFT_RETURN_IF_ERROR(planner::CheckLayoutShape(
        "layout", layout->shape(), "the shape this node's model needs",
        {model->num_layers(), model->num_experts(), cluster.num_gpus, cluster.num_nodes}));
  }
  return layout;
}

absl::StatusOr<craft::v1::Layout> ApplyRelay::LayoutFromDelta(
    const craft::v1::LayoutDelta& delta) const {
  const std::string& base_version = delta.base_version();
  absl::StatusOr<planner::Layout> base;
  if (committed_layout_.has_value() && committed_layout_->version() == base_version) {
    base = ParseNodeLayout(*committed_layout_);
  } else if (base_version == kInitialVersion && committed_version_.empty() &&
             (committed_version().empty() || committed_version() == kInitialVersion)) {
    // Every party knows the initial layout of a shape; the shape must be this
    // node's model, so a delta cannot make the agent build an arbitrary one.
    const std::optional<craft::v1::ModelShape> model = workers_->model();
    if (!model.has_value() || delta.num_layers() != model->num_layers() ||
        delta.num_experts() != model->num_experts() ||
        delta.num_gpus() <= workers_->gpus().back() || delta.num_gpus() > kMaxClusterGpus) {
      return absl::InvalidArgumentError(
          absl::StrCat("layout delta from ", base_version, " is for ", delta.num_layers(),
                       " layers x ", delta.num_experts(), " experts on ", delta.num_gpus(),
                       " GPUs, which is not this node's model and cluster"));
    }
    base = planner::ContiguousLayout(delta.num_layers(), delta.num_experts(),
                                     {delta.num_gpus(), delta.num_nodes()});
  } else {
    return absl::FailedPreconditionError(absl::StrCat(
        "layout delta from ", base_version, ", but this node holds ",
        committed_layout_.has_value() ? committed_layout_->version() : committed_version(),
        ": it needs the full layout"));
  }
  if (!base.ok()) return base.status();
  CRAFT_ASSIGN_OR_RETURN(const planner::Layout layout, ApplyLayoutDelta(*base, delta));
  return LayoutToProto(layout, delta.version());
}

void ApplyRelay::HandlePrepare(const std::string& nonce, const craft::v1::Prepare& received) {
  const std::string& version = PrepareVersion(received);
  if (apply_.has_value() && apply_->version == version) {
    switch (apply_->phase) {
      case Phase::kPreparing:  // a repeat: answer it when the workers are done
        apply_->nonce = nonce;
        return;
      case Phase::kPrepared:
        apply_->nonce = nonce;
        SendAck(nonce, version, craft::v1::PREPARED);
        return;
      case Phase::kCommitting:
      case Phase::kAborting:
        SendNack(nonce, version, craft::v1::BAD_LAYOUT,
                 absl::StrCat("version ", version, " is past prepare; versions are never reused"));
        return;
    }
  }
  if (apply_.has_value() && apply_->phase == Phase::kCommitting) {
    CRAFT_LOG(INFO) << "prepare of " << version << " waits for the commit of " << apply_->version;
    deferred_prepare_.emplace(nonce, received);
    return;
  }
  // A delta applies to what is committed now (after a deferred commit, too);
  // workers get the full layout, as from a planner that sends it whole.
  craft::v1::Prepare expanded;
  if (received.has_layout_delta()) {
    absl::StatusOr<craft::v1::Layout> layout = LayoutFromDelta(received.layout_delta());
    if (!layout.ok()) {
      SendNack(nonce, version, craft::v1::BAD_LAYOUT, std::string(layout.status().message()));
      if (IsVersionName(version) && !RecentOutcome(version).has_value()) {
        Remember(version, /*aborted=*/true);
      }
      return;
    }
    expanded = received;
    expanded.clear_layout_delta();
    *expanded.mutable_layout() = *std::move(layout);
  }
  const craft::v1::Prepare& prepare = received.has_layout_delta() ? expanded : received;
  if (absl::Status s = ValidatePrepare(prepare); !s.ok()) {
    SendNack(nonce, version, craft::v1::BAD_LAYOUT, std::string(s.message()));
    // The planner answers a Nack with Abort{V}: let that be acknowledged.
    if (IsVersionName(version) && !RecentOutcome(version).has_value()) {
      Remember(version, /*aborted=*/true);
    }
    return;
  }
  if (apply_.has_value()) AbortLocally(absl::StrCat("superseded by ", version));
  if (!resyncs_.empty()) {
    // The planner applies over what every GPU serves; these are on their way
    // to the committed version and it will hear when they are there.
    std::vector<GpuError> errors;
    std::vector<int> gpus;
    for (const auto& [gpu, resync] : resyncs_) {
      gpus.push_back(gpu);
      errors.push_back(MakeGpuError(gpu, absl::StrCat("resynchronising to ", committed_version_)));
    }
    SendNack(nonce, version, craft::v1::WORKER_MISSING,
             absl::StrCat("gpus ", absl::StrJoin(gpus, ","), " are being resynchronised to ",
                          committed_version_),
             std::move(errors));
    Remember(version, /*aborted=*/true);
    return;
  }
  const std::vector<int> missing = workers_->MissingGpus();
  if (!missing.empty()) {
    std::vector<GpuError> errors;
    for (int gpu : missing) errors.push_back(MakeGpuError(gpu, "no worker attached"));
    SendNack(nonce, version, craft::v1::WORKER_MISSING,
             absl::StrCat("no worker attached for gpu ", absl::StrJoin(missing, ",")),
             std::move(errors));
    Remember(version, /*aborted=*/true);
    return;
  }
  Apply apply;
  apply.version = version;
  apply.nonce = nonce;
  apply.phase = Phase::kPreparing;
  apply.timeout = prepare.timeout_ms() > 0
                      ? std::min(absl::Milliseconds(prepare.timeout_ms()), kMaxApplyTimeout)
                      : options_.default_apply_timeout;
  apply.deadline = clock_->Now() + apply.timeout;
  apply.gpus = workers_->gpus();
  apply.waiting.insert(apply.gpus.begin(), apply.gpus.end());
  apply.layout = prepare.layout();
  apply_ = std::move(apply);
  CRAFT_LOG(INFO) << "preparing " << version << " on gpus " << absl::StrJoin(workers_->gpus(), ",");
  craft::v1::WorkerCommand command;
  *command.mutable_prepare() = prepare;
  SendToWorkers(apply_->gpus, command);
  CRAFT_CRASH_POINT("agent.prepare_forwarded");
}

void ApplyRelay::HandleCommit(const std::string& nonce, const craft::v1::Commit& commit) {
  const std::string& version = commit.version();
  if (apply_.has_value() && apply_->version == version) {
    Apply& apply = *apply_;
    switch (apply.phase) {
      case Phase::kPrepared: {
        // Write-ahead: whatever crashes from here on, this node comes back
        // knowing V is committed and brings every worker to it.
        RecordCommitted(version, apply.layout);
        apply.phase = Phase::kCommitting;
        apply.nonce = nonce;
        apply.deadline = clock_->Now() + apply.timeout;
        const std::vector<int> attached = AttachedOf(apply.gpus);
        apply.waiting.insert(attached.begin(), attached.end());
        for (int gpu : apply.gpus) {
          if (apply.waiting.count(gpu) == 0) apply.missing.insert(gpu);
        }
        CRAFT_LOG(INFO) << "committing " << version;
        craft::v1::WorkerCommand command;
        command.mutable_commit()->set_version(version);
        SendToWorkers(attached, command);
        CRAFT_CRASH_POINT("agent.commit_forwarded");
        MaybeFinishCommit(/*timed_out=*/false);
        return;
      }
      case Phase::kCommitting:
        apply.nonce = nonce;  // a repeat: answered when the workers flipped
        return;
      case Phase::kPreparing:
        SendNack(nonce, version, craft::v1::UNKNOWN_VERSION,
                 absl::StrCat("version ", version, " is not prepared yet"));
        return;
      case Phase::kAborting:
        SendNack(nonce, version, craft::v1::UNKNOWN_VERSION,
                 absl::StrCat("version ", version, " is being aborted"));
        return;
    }
  }
  if (commit.has_layout() || (!version.empty() && version == committed_version_)) {
    HandleResync(nonce, commit);
    return;
  }
  const std::optional<bool> recent = RecentOutcome(version);
  SendNack(nonce, version, craft::v1::UNKNOWN_VERSION,
           !recent.has_value() ? absl::StrCat("version ", version, " was never prepared here")
           : *recent           ? absl::StrCat("version ", version, " was aborted")
                               : absl::StrCat("the commit of ", version, " failed"));
}

void ApplyRelay::HandleAbort(const std::string& nonce, const std::string& version) {
  if (apply_.has_value() && apply_->version == version) {
    Apply& apply = *apply_;
    switch (apply.phase) {
      case Phase::kPreparing:
      case Phase::kPrepared: {
        apply.phase = Phase::kAborting;
        apply.nonce = nonce;
        apply.deadline = clock_->Now() + apply.timeout;
        const std::vector<int> attached = AttachedOf(apply.gpus);
        apply.waiting = std::set<int>(attached.begin(), attached.end());
        CRAFT_LOG(INFO) << "aborting " << version;
        craft::v1::WorkerCommand command;
        command.mutable_abort()->set_version(version);
        command.mutable_abort()->set_reason("planner abort");
        SendToWorkers(attached, command);
        MaybeFinishAbort();
        return;
      }
      case Phase::kAborting:
        apply.nonce = nonce;
        return;
      case Phase::kCommitting:
        SendNack(nonce, version, craft::v1::UNKNOWN_VERSION,
                 absl::StrCat("version ", version, " is being committed; it cannot be aborted"));
        return;
    }
  }
  const std::optional<bool> recent = RecentOutcome(version);
  if (recent.has_value() && *recent) {
    SendAck(nonce, version, craft::v1::ABORTED);  // already dropped here
    return;
  }
  SendNack(nonce, version, craft::v1::UNKNOWN_VERSION,
           version == committed_version_ && !version.empty()
               ? absl::StrCat("version ", version, " is committed; it cannot be aborted")
               : absl::StrCat("version ", version, " is not pending here"));
}

void ApplyRelay::HandleWelcome(const craft::v1::Welcome& welcome) {
  if (!welcome.has_model()) return;  // a planner that does not state it
  const std::optional<craft::v1::ModelShape> was = model_.shape();
  const std::optional<craft::v1::ModelShape> planner_was = model_.from_planner();
  if (absl::Status s = model_.AdoptPlannerShape(welcome.model()); !s.ok()) {
    CRAFT_LOG(ERROR) << s.message() << "; keeping this node's model"
                     << (was.has_value() ? " (" + was->ShortDebugString() + ")" : "")
                     << " and refusing the planner's layouts";
    return;
  }
  if (!SameModel(planner_was, model_.from_planner())) {
    CRAFT_LOG(INFO) << "the planner states the model: " << welcome.model().ShortDebugString();
    Persist();  // a restarted agent knows it before the planner is back
  }
  const std::optional<craft::v1::ModelShape> now = model_.shape();
  if (SameModel(was, now)) return;
  CRAFT_LOG(INFO) << "this node's model is now " << now->ShortDebugString();
  for (int gpu : workers_->SetModel(now)) {
    EndWorker(gpu, absl::InvalidArgumentError(absl::StrCat(
                       "gpu ", gpu, ": its model differs from this node's, which is now (",
                       now->ShortDebugString(), ") as the planner states it")));
  }
}

void ApplyRelay::HandleResync(const std::string& nonce, const craft::v1::Commit& commit) {
  const std::string& version = commit.version();
  if (!IsVersionName(version)) {
    SendNack(nonce, version, craft::v1::BAD_LAYOUT,
             absl::StrCat("commit version '", version, "' is not a sane version"));
    return;
  }
  if (commit.has_layout()) {
    absl::Status valid = commit.layout().version() == version
                             ? ParseNodeLayout(commit.layout()).status()
                             : absl::InvalidArgumentError(absl::StrCat("the layout is version ",
                                                                       commit.layout().version()));
    if (!valid.ok()) {
      SendNack(nonce, version, craft::v1::BAD_LAYOUT,
               absl::StrCat("resync to ", version, ": ", valid.message()));
      return;
    }
  } else if (!committed_layout_.has_value() || committed_layout_->version() != version) {
    SendNack(nonce, version, craft::v1::UNKNOWN_VERSION,
             absl::StrCat("no layout of ", version, " here; a resync must carry it"));
    return;
  }
  if (apply_.has_value()) {
    if (apply_->phase == Phase::kCommitting) {  // its own Commit came first
      SendNack(nonce, version, craft::v1::UNKNOWN_VERSION,
               absl::StrCat("committing ", apply_->version, "; resync to ", version, " refused"));
      return;
    }
    // The planner committed `version`, so whatever is staged here lost.
    AbortLocally(absl::StrCat("the planner committed ", version));
  }
  if (version != committed_version_ || !committed_layout_.has_value()) {
    CRAFT_LOG(INFO) << "resync: the planner committed " << version << " (this node had "
                    << (committed_version_.empty() ? "none" : committed_version_) << ")";
    RecordCommitted(version, commit.layout());
  }
  resync_nonce_ = nonce;
  Reconcile();
}

void ApplyRelay::RecordCommitted(const std::string& version, const craft::v1::Layout& layout) {
  committed_version_ = version;
  committed_layout_ = layout;
  Persist();
  CRAFT_CRASH_POINT("agent.commit_persisted");
}

void ApplyRelay::Reconcile() {
  if (apply_.has_value() || !committed_layout_.has_value()) return;
  const absl::Time now = clock_->Now();
  for (int gpu : workers_->AttachedGpus()) {
    if (workers_->ServingVersion(gpu) == committed_version_ || resyncs_.count(gpu) > 0) continue;
    auto retry = resync_retry_at_.find(gpu);
    if (retry != resync_retry_at_.end() && now < retry->second) continue;
    resync_retry_at_.erase(gpu);
    CRAFT_LOG(INFO) << "gpu " << gpu << " serves " << workers_->ServingVersion(gpu)
                    << "; bringing it to the committed " << committed_version_;
    craft::v1::WorkerCommand command;
    craft::v1::Prepare* prepare = command.mutable_prepare();
    *prepare->mutable_layout() = *committed_layout_;
    prepare->set_timeout_ms(absl::ToInt64Milliseconds(options_.default_apply_timeout));
    prepare->set_load_missing_from_checkpoint(true);
    resyncs_[gpu] = WorkerResync{false, now + options_.default_apply_timeout};
    ++stats_.worker_resyncs_started;
    SendToWorkers({gpu}, command);
  }
  if (!resyncs_.empty() || resync_nonce_.empty()) return;
  // Nothing left to bring: answer the planner's resync.
  const std::string nonce = std::exchange(resync_nonce_, "");
  std::vector<GpuError> errors;
  for (int gpu : workers_->gpus()) {
    if (workers_->channel(gpu) == nullptr) {
      errors.push_back(MakeGpuError(gpu, "not attached"));
    } else if (workers_->ServingVersion(gpu) != committed_version_) {
      errors.push_back(MakeGpuError(
          gpu, absl::StrCat("serves ", workers_->ServingVersion(gpu), "; its resync failed")));
    }
  }
  if (errors.empty()) {
    SendAck(nonce, committed_version_, craft::v1::COMMITTED);
    return;
  }
  SendNack(nonce, committed_version_, craft::v1::WORKER_MISSING,
           absl::StrCat("not every worker serves ", committed_version_), std::move(errors));
}

bool ApplyRelay::OnResyncStatus(int gpu, const craft::v1::WorkerStatus& status) {
  auto it = resyncs_.find(gpu);
  if (it == resyncs_.end() || status.version() != committed_version_) return false;
  WorkerResync& resync = it->second;
  const craft::v1::WorkerState state = status.state();
  if (state == craft::v1::FAILED) {
    RetryResyncLater(gpu, status.error());
    return true;
  }
  if (!resync.flipping && state == craft::v1::READY) {
    resync.flipping = true;
    craft::v1::WorkerCommand command;
    command.mutable_commit()->set_version(committed_version_);
    SendToWorkers({gpu}, command);
    return true;
  }
  if (resync.flipping && state == craft::v1::FLIPPED) {
    resyncs_.erase(it);
    RecordFlip(gpu, committed_version_, /*planner_hears=*/!resync_nonce_.empty());
    ++stats_.worker_resyncs_done;
    CRAFT_LOG(INFO) << "gpu " << gpu << " resynchronised to " << committed_version_;
    // Unasked (the planner was not waiting), tell the planner what changed.
    if (resync_nonce_.empty()) MaybeReannounce(gpu, "was resynchronised");
    Reconcile();
    return true;
  }
  CRAFT_LOG(WARNING) << "gpu " << gpu << ": ignored status " << status.ShortDebugString()
                     << " (out of turn in its resync)";
  return true;
}

void ApplyRelay::RecordFlip(int gpu, const std::string& version, bool planner_hears) {
  workers_->SetServing(gpu, version);
  // The planner learns this flip from the Ack that answers its Commit, so a
  // hello update of the worker saying the same is no news to re-announce.
  auto advertised = advertised_.find(gpu);
  if (planner_hears && advertised != advertised_.end()) {
    advertised->second.set_serving_version(version);
  }
}

void ApplyRelay::RetryResyncLater(int gpu, const std::string& why) {
  constexpr absl::Duration kResyncRetry = absl::Seconds(1);
  CRAFT_LOG(WARNING) << "gpu " << gpu << ": resync to " << committed_version_ << " failed: " << why
                     << "; retrying in " << absl::FormatDuration(kResyncRetry);
  resyncs_.erase(gpu);
  ++stats_.worker_resyncs_failed;
  resync_retry_at_[gpu] = clock_->Now() + kResyncRetry;
  craft::v1::WorkerCommand command;
  command.mutable_abort()->set_version(committed_version_);
  command.mutable_abort()->set_reason("resync failed");
  SendToWorkers({gpu}, command);  // drop whatever it staged of it
  Reconcile();                    // answers the planner: that GPU is not on it yet
}

void ApplyRelay::FailApply(ErrorCode code, const std::string& message,
                           std::vector<GpuError> errors) {
  SendNack(apply_->nonce, apply_->version, code, message, std::move(errors));
  AbortLocally(message);
}

void ApplyRelay::AbortLocally(const std::string& reason) {
  CRAFT_LOG(INFO) << "dropping staged " << apply_->version << ": " << reason;
  craft::v1::WorkerCommand command;
  command.mutable_abort()->set_version(apply_->version);
  command.mutable_abort()->set_reason(reason);
  SendToWorkers(AttachedOf(apply_->gpus), command);
  CloseApply(/*aborted=*/true);
}

void ApplyRelay::MaybeFinishCommit(bool timed_out) {
  Apply& apply = *apply_;
  if (!timed_out && !apply.waiting.empty()) return;
  // V was recorded as committed when the Commit came; workers that did not
  // flip are brought to it by Reconcile once the apply is closed.
  std::vector<GpuError> errors = apply.errors;
  for (int gpu : apply.missing) errors.push_back(MakeGpuError(gpu, "not attached to flip"));
  if (timed_out) {
    for (int gpu : apply.waiting) {
      errors.push_back(MakeGpuError(
          gpu, absl::StrCat("did not flip within ", absl::FormatDuration(apply.timeout))));
    }
    SendNack(apply.nonce, apply.version, craft::v1::TIMEOUT,
             absl::StrCat("commit of ", apply.version, " timed out"), std::move(errors));
  } else if (!apply.errors.empty()) {
    SendNack(apply.nonce, apply.version, craft::v1::WORKER_FAILED,
             absl::StrCat("workers failed to flip to ", apply.version), std::move(errors));
  } else if (!apply.missing.empty()) {
    SendNack(apply.nonce, apply.version, craft::v1::WORKER_MISSING,
             absl::StrCat("workers missing at the commit of ", apply.version), std::move(errors));
  } else {
    CRAFT_LOG(INFO) << "committed " << apply.version;
    SendAck(apply.nonce, apply.version, craft::v1::COMMITTED);
  }
  CloseApply(/*aborted=*/false);
}

void ApplyRelay::MaybeFinishAbort() {
  if (!apply_->waiting.empty()) return;
  SendAck(apply_->nonce, apply_->version, craft::v1::ABORTED);
  CloseApply(/*aborted=*/true);
}

void ApplyRelay::CloseApply(bool aborted) {
  Remember(apply_->version, aborted);
  apply_.reset();
  StartDeferredPrepare();
  Reconcile();  // no-op while a deferred prepare runs
}

void ApplyRelay::Remember(const std::string& version, bool aborted) {
  recent_.emplace_back(version, aborted);
  while (recent_.size() > kRecentVersions) recent_.pop_front();
}

void ApplyRelay::StartDeferredPrepare() {
  if (!deferred_prepare_.has_value()) return;
  std::pair<std::string, craft::v1::Prepare> deferred = std::move(*deferred_prepare_);
  deferred_prepare_.reset();
  HandlePrepare(deferred.first, deferred.second);
}

std::optional<bool> ApplyRelay::RecentOutcome(const std::string& version) const {
  for (auto it = recent_.rbegin(); it != recent_.rend(); ++it) {
    if (it->first == version) return it->second;
  }
  return std::nullopt;
}

// ---------------------------------------------------------------- time

void ApplyRelay::Poll() {
  const absl::Time now = clock_->Now();
  if (apply_.has_value() && apply_->phase != Phase::kPrepared && now >= apply_->deadline) {
    Apply& apply = *apply_;
    const std::string within = absl::FormatDuration(apply.timeout);
    std::vector<GpuError> errors;
    for (int gpu : apply.waiting) {
      errors.push_back(MakeGpuError(gpu, absl::StrCat("no answer within ", within)));
    }
    switch (apply.phase) {
      case Phase::kPreparing:
        FailApply(craft::v1::TIMEOUT,
                  absl::StrCat("workers did not stage ", apply.version, " within ", within),
                  std::move(errors));
        break;
      case Phase::kCommitting:
        MaybeFinishCommit(/*timed_out=*/true);
        break;
      case Phase::kAborting:
        SendNack(apply.nonce, apply.version, craft::v1::TIMEOUT,
                 absl::StrCat("workers did not drop ", apply.version, " within ", within),
                 std::move(errors));
        CloseApply(/*aborted=*/true);
        break;
      case Phase::kPrepared:
        break;
    }
  }
  std::vector<int> overdue;
  for (const auto& [gpu, resync] : resyncs_) {
    if (now >= resync.deadline) overdue.push_back(gpu);
  }
  for (int gpu : overdue) {
    RetryResyncLater(gpu, absl::StrCat("no answer within ",
                                       absl::FormatDuration(options_.default_apply_timeout)));
  }
  if (!resync_retry_at_.empty()) Reconcile();
}

// ---------------------------------------------------------------- output

void ApplyRelay::SendToWorkers(const std::vector<int>& gpus,
                               const craft::v1::WorkerCommand& command) {
  for (int gpu : gpus) {
    if (WorkerChannel* channel = workers_->channel(gpu)) channel->Send(command);
  }
}

void ApplyRelay::SendAck(const std::string& nonce, const std::string& version, AckPhase phase) {
  craft::v1::AgentMessage message;
  craft::v1::Ack* ack = message.mutable_ack();
  ack->set_nonce(nonce);
  ack->set_version(version);
  ack->set_phase(phase);
  ++stats_.acks_sent;
  ++stats_.acks_by_phase[phase];
  planner_->Send(message);
}

void ApplyRelay::SendNack(const std::string& nonce, const std::string& version, ErrorCode code,
                          const std::string& text, std::vector<GpuError> errors) {
  CRAFT_LOG(WARNING) << "nack " << craft::v1::ErrorCode_Name(code) << " for version '" << version
                     << "': " << text;
  craft::v1::AgentMessage message;
  craft::v1::Nack* nack = message.mutable_nack();
  nack->set_nonce(nonce);
  nack->set_version(version);
  nack->set_last_good_version(committed_version());
  nack->mutable_error()->set_code(code);
  nack->mutable_error()->set_message(text);
  for (GpuError& error : errors) *nack->mutable_error()->add_gpus() = std::move(error);
  ++stats_.nacks_sent;
  ++stats_.nacks_by_code[code];
  planner_->Send(message);
}

void ApplyRelay::Persist() {
  const AgentState state{highest_epoch_, committed_version_, committed_layout_,
                         model_.from_planner()};
  if (absl::Status s = store_->Save(state); !s.ok()) {
    // Keep going in memory: refusing to serve would not make the disk work.
    CRAFT_LOG(ERROR) << "cannot persist agent state: " << s;
  }
}

std::vector<int> ApplyRelay::AttachedOf(const std::vector<int>& gpus) const {
  std::vector<int> attached;
  for (int gpu : gpus) {
    if (workers_->channel(gpu) != nullptr) attached.push_back(gpu);
  }
  return attached;
}

// ---------------------------------------------------------------- observers

std::string ApplyRelay::committed_version() const {
  return committed_version_.empty() ? workers_->CommonWorkerVersion() : committed_version_;
}

}  // namespace craft::agent
