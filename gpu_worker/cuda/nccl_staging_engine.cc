#include "gpu_worker/cuda/nccl_staging_engine.h"

#include <algorithm>
#include <future>
#include <map>
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
    spent_.insert(transfer_group_id);
    ++aborts_;
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
      spent_.insert(joined_);
      ++aborts_;
      executor_.reset();
      joined_.clear();
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
  std::vector<Transfer> transfers;
  std::vector<std::pair<int, int>> arrival_slots;  // (layer, local slot) per arrival
  const int64_t bytes = store_->bytes_per_expert();
  for (const SlotSource& source : plan.sources) {
    if (source.kind != SlotSource::Kind::kFetch) {
      CRAFT_RETURN_IF_ERROR(
          store_->CopyToStaging(plan.version, source.layer, source.serving_slot, source.slot));
      ++result.copied;
      continue;
    }
    CRAFT_ASSIGN_OR_RETURN(void* buffer,
                           store_->StagingBuffer(plan.version, source.layer, source.slot));
    transfers.push_back({source.transfer_index, static_cast<int>(arrival_slots.size()),
                         P2pOp{source.fetch.src_gpu, false, buffer, bytes}});
    arrival_slots.emplace_back(source.layer, source.slot);
    ++result.fetched;
    result.bytes_received += bytes;
  }
  for (const gpu_worker::OutgoingTransfer& send : plan.sends) {
    CRAFT_ASSIGN_OR_RETURN(const void* buffer,
                           store_->ServingBuffer(send.layer, send.serving_slot));
    // ncclSend reads it; P2pOp is shared with receives, hence the cast.
    transfers.push_back(
        {send.transfer_index, -1, P2pOp{send.dst_gpu, true, const_cast<void*>(buffer), bytes}});
  }
  if (!transfers.empty()) {
    if (executor_ == nullptr) {
      return absl::FailedPreconditionError(
          "experts must move but the planner sent no weight-transfer group id (is rank 0's "
          "worker attached with the CUDA backend?)");
    }
    result.bytes_sent = static_cast<int64_t>(plan.sends.size()) * bytes;
    // What the arrivals must hash to comes from the fill rule: compute it on
    // the store's stream while NCCL moves the bytes on its own.
    std::future<absl::StatusOr<std::vector<uint64_t>>> expected =
        std::async(std::launch::async, [this, &plan] { return ExpectedOfArrivals(plan); });
    // Each group's arrivals are hashed (on the store's stream) while the
    // next group moves (on NCCL's).
    std::vector<std::future<absl::StatusOr<std::vector<uint64_t>>>> hashed;
    std::vector<std::vector<int>> hashed_arrivals;
    absl::Status moved;
    double seconds = 0;
    for (const std::vector<Transfer>& group : SplitIntoGroups(std::move(transfers))) {
      std::vector<P2pOp> ops;
      std::vector<std::pair<int, int>> slots;
      std::vector<int>& arrivals = hashed_arrivals.emplace_back();
      for (const Transfer& t : group) {
        ops.push_back(t.op);
        if (t.arrival < 0) continue;
        arrivals.push_back(t.arrival);
        slots.push_back(arrival_slots[t.arrival]);
      }
      absl::StatusOr<double> group_seconds = executor_->Exchange(ops, deadline, &cancelled);
      if (!group_seconds.ok()) {
        moved = group_seconds.status();
        break;
      }
      seconds += *group_seconds;
      hashed.push_back(std::async(std::launch::async, [this, &plan, slots] {
        return store_->StagingChecksums(plan.version, slots);
      }));
    }
    const absl::Time moved_at = absl::Now();
    absl::StatusOr<std::vector<uint64_t>> want = expected.get();
    std::vector<uint64_t> got(arrival_slots.size());
    absl::Status verified;
    for (size_t g = 0; g < hashed.size(); ++g) {
      absl::StatusOr<std::vector<uint64_t>> sums = hashed[g].get();
      if (!sums.ok()) {
        verified.Update(sums.status());
        continue;
      }
      for (size_t i = 0; i < sums->size(); ++i) got[hashed_arrivals[g][i]] = (*sums)[i];
    }
    CRAFT_RETURN_IF_ERROR(moved);
    CRAFT_RETURN_IF_ERROR(want.status());
    CRAFT_RETURN_IF_ERROR(verified);
    CRAFT_RETURN_IF_ERROR(CompareArrivals(plan, got, *want));
    result.transfer_time = absl::Seconds(seconds);
    result.verify_time = absl::Now() - moved_at;
    CRAFT_LOG(INFO) << "rank " << rank_ << " staged " << plan.version << ": " << result.fetched
                    << " experts in, " << plan.sends.size() << " out; " << result.bytes_received
                    << " bytes received in " << seconds * 1e3 << " ms on the device ("
                    << (seconds > 0 ? result.bytes_received / seconds / 1e9 : 0)
                    << " GB/s received), verified "
                    << absl::ToDoubleMilliseconds(result.verify_time) << " ms after the last byte";
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

std::vector<std::vector<NcclStagingEngine::Transfer>> NcclStagingEngine::SplitIntoGroups(
    std::vector<Transfer> transfers) const {
  std::stable_sort(transfers.begin(), transfers.end(),
                   [](const Transfer& a, const Transfer& b) { return a.index < b.index; });
  // Group g of the transfers between this rank and a peer in one direction
  // is the g-th share of them in Prepare order. The peer counts the same
  // transfers the other way round, so both ends put each one in the same
  // group (a rank-wide split by Prepare index would not: another node's
  // Prepare lists other transfers).
  const int groups = std::max(1, options_.pipeline_groups);
  std::map<std::pair<int, bool>, int> count, seen;
  for (const Transfer& t : transfers) ++count[{t.op.peer, t.op.send}];
  std::vector<std::vector<Transfer>> split(groups);
  for (const Transfer& t : transfers) {
    const std::pair<int, bool> key{t.op.peer, t.op.send};
    split[static_cast<int64_t>(seen[key]++) * groups / count[key]].push_back(t);
  }
  return split;
}

absl::Status NcclStagingEngine::CompareArrivals(const StagePlan& plan,
                                                absl::Span<const uint64_t> got,
                                                absl::Span<const uint64_t> want) const {
  size_t i = 0;
  for (const SlotSource& source : plan.sources) {
    if (source.kind != SlotSource::Kind::kFetch) continue;  // shares a verified serving buffer
    if (got[i] != want[i]) {
      return absl::DataLossError(
          absl::StrCat("layer ", source.layer, " slot ",
                       plan.local.layers[source.layer].first_slot + source.slot, " expert ",
                       source.expert, " received from gpu ", source.fetch.src_gpu,
                       ": checksum mismatch: got ", got[i], ", expected ", want[i]));
    }
    ++i;
  }
  return absl::OkStatus();
}

}  // namespace craft::gpu
