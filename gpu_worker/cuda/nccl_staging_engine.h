// Stages a prepared layout version with NCCL (the worker's StagingEngine for
// the CUDA backend): every expert that changes GPU moves as one ncclSend /
// ncclRecv pair on the cluster's weight-transfer communicator, straight into
// the device store's staging buffers, and is verified on the device.
//
//   NcclStagingEngine engine(store, /*rank=*/gpu, /*nranks=*/num_gpus, options);
//   CRAFT_ASSIGN_OR_RETURN(StageResult result, engine.Execute(plan, deadline, cancelled));
//
// Per plan:
//  1. the communicator: when plan.transfer_group_id names one this engine has
//     not joined, it joins it (collective over all ranks; every worker gets
//     every Prepare, so all join together, within the prepare's deadline)
//     and drops the old one. A plan that moves experts without an id fails.
//     An id whose communicator this engine aborted is never joined again
//     (FAILED_PRECONDITION): rank 0 announces a fresh one.
//  2. local sources (kept slots, copies from this GPU's serving slots) share
//     the serving buffers (DeviceExpertStore::CopyToStaging);
//  3. one NCCL group with this rank's receives (into fresh staging buffers)
//     and sends (from serving buffers), in Prepare order, so each pair of
//     ranks matches its sends and receives one to one;
//  4. one checksum pass over the received experts against their expected
//     checksums (computed from the fill rule on the store's stream while the
//     group runs); a mismatch is DATA_LOSS naming the slot and its source.
// An NCCL error, the deadline or cancellation (an Abort, a newer Prepare)
// aborts the communicator (nothing hangs), and the engine reports the error;
// so does every rank whose peer failed.
//
// Thread-compatible (one Execute at a time); the store is thread-safe.
#ifndef CRAFT_GPU_WORKER_CUDA_NCCL_STAGING_ENGINE_H_
#define CRAFT_GPU_WORKER_CUDA_NCCL_STAGING_ENGINE_H_

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "gpu_worker/cuda/device_expert_store.h"
#include "gpu_worker/cuda/nccl_transfer.h"
#include "gpu_worker/stager.h"

namespace craft::gpu {

class NcclStagingEngine : public gpu_worker::StagingEngine {
 public:
  // `store` is not owned and must outlive the engine.
  NcclStagingEngine(DeviceExpertStore* store, int rank, int nranks, TransferOptions options);

  absl::StatusOr<gpu_worker::StageResult> Execute(const gpu_worker::StagePlan& plan,
                                                  absl::Time deadline,
                                                  const std::atomic<bool>& cancelled) override;

  // Times a communicator failed here (joining or transferring); rank 0's
  // worker then makes a new id. Thread-safe.
  int aborts() const { return aborts_.load(); }

 private:
  // Records that the communicator of `transfer_group_id` failed here: it is
  // never joined again, and aborts() counts it.
  void Spend(const std::string& transfer_group_id);
  absl::Status Join(const std::string& transfer_group_id, absl::Time deadline,
                    const std::atomic<bool>& cancelled);
  absl::StatusOr<gpu_worker::StageResult> StageOnce(const gpu_worker::StagePlan& plan,
                                                    absl::Time deadline,
                                                    const std::atomic<bool>& cancelled);
  // The checksums the plan's arrivals must have, in plan.sources order.
  absl::StatusOr<std::vector<uint64_t>> ExpectedOfArrivals(const gpu_worker::StagePlan& plan);
  // DATA_LOSS naming the first arrival whose checksum is not `want`'s.
  absl::Status Verify(const gpu_worker::StagePlan& plan, absl::Span<const uint64_t> want);

  DeviceExpertStore* const store_;
  const int rank_;
  const int nranks_;
  const TransferOptions options_;
  std::unique_ptr<NcclTransferExecutor> executor_;
  std::string joined_;  // the id of executor_'s communicator
  absl::flat_hash_set<std::string> spent_;
  std::atomic<int> aborts_{0};
};

}  // namespace craft::gpu

#endif  // CRAFT_GPU_WORKER_CUDA_NCCL_STAGING_ENGINE_H_
