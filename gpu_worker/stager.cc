#include "gpu_worker/stager.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "wire/layout_proto.h"

namespace craft::gpu_worker {
namespace {

absl::Status CheckIndex(const char* what, int value, int limit) {
  if (value < 0 || value >= limit) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", value, " is outside [0, ", limit, ")"));
  }
  return absl::OkStatus();
}

std::string Describe(const craft::v1::Transfer& t) {
  return absl::StrCat("transfer of layer ", t.layer(), " expert ", t.expert(), " from gpu ",
                      t.src_gpu(), " slot ", t.src_slot(), " (version ", t.src_version(),
                      ") to gpu ", t.dst_gpu(), " slot ", t.dst_slot(), ": ");
}

// Everything PlanStaging needs to judge one transfer.
struct PlanContext {
  const craft::v1::Prepare& prepare;
  const WorkerShape& shape;
  const std::string& serving_version;
  const LocalLayout& serving;  // this GPU's serving slots
  const LocalLayout& next;     // this GPU's slots in the new layout
};

// When this GPU is a transfer's source, it must serve the slot it is asked for.
absl::StatusOr<int> ResolveLocalSource(const PlanContext& ctx, const craft::v1::Transfer& t) {
  if (t.src_version() != ctx.serving_version) {
    return absl::InvalidArgumentError(
        absl::StrCat("this GPU serves version ", ctx.serving_version, ", not ", t.src_version()));
  }
  absl::StatusOr<int> local = ctx.serving.Resolve(t.layer(), t.src_slot(), t.expert());
  if (!local.ok()) return absl::InvalidArgumentError(local.status().message());
  return local;
}

// The source of a transfer into one of this GPU's slots.
absl::StatusOr<SlotSource> SourceOfTransfer(const PlanContext& ctx, const craft::v1::Transfer& t,
                                            int dst_local) {
  SlotSource source;
  source.layer = t.layer();
  source.slot = dst_local;
  source.expert = t.expert();
  if (t.src_gpu() == ctx.shape.gpu) {
    source.kind = SlotSource::Kind::kLocalCopy;
    CRAFT_ASSIGN_OR_RETURN(source.serving_slot, ResolveLocalSource(ctx, t));
    return source;
  }
  const auto endpoint = ctx.prepare.gpu_endpoints().find(t.src_gpu());
  if (endpoint == ctx.prepare.gpu_endpoints().end() || endpoint->second.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("missing source: no transfer endpoint for gpu ", t.src_gpu()));
  }
  source.kind = SlotSource::Kind::kFetch;
  source.fetch.layer = t.layer();
  source.fetch.expert = t.expert();
  source.fetch.src_gpu = t.src_gpu();
  source.fetch.src_endpoint = endpoint->second;
  const auto node = ctx.prepare.gpu_nodes().find(t.src_gpu());
  if (node != ctx.prepare.gpu_nodes().end()) source.fetch.src_node = node->second;
  source.fetch.dst_gpu = ctx.shape.gpu;
  source.fetch.src_version = t.src_version();
  source.fetch.src_slot = t.src_slot();
  source.fetch.dst_version = ctx.next.version;
  source.fetch.dst_slot = dst_local;
  return source;
}

// Validates the transfers that involve this GPU; returns the sources of the
// slots they fill, keyed by (layer, local slot), and appends the transfers
// this GPU sends to `sends`.
absl::StatusOr<std::map<std::pair<int, int>, SlotSource>> TransferSources(
    const PlanContext& ctx, std::vector<OutgoingTransfer>* sends) {
  std::map<std::pair<int, int>, SlotSource> sources;
  const int me = ctx.shape.gpu;
  for (int index = 0; index < ctx.prepare.transfers_size(); ++index) {
    const craft::v1::Transfer& t = ctx.prepare.transfers(index);
    if (t.dst_gpu() != me && t.src_gpu() != me) continue;  // a node-mate's
    const std::string what = Describe(t);
    absl::Status valid = CheckIndex("layer", t.layer(), ctx.shape.num_layers);
    if (valid.ok()) valid = CheckIndex("expert", t.expert(), ctx.shape.num_experts);
    if (valid.ok()) valid = CheckIndex("src_gpu", t.src_gpu(), ctx.shape.cluster.num_gpus);
    if (valid.ok()) valid = CheckIndex("dst_gpu", t.dst_gpu(), ctx.shape.cluster.num_gpus);
    if (!valid.ok()) return Prefixed(valid, what);
    if (t.dst_gpu() != me) {  // a peer reads from this GPU
      absl::StatusOr<int> src = ResolveLocalSource(ctx, t);
      if (!src.ok()) return Prefixed(src.status(), what);
      sends->push_back({index, t.layer(), t.expert(), t.dst_gpu(), *src});
      continue;
    }
    absl::StatusOr<int> dst = ctx.next.Resolve(t.layer(), t.dst_slot(), t.expert());
    if (!dst.ok()) return absl::InvalidArgumentError(absl::StrCat(what, dst.status().message()));
    absl::StatusOr<SlotSource> source = SourceOfTransfer(ctx, t, *dst);
    if (!source.ok()) return Prefixed(source.status(), what);
    source->transfer_index = index;
    if (!sources.emplace(std::make_pair(t.layer(), *dst), *std::move(source)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, "another transfer already fills this slot"));
    }
  }
  return sources;
}

// The source of a slot no transfer fills: the same or another serving slot,
// else the checkpoint when the prepare allows it.
absl::StatusOr<SlotSource> SourceOfUntouchedSlot(const PlanContext& ctx, int layer, int slot) {
  SlotSource source;
  source.layer = layer;
  source.slot = slot;
  source.expert = ctx.next.layers[layer].experts[slot];
  const std::vector<int>& held = ctx.serving.layers[layer].experts;
  if (slot < static_cast<int>(held.size()) && held[slot] == source.expert) {
    source.kind = SlotSource::Kind::kKeep;
    source.serving_slot = slot;
    return source;
  }
  const auto it = std::find(held.begin(), held.end(), source.expert);
  if (it == held.end() && ctx.prepare.load_missing_from_checkpoint()) {
    source.kind = SlotSource::Kind::kCheckpoint;
    return source;
  }
  if (it == held.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "missing source: no transfer brings expert ", source.expert, " to layer ", layer, " slot ",
        ctx.next.layers[layer].first_slot + slot, " and this GPU does not hold it"));
  }
  source.kind = SlotSource::Kind::kLocalCopy;
  source.serving_slot = static_cast<int>(it - held.begin());
  return source;
}

absl::StatusOr<StagePlan> PlanStagingUnprefixed(const craft::v1::Prepare& prepare,
                                                const WorkerShape& shape,
                                                const std::string& serving_version,
                                                const planner::Layout& serving) {
  StagePlan plan;
  plan.version = prepare.layout().version();
  if (plan.version.empty() || plan.version == serving_version) {
    return absl::InvalidArgumentError("the version is empty or already serving");
  }
  if (prepare.bytes_per_expert() != 0 && prepare.bytes_per_expert() != shape.bytes_per_expert) {
    return absl::InvalidArgumentError(
        absl::StrCat("bytes_per_expert is ", prepare.bytes_per_expert(),
                     ", this worker's experts have ", shape.bytes_per_expert));
  }
  CRAFT_ASSIGN_OR_RETURN(plan.layout, LayoutFromProto(prepare.layout()));
  CRAFT_RETURN_IF_ERROR(shape.CheckLayout(plan.layout));
  plan.local = LocalLayout::Of(plan.layout, plan.version, shape.gpu);
  const LocalLayout serving_local = LocalLayout::Of(serving, serving_version, shape.gpu);
  const PlanContext ctx{prepare, shape, serving_version, serving_local, plan.local};

  plan.transfer_group_id = prepare.transfer_group_id();
  CRAFT_ASSIGN_OR_RETURN(auto transferred, TransferSources(ctx, &plan.sends));
  for (int l = 0; l < plan.local.num_layers(); ++l) {
    for (int s = 0; s < plan.local.layers[l].num_slots(); ++s) {
      const auto it = transferred.find({l, s});
      if (it != transferred.end()) {
        plan.sources.push_back(std::move(it->second));
        continue;
      }
      CRAFT_ASSIGN_OR_RETURN(SlotSource source, SourceOfUntouchedSlot(ctx, l, s));
      plan.sources.push_back(std::move(source));
    }
  }
  return plan;
}

}  // namespace

int StagePlan::CountOf(SlotSource::Kind kind) const {
  return static_cast<int>(std::count_if(sources.begin(), sources.end(),
                                        [kind](const SlotSource& s) { return s.kind == kind; }));
}

absl::StatusOr<StagePlan> PlanStaging(const craft::v1::Prepare& prepare, const WorkerShape& shape,
                                      const std::string& serving_version,
                                      const planner::Layout& serving) {
  absl::StatusOr<StagePlan> plan = PlanStagingUnprefixed(prepare, shape, serving_version, serving);
  if (!plan.ok()) {
    return Prefixed(plan.status(), absl::StrCat("prepare ", prepare.layout().version(), ": "));
  }
  return plan;
}

Stager::Stager(ExpertStore* store, ExpertFetcher* fetcher, Clock* clock, Options options)
    : store_(store), fetcher_(fetcher), clock_(clock), options_(options) {}

BackendStaging::BackendStaging(Backend* backend, Clock* clock, Stager::Options options)
    : expert_by_expert_(backend->store(), backend->fetcher(), clock, options),
      engine_(backend->staging_engine() != nullptr ? backend->staging_engine()
                                                   : &expert_by_expert_) {}

absl::StatusOr<StageResult> Stager::Execute(const StagePlan& plan, absl::Time deadline,
                                            const std::atomic<bool>& cancelled) {
  const absl::Time start = clock_->Now();
  CRAFT_RETURN_IF_ERROR(store_->BeginStaging(plan.local));
  StageResult result;
  for (const SlotSource& source : plan.sources) {
    const absl::Time fill_start = clock_->Now();
    absl::Status status = FillSlot(plan, source, deadline, cancelled, &result);
    const absl::Time verify_start = clock_->Now();
    if (source.kind == SlotSource::Kind::kFetch) result.transfer_time += verify_start - fill_start;
    if (status.ok()) status = VerifySlot(plan, source);
    result.verify_time += clock_->Now() - verify_start;
    if (!status.ok()) {
      store_->DropStaging(plan.version).IgnoreError();  // may already be replaced
      return Prefixed(
          status, absl::StrCat("stage ", plan.version, " layer ", source.layer, " slot ",
                               plan.local.layers[source.layer].first_slot + source.slot, " expert ",
                               source.expert, ": "));
    }
  }
  result.elapsed = clock_->Now() - start;
  return result;
}

absl::Status Stager::FillSlot(const StagePlan& plan, const SlotSource& source, absl::Time deadline,
                              const std::atomic<bool>& cancelled, StageResult* result) {
  if (cancelled.load()) return absl::CancelledError("staging cancelled");
  const absl::Time now = clock_->Now();
  if (now >= deadline) return absl::DeadlineExceededError("the prepare's timeout passed");
  if (source.kind == SlotSource::Kind::kCheckpoint) {
    ++result->loaded;
    return store_->LoadToStaging(plan.version, source.layer, source.slot, source.expert);
  }
  if (source.kind != SlotSource::Kind::kFetch) {
    ++result->copied;
    return store_->CopyToStaging(plan.version, source.layer, source.serving_slot, source.slot);
  }
  FetchRequest request = source.fetch;
  request.deadline = std::min(deadline, now + options_.fetch_timeout);
  absl::StatusOr<int64_t> bytes = fetcher_->Fetch(request, store_, &cancelled);
  if (!bytes.ok()) {
    return Prefixed(bytes.status(), absl::StrCat("fetch from gpu ", request.src_gpu, " at ",
                                                 request.src_endpoint, ": "));
  }
  ++result->fetched;
  result->bytes_received += *bytes;
  return absl::OkStatus();
}

absl::Status Stager::VerifySlot(const StagePlan& plan, const SlotSource& source) const {
  CRAFT_ASSIGN_OR_RETURN(const uint64_t got,
                         store_->SlotChecksum(plan.version, source.layer, source.slot));
  const uint64_t want = store_->ExpectedChecksum(source.layer, source.expert);
  if (got != want) {
    const std::string from = source.kind == SlotSource::Kind::kFetch
                                 ? absl::StrCat("fetched from gpu ", source.fetch.src_gpu)
                             : source.kind == SlotSource::Kind::kCheckpoint
                                 ? std::string("loaded from the checkpoint")
                                 : absl::StrCat("copied from local slot ", source.serving_slot);
    return absl::DataLossError(
        absl::StrCat("checksum mismatch (", from, "): got ", got, ", expected ", want));
  }
  return absl::OkStatus();
}

}  // namespace craft::gpu_worker
