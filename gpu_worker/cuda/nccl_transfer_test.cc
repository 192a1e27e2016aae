// The weight-transfer communicator on its own: bytes arrive, and a peer that
// never shows up or never posts its side ends in an abort, never a hang.
// Staging whole layout changes through it is cuda_backend_test's.
#include "gpu_worker/cuda/nccl_transfer.h"

#include <atomic>
#include <iostream>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "gpu_worker/cuda/device_buffer.h"
#include "gpu_worker/cuda/gpu_test_util.h"
#include "gtest/gtest.h"

namespace craft::gpu {
namespace {

// Runs fn(rank) in one thread per rank and returns each rank's status.
template <class Fn>
std::vector<absl::Status> OnEveryRank(int ranks, Fn fn) {
  std::vector<absl::Status> status(ranks);
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r) threads.emplace_back([&, r] { status[r] = fn(r); });
  for (std::thread& thread : threads) thread.join();
  return status;
}

TransferOptions WithTimeout(absl::Duration timeout) {
  TransferOptions options;
  options.timeout = timeout;
  return options;
}

TEST(NcclTransferTest, EveryRankReceivesWhatItsPeersSent) {
  CRAFT_REQUIRE_GPUS(2);
  const int ranks = std::min(ProbeCuda().devices, 8);
  constexpr int64_t kWords = 1 << 20;  // 4 MiB per peer
  CRAFT_ASSERT_OK_AND_ASSIGN(NcclId id, NewNcclId());
  const std::vector<absl::Status> status = OnEveryRank(ranks, [&](int rank) -> absl::Status {
    CRAFT_ASSIGN_OR_RETURN(auto executor, NcclTransferExecutor::Create(rank, id, ranks, rank, {}));
    std::vector<int32_t> mine(kWords);
    for (int64_t i = 0; i < kWords; ++i) mine[i] = static_cast<int32_t>(rank * 1000003 + i);
    CRAFT_ASSIGN_OR_RETURN(DeviceBuffer send, DeviceBuffer::Allocate(rank, kWords * 4));
    CRAFT_RETURN_IF_ERROR(send.CopyFromHost(mine.data(), kWords * 4));
    std::vector<DeviceBuffer> receive(ranks);
    std::vector<P2pOp> ops;
    for (int peer = 0; peer < ranks; ++peer) {
      if (peer == rank) continue;
      CRAFT_ASSIGN_OR_RETURN(receive[peer], DeviceBuffer::Allocate(rank, kWords * 4));
      ops.push_back({peer, true, send.data(), kWords * 4});
      ops.push_back({peer, false, receive[peer].data(), kWords * 4});
    }
    CRAFT_ASSIGN_OR_RETURN(double seconds, executor->Exchange(ops));
    if (seconds <= 0) return absl::InternalError("no device time");
    for (int peer = 0; peer < ranks; ++peer) {
      if (peer == rank) continue;
      std::vector<int32_t> got(kWords);
      CRAFT_RETURN_IF_ERROR(receive[peer].CopyToHost(got.data(), kWords * 4));
      for (int64_t i = 0; i < kWords; i += 4099) {
        if (got[i] != static_cast<int32_t>(peer * 1000003 + i)) {
          return absl::DataLossError(absl::StrCat("rank ", rank, " word ", i, " from ", peer));
        }
      }
    }
    return executor->Close();
  });
  for (int r = 0; r < ranks; ++r) EXPECT_TRUE(status[r].ok()) << "rank " << r << ": " << status[r];
}

TEST(NcclTransferTest, PeerThatNeverPostsItsReceiveTimesOutAndAborts) {
  CRAFT_REQUIRE_GPUS(2);
  // 192 MiB: far beyond what NCCL could buffer without the receiver.
  constexpr int64_t kBytes = int64_t{192} << 20;
  const absl::Duration timeout = absl::Seconds(3);
  CRAFT_ASSERT_OK_AND_ASSIGN(NcclId id, NewNcclId());
  std::atomic<bool> sender_done{false};
  absl::Status send_status, after_abort, receiver_close;
  absl::Duration send_time;
  const std::vector<absl::Status> status = OnEveryRank(2, [&](int rank) -> absl::Status {
    CRAFT_ASSIGN_OR_RETURN(auto executor,
                           NcclTransferExecutor::Create(rank, id, 2, rank, WithTimeout(timeout)));
    if (rank == 0) {
      CRAFT_ASSIGN_OR_RETURN(DeviceBuffer send, DeviceBuffer::Allocate(0, kBytes));
      const absl::Time start = absl::Now();
      send_status = executor->Exchange({{1, true, send.data(), kBytes}}).status();
      send_time = absl::Now() - start;
      after_abort = executor->Exchange({{1, true, send.data(), kBytes}}).status();
      EXPECT_FALSE(executor->usable());
      sender_done = true;
    } else {
      // The receiver never posts (a hung or departed peer), then leaves.
      while (!sender_done) absl::SleepFor(absl::Milliseconds(10));
      receiver_close = executor->Close();
    }
    return absl::OkStatus();
  });
  EXPECT_TRUE(status[0].ok()) << status[0];
  EXPECT_TRUE(status[1].ok()) << status[1];
  EXPECT_EQ(send_status.code(), absl::StatusCode::kDeadlineExceeded) << send_status;
  EXPECT_LT(send_time, timeout + absl::Seconds(10));
  EXPECT_EQ(after_abort.code(), absl::StatusCode::kFailedPrecondition) << after_abort;
  // The receiver's close either finishes or aborts at its own deadline.
  std::cout << "[   INFO   ] sender gave up after " << send_time
            << "; receiver close: " << receiver_close << std::endl;
}

TEST(NcclTransferTest, CancellationAbortsARunningExchangeLongBeforeTheDeadline) {
  CRAFT_REQUIRE_GPUS(2);
  constexpr int64_t kBytes = int64_t{192} << 20;
  CRAFT_ASSERT_OK_AND_ASSIGN(NcclId id, NewNcclId());
  std::atomic<bool> cancelled{false}, sender_done{false};
  absl::Status send_status;
  absl::Duration send_time;
  const std::vector<absl::Status> status = OnEveryRank(2, [&](int rank) -> absl::Status {
    CRAFT_ASSIGN_OR_RETURN(auto executor, NcclTransferExecutor::Create(
                                              rank, id, 2, rank, WithTimeout(absl::Seconds(60))));
    if (rank == 0) {
      CRAFT_ASSIGN_OR_RETURN(DeviceBuffer send, DeviceBuffer::Allocate(0, kBytes));
      std::thread canceller([&] {
        absl::SleepFor(absl::Milliseconds(500));
        cancelled = true;
      });
      const absl::Time start = absl::Now();
      send_status =
          executor->Exchange({{1, true, send.data(), kBytes}}, absl::InfiniteFuture(), &cancelled)
              .status();
      send_time = absl::Now() - start;
      canceller.join();
      sender_done = true;
    } else {
      while (!sender_done) absl::SleepFor(absl::Milliseconds(10));
      executor->Close().IgnoreError();  // its peer aborted: may abort too
    }
    return absl::OkStatus();
  });
  EXPECT_TRUE(status[0].ok()) << status[0];
  EXPECT_EQ(send_status.code(), absl::StatusCode::kCancelled) << send_status;
  EXPECT_LT(send_time, absl::Seconds(10));
}

TEST(NcclTransferTest, InitWithAMissingPeerTimesOut) {
  CRAFT_REQUIRE_GPUS(1);
  CRAFT_ASSERT_OK_AND_ASSIGN(NcclId id, NewNcclId());
  const absl::Time start = absl::Now();
  // Rank 0 of 2; rank 1 never joins.
  const absl::Status status =
      NcclTransferExecutor::Create(0, id, 2, 0, WithTimeout(absl::Seconds(2))).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_LT(absl::Now() - start, absl::Seconds(12));
}

TEST(NcclTransferTest, RejectsBadOpsBeforePostingAnything) {
  CRAFT_REQUIRE_GPUS(1);
  CRAFT_ASSERT_OK_AND_ASSIGN(NcclId id, NewNcclId());
  CRAFT_ASSERT_OK_AND_ASSIGN(auto executor, NcclTransferExecutor::Create(0, id, 1, 0, {}));
  CRAFT_ASSERT_OK_AND_ASSIGN(DeviceBuffer buffer, DeviceBuffer::Allocate(0, 64));
  EXPECT_EQ(executor->Exchange({{0, true, buffer.data(), 64}}).status().code(),
            absl::StatusCode::kInvalidArgument);  // to itself
  EXPECT_EQ(executor->Exchange({{1, false, buffer.data(), 64}}).status().code(),
            absl::StatusCode::kInvalidArgument);  // no rank 1
  EXPECT_EQ(executor->Exchange({{0, false, buffer.data(), -1}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(executor->usable());
  CRAFT_ASSERT_OK(executor->Exchange({}).status());
  CRAFT_ASSERT_OK(executor->Close());
  EXPECT_FALSE(executor->usable());
}

}  // namespace
}  // namespace craft::gpu
