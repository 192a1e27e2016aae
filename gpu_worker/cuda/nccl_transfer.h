// The weight-transfer communicator: NCCL on a communicator of its own (never
// the serving one), used by NcclStagingEngine to move a layout change's
// experts and by benchmarks to measure NCCL's own rate.
//
//   // Rank 0 makes the id; the agent and the planner relay its 128 bytes to
//   // every rank (proto/README.md, "Weight-transfer group").
//   CRAFT_ASSIGN_OR_RETURN(NcclId id, NewNcclId());
//   CRAFT_ASSIGN_OR_RETURN(auto executor,
//                          NcclTransferExecutor::Create(device, id, nranks, rank, {}, deadline));
//   CRAFT_ASSIGN_OR_RETURN(double seconds, executor->Exchange(ops, deadline, &cancelled));
//
// An Exchange posts a rank's sends and receives as one NCCL group, so NCCL
// matches them pair by pair in the order each rank posts them and drives all
// peers at once; both ends of a pair must post their ops for each other in
// the same order.
//
// Failures never hang. The communicator is nonblocking (ncclConfig_t
// blocking = 0): initialisation, group launch and completion are polled
// together with ncclCommGetAsyncError against a deadline and a cancellation
// flag. On an NCCL error, at the deadline (a peer that is gone, or never
// posts its side) or on cancellation, the communicator is aborted with
// ncclCommAbort and the call returns the error (DEADLINE_EXCEEDED,
// CANCELLED, or NCCL's error); the executor is then unusable
// (FAILED_PRECONDITION, usable() false) and a new one needs a fresh id.
//
// Thread-compatibility: one thread drives an executor; executors of
// different ranks may run concurrently in different threads of one process.
#ifndef CRAFT_GPU_WORKER_CUDA_NCCL_TRANSFER_H_
#define CRAFT_GPU_WORKER_CUDA_NCCL_TRANSFER_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "gpu_worker/cuda/cuda_types.h"
#include "wire/limits.h"

struct ncclComm;

namespace craft::gpu {

// An ncclUniqueId as plain bytes, for relaying through the agent.
struct NcclId {
  std::array<char, kTransferGroupIdBytes> bytes{};
};

// A fresh id (ncclGetUniqueId): call on one rank, relay to all.
absl::StatusOr<NcclId> NewNcclId();

// NCCL's version as NCCL_VERSION_CODE encodes it (e.g. 22809 for 2.28.9).
absl::StatusOr<int> NcclVersion();

struct TransferOptions {
  // Deadline of communicator set-up, of each Exchange, and of Close.
  absl::Duration timeout = absl::Seconds(60);
  absl::Duration poll_interval = absl::Microseconds(20);
  // ncclConfig_t maxCTAs when positive: bounds the SMs NCCL's kernels take
  // from serving kernels that run beside a transfer (cf. vLLM's async-EPLB
  // hang with DeepEP's cooperative kernels).
  int max_ctas = 0;
};

// One point-to-point operation of an Exchange.
struct P2pOp {
  int peer = 0;
  bool send = false;
  void* buffer = nullptr;  // device memory on this rank's GPU
  int64_t bytes = 0;
};

class NcclTransferExecutor {
 public:
  // Joins the communicator (`id`, `nranks`, `rank`) on `device`. Every rank
  // must call this (in its own thread or process) within the timeout; gives
  // up at `deadline` if that is sooner, or soon after `*cancelled` (when
  // given) turns true.
  static absl::StatusOr<std::unique_ptr<NcclTransferExecutor>> Create(
      int device, const NcclId& id, int nranks, int rank, const TransferOptions& options,
      absl::Time deadline = absl::InfiniteFuture(), const std::atomic<bool>* cancelled = nullptr);
  // Close(), ignoring its status.
  ~NcclTransferExecutor();
  NcclTransferExecutor(const NcclTransferExecutor&) = delete;
  NcclTransferExecutor& operator=(const NcclTransferExecutor&) = delete;

  int rank() const { return rank_; }
  int nranks() const { return nranks_; }
  // False once the communicator was aborted or closed.
  bool usable() const { return !broken_ && comm_ != nullptr; }

  // Runs `ops` as one NCCL group on the executor's stream and returns its
  // device time in seconds. Gives up at the timeout, or at `deadline` if that
  // is sooner, and soon after `*cancelled` turns true: a transfer the planner
  // gave up on must not hold the worker until the deadline. The buffers'
  // earlier writers must have finished (the group starts at once).
  // INVALID_ARGUMENT for a bad op, before anything is posted.
  absl::StatusOr<double> Exchange(absl::Span<const P2pOp> ops,
                                  absl::Time deadline = absl::InfiniteFuture(),
                                  const std::atomic<bool>* cancelled = nullptr);

  // Finalizes and destroys the communicator (every rank closes), or aborts it
  // when that does not finish within the timeout. Idempotent.
  absl::Status Close();

 private:
  NcclTransferExecutor(int device, int nranks, int rank, const TransferOptions& options);
  absl::Status Init(const NcclId& id, absl::Time deadline, const std::atomic<bool>* cancelled);
  // Polls ncclCommGetAsyncError until it leaves ncclInProgress; aborts on an
  // error, at the deadline, or once `*cancelled` (when given) is true.
  absl::Status AwaitComm(absl::Time deadline, const char* what,
                         const std::atomic<bool>* cancelled = nullptr);
  absl::Status AbortWith(absl::Status cause);
  absl::Status CheckUsable() const;

  const int device_;
  const int nranks_;
  const int rank_;
  const TransferOptions options_;
  ncclComm* comm_ = nullptr;
  bool broken_ = false;  // aborted: unusable
  CudaStream stream_ = nullptr;
  CudaEvent start_ = nullptr;
  CudaEvent done_ = nullptr;
};

}  // namespace craft::gpu

#endif  // CRAFT_GPU_WORKER_CUDA_NCCL_TRANSFER_H_
