#include "gpu_worker/cuda/nccl_transfer.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gpu_worker/cuda/cuda_check.h"

namespace craft::gpu {
namespace {

static_assert(sizeof(ncclUniqueId) == sizeof(NcclId::bytes), "ncclUniqueId is 128 bytes");

absl::Status NcclStatus(ncclResult_t result, absl::string_view what, ncclComm_t comm = nullptr) {
  if (result == ncclSuccess) return absl::OkStatus();
  std::string message = absl::StrCat(what, ": ", ncclGetErrorString(result));
  if (const char* last = ncclGetLastError(comm); last != nullptr && *last != '\0') {
    absl::StrAppend(&message, " (", last, ")");
  }
  switch (result) {
    case ncclInvalidArgument:
    case ncclInvalidUsage:
      return absl::InvalidArgumentError(message);
    case ncclRemoteError:
    case ncclSystemError:
      return absl::UnavailableError(message);
    default:
      return absl::InternalError(message);
  }
}

#define CRAFT_NCCL_RETURN_IF_ERROR(expr) CRAFT_RETURN_IF_ERROR(NcclStatus((expr), #expr))

}  // namespace

absl::StatusOr<NcclId> NewNcclId() {
  ncclUniqueId unique;
  CRAFT_NCCL_RETURN_IF_ERROR(ncclGetUniqueId(&unique));
  NcclId id;
  std::memcpy(id.bytes.data(), &unique, sizeof(unique));
  return id;
}

absl::StatusOr<int> NcclVersion() {
  int version = 0;
  CRAFT_NCCL_RETURN_IF_ERROR(ncclGetVersion(&version));
  return version;
}

NcclTransferExecutor::NcclTransferExecutor(int device, int nranks, int rank,
                                           const TransferOptions& options)
    : device_(device), nranks_(nranks), rank_(rank), options_(options) {}

absl::StatusOr<std::unique_ptr<NcclTransferExecutor>> NcclTransferExecutor::Create(
    int device, const NcclId& id, int nranks, int rank, const TransferOptions& options,
    absl::Time deadline, const std::atomic<bool>* cancelled) {
  std::unique_ptr<NcclTransferExecutor> executor(
      new NcclTransferExecutor(device, nranks, rank, options));
  CRAFT_RETURN_IF_ERROR(executor->Init(id, deadline, cancelled));
  return executor;
}

absl::Status NcclTransferExecutor::Init(const NcclId& id, absl::Time deadline,
                                        const std::atomic<bool>* cancelled) {
  if (nranks_ <= 0 || rank_ < 0 || rank_ >= nranks_) {
    return absl::InvalidArgumentError(absl::StrCat("bad rank ", rank_, " of ", nranks_));
  }
  CRAFT_CUDA_SCOPED_DEVICE(device_);
  CRAFT_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  CRAFT_CUDA_RETURN_IF_ERROR(cudaEventCreate(&start_));
  CRAFT_CUDA_RETURN_IF_ERROR(cudaEventCreate(&done_));

  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  config.commName = "craft-transfer";
  if (options_.max_ctas > 0) config.maxCTAs = options_.max_ctas;
  ncclUniqueId unique;
  std::memcpy(&unique, id.bytes.data(), sizeof(unique));
  deadline = std::min(deadline, absl::Now() + options_.timeout);
  const ncclResult_t result = ncclCommInitRankConfig(&comm_, nranks_, unique, rank_, &config);
  if (result != ncclSuccess && result != ncclInProgress) {
    // Initialisation failed before a communicator existed, or one that must go.
    absl::Status status = NcclStatus(result, "ncclCommInitRankConfig");
    if (comm_ != nullptr) return AbortWith(std::move(status));
    broken_ = true;
    return status;
  }
  return AwaitComm(deadline, "ncclCommInitRankConfig", cancelled);
}

NcclTransferExecutor::~NcclTransferExecutor() {
  Close().IgnoreError();
  internal::ScopedDevice device(device_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
  if (start_ != nullptr) cudaEventDestroy(start_);
  if (done_ != nullptr) cudaEventDestroy(done_);
}

absl::Status NcclTransferExecutor::AbortWith(absl::Status cause) {
  if (comm_ != nullptr) {
    ncclCommAbort(comm_);
    comm_ = nullptr;
  }
  broken_ = true;
  return cause;
}

absl::Status NcclTransferExecutor::AwaitComm(absl::Time deadline, const char* what,
                                             const std::atomic<bool>* cancelled) {
  while (true) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t result = ncclCommGetAsyncError(comm_, &state);
    if (result != ncclSuccess) return AbortWith(NcclStatus(result, "ncclCommGetAsyncError", comm_));
    if (state == ncclSuccess) return absl::OkStatus();
    if (state != ncclInProgress) {
      return AbortWith(NcclStatus(state, absl::StrCat(what, " on rank ", rank_), comm_));
    }
    if (absl::Now() > deadline) {
      return AbortWith(absl::DeadlineExceededError(
          absl::StrCat(what, " on rank ", rank_, " did not finish within ",
                       absl::FormatDuration(options_.timeout), "; communicator aborted")));
    }
    if (cancelled != nullptr && cancelled->load()) {
      return AbortWith(absl::CancelledError(
          absl::StrCat(what, " on rank ", rank_, " cancelled; communicator aborted")));
    }
    absl::SleepFor(options_.poll_interval);
  }
}

absl::Status NcclTransferExecutor::CheckUsable() const {
  if (broken_ || comm_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("transfer communicator of rank ", rank_,
                     " was aborted or closed; create a new one with a fresh id"));
  }
  return absl::OkStatus();
}

absl::StatusOr<double> NcclTransferExecutor::Exchange(absl::Span<const P2pOp> ops,
                                                      absl::Time deadline,
                                                      const std::atomic<bool>* cancelled) {
  for (const P2pOp& op : ops) {
    if (op.peer < 0 || op.peer >= nranks_ || op.peer == rank_ || op.bytes < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad op: peer ", op.peer, ", ", op.bytes, " bytes on rank ", rank_));
    }
  }
  CRAFT_RETURN_IF_ERROR(CheckUsable());
  CRAFT_CUDA_SCOPED_DEVICE(device_);
  deadline = std::min(deadline, absl::Now() + options_.timeout);
  CRAFT_CUDA_RETURN_IF_ERROR(cudaEventRecord(start_, stream_));
  if (!ops.empty()) {
    // Calls inside a group only queue work; errors surface at ncclGroupEnd or
    // through the asynchronous error.
    ncclResult_t result = ncclGroupStart();
    for (const P2pOp& op : ops) {
      if (result != ncclSuccess && result != ncclInProgress) break;
      result = op.send ? ncclSend(op.buffer, op.bytes, ncclUint8, op.peer, comm_, stream_)
                       : ncclRecv(op.buffer, op.bytes, ncclUint8, op.peer, comm_, stream_);
    }
    const ncclResult_t end = ncclGroupEnd();
    if (result == ncclSuccess || result == ncclInProgress) result = end;
    if (result != ncclSuccess && result != ncclInProgress) {
      return AbortWith(NcclStatus(result, "ncclGroupEnd", comm_));
    }
    CRAFT_RETURN_IF_ERROR(AwaitComm(deadline, "launch of the transfer group", cancelled));
  }
  // From here on the group may be in flight: every failure aborts it.
  if (absl::Status s = internal::CudaStatus(cudaEventRecord(done_, stream_), "cudaEventRecord");
      !s.ok()) {
    return AbortWith(std::move(s));
  }
  // Completion: the event, with NCCL's asynchronous errors and the deadline
  // checked in between. Never cudaStreamSynchronize: it could wait forever.
  while (true) {
    const cudaError_t state = cudaEventQuery(done_);
    if (state == cudaSuccess) break;
    if (state != cudaErrorNotReady) return AbortWith(internal::CudaStatus(state, "transfer"));
    CRAFT_RETURN_IF_ERROR(AwaitComm(deadline, "transfer", cancelled));
    // AwaitComm only looks at the flag while NCCL reports work in progress;
    // a running transfer reports success, so check it here too.
    if (cancelled != nullptr && cancelled->load()) {
      return AbortWith(absl::CancelledError(
          absl::StrCat("transfer on rank ", rank_, " cancelled; communicator aborted")));
    }
    if (absl::Now() > deadline) {
      return AbortWith(absl::DeadlineExceededError(
          absl::StrCat("transfer on rank ", rank_, " did not complete within ",
                       absl::FormatDuration(options_.timeout),
                       " (a peer gone or not posting its side); "
                       "communicator aborted")));
    }
    absl::SleepFor(options_.poll_interval);
  }
  float ms = 0;
  CRAFT_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, start_, done_));
  return ms / 1e3;
}

absl::Status NcclTransferExecutor::Close() {
  if (comm_ == nullptr) return absl::OkStatus();
  CRAFT_CUDA_SCOPED_DEVICE(device_);
  const absl::Time deadline = absl::Now() + options_.timeout;
  const ncclResult_t result = ncclCommFinalize(comm_);
  if (result != ncclSuccess && result != ncclInProgress) {
    return AbortWith(NcclStatus(result, "ncclCommFinalize", comm_));
  }
  CRAFT_RETURN_IF_ERROR(AwaitComm(deadline, "ncclCommFinalize"));
  const ncclResult_t destroyed = ncclCommDestroy(comm_);
  comm_ = nullptr;
  return NcclStatus(destroyed, "ncclCommDestroy");
}

}  // namespace craft::gpu
