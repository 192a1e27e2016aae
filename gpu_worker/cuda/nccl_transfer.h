// Moves expert weights between GPUs with NCCL, on a communicator of its own
// (never the serving one), as the first phase of a two-phase layout change:
// Stage receives every incoming expert into a staging buffer and checks its
// checksum (the worker then reports ready or failed to its agent); Commit
// flips the staged experts into their slots; Discard drops them.
//
//   // Rank 0 makes the id; the agent (and, across nodes, the planner) relays
//   // its 128 bytes to every rank.
//   CRAFT_ASSIGN_OR_RETURN(NcclId id, NewNcclId());
//   CRAFT_ASSIGN_OR_RETURN(auto executor,
//                          NcclTransferExecutor::Create(slots.get(), id, nranks, rank, {}));
//   absl::StatusOr<StagedTransfer> staged = executor->Stage(plan);  // ready / failed
//   if (staged.ok() && commit_arrived) CRAFT_RETURN_IF_ERROR(executor->Commit(plan, *staged));
//
// Transfers. Every rank passes the same plan in the same order. Each item
// moves one expert, all of its tensors in one contiguous buffer, as one
// ncclSend on the source and one ncclRecv on the destination; a rank's sends
// and receives of a plan go out as one NCCL group, so NCCL matches them pair by
// pair in plan order and drives all peers at once. Items whose source and
// destination are the same rank are device-to-device copies. Sources are read
// from the slots as they are (after the slots' own pending fills), and nothing
// serving changes before Commit.
//
// Failures never hang. The communicator is nonblocking (ncclConfig_t
// blocking = 0): initialisation, group launch and completion are polled
// together with ncclCommGetAsyncError against a deadline. On an NCCL error,
// or when the deadline passes (a peer that is gone, or never posts its side),
// the communicator is aborted with ncclCommAbort and the call returns the
// error (DEADLINE_EXCEEDED, or NCCL's error); the executor is then unusable
// (FAILED_PRECONDITION) and a new one needs a fresh id. A checksum mismatch
// is DATA_LOSS and leaves the communicator usable. Failed stages release
// their staging buffers.
//
// Thread-compatibility: one thread drives an executor; executors of
// different ranks may run concurrently in different threads of one process.
// The DeviceSlots must outlive the executor and not be used by another thread
// during Stage, Commit and Discard.
#ifndef CRAFT_GPU_WORKER_CUDA_NCCL_TRANSFER_H_
#define CRAFT_GPU_WORKER_CUDA_NCCL_TRANSFER_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "gpu_worker/cuda/cuda_types.h"
#include "gpu_worker/cuda/device_slots.h"

struct ncclComm;

namespace craft::gpu {

// An ncclUniqueId as plain bytes, for relaying through the agent.
struct NcclId {
  std::array<char, 128> bytes{};
};

// A fresh id (ncclGetUniqueId): call on one rank, relay to all.
absl::StatusOr<NcclId> NewNcclId();

// NCCL's version as NCCL_VERSION_CODE encodes it (e.g. 22809 for 2.28.9).
absl::StatusOr<int> NcclVersion();

// One expert to move: (layer, expert) from src_rank's slot src_slot to
// dst_rank's slot dst_slot, which it must then hash to `checksum`
// (expert_hash.h; the planner or the source knows it).
struct TransferItem {
  int layer = 0;
  int expert = 0;
  int src_rank = 0;
  int dst_rank = 0;
  int src_slot = 0;
  int dst_slot = 0;
  uint64_t checksum = 0;
};

struct TransferOptions {
  // Deadline of communicator set-up, of each Stage or Exchange, and of Close.
  absl::Duration timeout = absl::Seconds(60);
  absl::Duration poll_interval = absl::Microseconds(20);
  // ncclConfig_t maxCTAs when positive: bounds the SMs NCCL's kernels take
  // from serving kernels that run beside a transfer (cf. vLLM's async-EPLB
  // hang with DeepEP's cooperative kernels).
  int max_ctas = 0;
};

// This rank's side of a staged plan.
struct StagedTransfer {
  struct Received {
    int item = 0;     // index into the plan
    int staging = 0;  // DeviceSlots staging buffer holding it
  };
  std::vector<Received> received;
  int64_t bytes_received = 0;  // over NCCL (local copies not counted)
  int64_t bytes_sent = 0;
  int64_t bytes_copied = 0;     // device-local copies
  double transfer_seconds = 0;  // first enqueued copy to last byte, on the device
  double verify_seconds = 0;    // checksums of the received experts (host clock)
};

// A raw point-to-point operation (benchmarks: NCCL's own rate).
struct P2pOp {
  int peer = 0;
  bool send = false;
  void* buffer = nullptr;  // device memory on this rank's GPU
  int64_t bytes = 0;
};

class NcclTransferExecutor {
 public:
  // Joins the communicator (`id`, `nranks`, `rank`) on slots->device(). Every
  // rank must call this (in its own thread or process) within the timeout.
  static absl::StatusOr<std::unique_ptr<NcclTransferExecutor>> Create(
      DeviceSlots* slots, const NcclId& id, int nranks, int rank, const TransferOptions& options);
  // The same without slots, for callers that bring their own buffers: only
  // Exchange and Close work (Stage, Commit and Discard are
  // FAILED_PRECONDITION). Gives up at `deadline` if that comes before the
  // timeout.
  // Gives up soon after `*cancelled` turns true (CANCELLED), when given.
  static absl::StatusOr<std::unique_ptr<NcclTransferExecutor>> CreateOnDevice(
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

  // Runs this rank's part of `plan` and verifies what it received (see the
  // file comment for the errors). INVALID_ARGUMENT for a malformed plan,
  // RESOURCE_EXHAUSTED when the staging buffers are too few; both are found
  // before anything is sent, but the peers then wait for this rank until
  // their deadline.
  absl::StatusOr<StagedTransfer> Stage(absl::Span<const TransferItem> plan);

  // The flip: every received expert takes its destination slot.
  // `plan` is the one staged.
  absl::Status Commit(absl::Span<const TransferItem> plan, const StagedTransfer& staged);

  // Releases the staging buffers of a transfer that will not be committed.
  absl::Status Discard(const StagedTransfer& staged);

  // Runs `ops` as one NCCL group and returns its device time in seconds, with
  // the same deadline and abort handling as Stage (and `deadline` if that is
  // sooner than the timeout). When `*cancelled` turns true the communicator
  // is aborted and the call returns CANCELLED: a transfer the planner gave up
  // on must not hold the worker until the deadline.
  absl::StatusOr<double> Exchange(absl::Span<const P2pOp> ops,
                                  absl::Time deadline = absl::InfiniteFuture(),
                                  const std::atomic<bool>* cancelled = nullptr);

  // Finalizes and destroys the communicator (every rank closes), or aborts it
  // when that does not finish within the timeout. Idempotent.
  absl::Status Close();

 private:
  struct LocalCopy {
    void* dst;
    const void* src;
    int64_t bytes;
  };

  NcclTransferExecutor(DeviceSlots* slots, int device, int nranks, int rank,
                       const TransferOptions& options);
  absl::Status Init(const NcclId& id, absl::Time deadline, const std::atomic<bool>* cancelled);
  // Polls ncclCommGetAsyncError until it leaves ncclInProgress; aborts on an
  // error, at the deadline, or once `*cancelled` (when given) is true.
  absl::Status AwaitComm(absl::Time deadline, const char* what,
                         const std::atomic<bool>* cancelled = nullptr);
  // Enqueues `copies` and `ops` (one group), then waits for them.
  absl::StatusOr<double> Run(absl::Span<const LocalCopy> copies, absl::Span<const P2pOp> ops,
                             absl::Time deadline, const std::atomic<bool>* cancelled);
  absl::Status CheckSlots() const;
  absl::Status AbortWith(absl::Status cause);
  absl::Status CheckUsable() const;
  absl::Status ValidatePlan(absl::Span<const TransferItem> plan) const;

  DeviceSlots* const slots_;  // null: Exchange only
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
