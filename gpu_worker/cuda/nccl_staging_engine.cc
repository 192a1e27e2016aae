#include "gpu_worker/cuda/nccl_staging_engine.h"

#include <algorithm>
#include <future>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace craft::gpu {

using gpu_worker::SlotSource;
using gpu_worker::StagePlan;
using gpu_worker::StageResult;

NcclStagingEngine::NcclStagingEngine(DeviceExpertStore* store, int rank, int nranks,
                                     TransferOptions options)
    : store_(store), rank_(rank), nranks_(nranks), options_(options) {}

void NcclStagingEngine::Spend(const std::string& transfer_group_id) {
  spent_.insert(transfer_group_id);
  ++aborts_;
}

absl::Status NcclStagingEngine::Join(const std::string& transfer_group_id, absl::Time deadline,
                                     const std::atomic<bool>& cancelled) {
  if (spent_.contains(transfer_group_id)) {
    return absl::FailedPreconditionError(
        "the weight-transfer group of this Prepare was aborted; waiting for rank 0's new id");
  }
  if (transfer_group_id.size() != sizeof(NcclId::bytes)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "transfer_group_id has ", transfer_group_id.size(), " bytes, not ", sizeof(NcclId::bytes)));
  }
  if (executor_ != nullptr) {
    executor_->Close().IgnoreError();  // the old group: every rank moves on together
    executor_.reset();
  }
  joined_.clear();
  NcclId id;
  std::copy(transfer_group_id.begin(), transfer_group_id.end(), id.bytes.begin());
  absl::StatusOr<std::unique_ptr<NcclTransferExecutor>> executor = NcclTransferExecutor::Create(
      store_->device(), id, nranks_, rank_, options_, deadline, &cancelled);
  if (!executor.ok()) {
    Spend(transfer_group_id);
    return Prefixed(executor.status(), "joining the weight-transfer group: ");
  }
  executor_ = *std::move(executor);
  joined_ = transfer_group_id;
  CRAFT_LOG(INFO) << "rank " << rank_ << " joined the weight-transfer group of " << nranks_
                  << " ranks";
  return absl::OkStatus();
}

absl::StatusOr<StageResult> NcclStagingEngine::Execute(const StagePlan& plan, absl::Time deadline,
                                                       const std::atomic<bool>& cancelled) {
  CRAFT_RETURN_IF_ERROR(store_->BeginStaging(plan.local));
  absl::StatusOr<StageResult> result = StageOnce(plan, deadline, cancelled);
  if (!result.ok()) {
    store_->DropStaging(plan.version).IgnoreError();
    if (executor_ != nullptr && !executor_->usable()) {
      executor_.reset();
      Spend(std::exchange(joined_, ""));
    }
    return Prefixed(result.status(),
                    absl::StrCat("stage ", plan.version, " on rank ", rank_, ": "));
  }
  return result;
}

absl::StatusOr<StageResult> NcclStagingEngine::StageOnce(const StagePlan& plan, absl::Time deadline,
                                                         const std::atomic<bool>& cancelled) {
  const absl::Time start = absl::Now();
  if (cancelled.load()) return absl::CancelledError("staging cancelled");
  // Join first, whatever this rank moves: joining is collective.
  if (!plan.transfer_group_id.empty() && plan.transfer_group_id != joined_) {
    CRAFT_RETURN_IF_ERROR(Join(plan.transfer_group_id, deadline, cancelled));
  }
  StageResult result;
  // (transfer index, op): receives and sends in Prepare order.
  std::vector<std::pair<int, P2pOp>> ops;
  const int64_t bytes = store_->bytes_per_expert();
  for (const SlotSource& source : plan.sources) {
    if (source.kind == SlotSource::Kind::kCheckpoint) {
      CRAFT_RETURN_IF_ERROR(
          store_->LoadToStaging(plan.version, source.layer, source.slot, source.expert));
      ++result.loaded;
      continue;
    }
    if (source.kind != SlotSource::Kind::kFetch) {
      CRAFT_RETURN_IF_ERROR(
          store_->CopyToStaging(plan.version, source.layer, source.serving_slot, source.slot));
      ++result.copied;
      continue;
    }
    CRAFT_ASSIGN_OR_RETURN(void* buffer,
                           store_->StagingBuffer(plan.version, source.layer, source.slot));
    ops.push_back({source.transfer_index, P2pOp{source.fetch.src_gpu, false, buffer, bytes}});
    ++result.fetched;
    result.bytes_received += bytes;
  }
  for (const gpu_worker::OutgoingTransfer& send : plan.sends) {
    CRAFT_ASSIGN_OR_RETURN(const void* buffer,
                           store_->ServingBuffer(send.layer, send.serving_slot));
    // ncclSend reads it; P2pOp is shared with receives, hence the cast.
    ops.push_back(
        {send.transfer_index, P2pOp{send.dst_gpu, true, const_cast<void*>(buffer), bytes}});
  }
  if (!ops.empty()) {
    if (executor_ == nullptr) {
      return absl::FailedPreconditionError(
          "experts must move but the planner sent no weight-transfer group id (is rank 0's "
          "worker attached with the CUDA backend?)");
    }
    std::stable_sort(ops.begin(), ops.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<P2pOp> group;
    group.reserve(ops.size());
    for (const auto& [index, op] : ops) group.push_back(op);
    result.bytes_sent = static_cast<int64_t>(plan.sends.size()) * bytes;
    // What the arrivals must hash to comes from the fill rule: compute it on
    // the store's stream while NCCL moves the bytes on its own.
    std::future<absl::StatusOr<std::vector<uint64_t>>> expected =
        std::async(std::launch::async, [this, &plan] { return ExpectedOfArrivals(plan); });
    absl::StatusOr<double> seconds = executor_->Exchange(group, deadline, &cancelled);
    absl::StatusOr<std::vector<uint64_t>> want = expected.get();
    CRAFT_RETURN_IF_ERROR(seconds.status());
    CRAFT_RETURN_IF_ERROR(want.status());
    result.transfer_time = absl::Seconds(*seconds);
    const absl::Time verify_start = absl::Now();
    CRAFT_RETURN_IF_ERROR(Verify(plan, *want));
    result.verify_time = absl::Now() - verify_start;
    CRAFT_LOG(INFO) << "rank " << rank_ << " staged " << plan.version << ": " << result.fetched
                    << " experts in, " << plan.sends.size() << " out; " << result.bytes_received
                    << " bytes received in " << *seconds * 1e3 << " ms on the device ("
                    << (*seconds > 0 ? result.bytes_received / *seconds / 1e9 : 0)
                    << " GB/s received), verified in "
                    << absl::ToDoubleMilliseconds(result.verify_time) << " ms";
  }
  result.elapsed = absl::Now() - start;
  return result;
}

absl::StatusOr<std::vector<uint64_t>> NcclStagingEngine::ExpectedOfArrivals(const StagePlan& plan) {
  std::vector<ExpertId> experts;
  for (const SlotSource& source : plan.sources) {
    if (source.kind == SlotSource::Kind::kFetch) experts.push_back({source.layer, source.expert});
  }
  return store_->ExpectedChecksums(experts);
}

absl::Status NcclStagingEngine::Verify(const StagePlan& plan, absl::Span<const uint64_t> want) {
  std::vector<std::pair<int, int>> slots;
  std::vector<const SlotSource*> sources;
  for (const SlotSource& source : plan.sources) {
    if (source.kind != SlotSource::Kind::kFetch) continue;  // shares a verified serving buffer
    slots.emplace_back(source.layer, source.slot);
    sources.push_back(&source);
  }
  CRAFT_ASSIGN_OR_RETURN(const std::vector<uint64_t> got,
                         store_->StagingChecksums(plan.version, slots));
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != want[i]) {
      const SlotSource& source = *sources[i];
      return absl::DataLossError(
          absl::StrCat("layer ", source.layer, " slot ",
                       plan.local.layers[source.layer].first_slot + source.slot, " expert ",
                       source.expert, " received from gpu ", source.fetch.src_gpu,
                       ": checksum mismatch: got ", got[i], ", expected ", want[i]));
    }
  }
  return absl::OkStatus();
}

}  // namespace craft::gpu
