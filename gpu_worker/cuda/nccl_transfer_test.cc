#include "gpu_worker/cuda/nccl_transfer.h"

#include <algorithm>
#include <atomic>
#include <iostream>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "gpu_worker/cuda/device_slots.h"
#include "gpu_worker/cuda/expert_hash.h"
#include "gpu_worker/cuda/gpu_test_util.h"
#include "gtest/gtest.h"

namespace craft::gpu {
namespace {

constexpr int kLayers = 2;
constexpr int kSlots = 4;

// Runs fn(rank) in one thread per rank and returns each rank's status.
template <class Fn>
std::vector<absl::Status> OnEveryRank(int ranks, Fn fn) {
  std::vector<absl::Status> status(ranks);
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r) threads.emplace_back([&, r] { status[r] = fn(r); });
  for (std::thread& thread : threads) thread.join();
  return status;
}

// layout[layer][rank][slot] = logical expert.
using Layout = std::vector<std::vector<std::vector<int>>>;

// Every rank fills its slots with `layout` and joins the communicator.
absl::Status SetUpRank(int rank, int ranks, const NcclId& id, const ExpertShape& shape,
                       const Layout& layout, int staging, absl::Duration timeout,
                       std::unique_ptr<DeviceSlots>* slots,
                       std::unique_ptr<NcclTransferExecutor>* executor) {
  SlotsConfig config;
  config.device = rank;
  config.shape = shape;
  config.slots_per_layer.assign(layout.size(), 0);
  for (size_t layer = 0; layer < layout.size(); ++layer) {
    config.slots_per_layer[layer] = static_cast<int>(layout[layer][rank].size());
  }
  config.staging_buffers = staging;
  CRAFT_ASSIGN_OR_RETURN(*slots, DeviceSlots::Create(config));
  for (size_t layer = 0; layer < layout.size(); ++layer) {
    for (size_t s = 0; s < layout[layer][rank].size(); ++s) {
      CRAFT_RETURN_IF_ERROR((*slots)->FillSlot(layer, s, layout[layer][rank][s]));
    }
  }
  CRAFT_RETURN_IF_ERROR((*slots)->Synchronize());
  TransferOptions options;
  options.timeout = timeout;
  CRAFT_ASSIGN_OR_RETURN(*executor,
                         NcclTransferExecutor::Create(slots->get(), id, ranks, rank, options));
  return absl::OkStatus();
}

// The checksums of every slot of `rank` match `layout`.
absl::Status CheckSlots(int rank, DeviceSlots& slots, const Layout& layout) {
  for (size_t layer = 0; layer < layout.size(); ++layer) {
    std::vector<void*> buffers;
    std::vector<ExpertId> ids;
    for (size_t s = 0; s < layout[layer][rank].size(); ++s) {
      buffers.push_back(slots.slot_data(layer, s));
      ids.push_back({static_cast<int>(layer), layout[layer][rank][s]});
    }
    CRAFT_ASSIGN_OR_RETURN(std::vector<uint64_t> sums, slots.Checksums(buffers));
    for (size_t s = 0; s < ids.size(); ++s) {
      const uint64_t expected =
          HostExpectedChecksum(ids[s].layer, ids[s].expert, slots.shape().elements());
      if (sums[s] != expected) {
        return absl::DataLossError(absl::StrCat("rank ", rank, " layer ", layer, " slot ", s,
                                                " does not hold expert ", ids[s].expert));
      }
    }
  }
  return absl::OkStatus();
}

TEST(NcclTransferTest, LayoutChangeOnAllGpusMovesEveryExpert) {
  CRAFT_REQUIRE_GPUS(2);
  const int ranks = std::min(ProbeCuda().devices, 8);
  const ExpertShape shape{256, 128};
  std::mt19937 rng(11);
  Layout before(kLayers, std::vector<std::vector<int>>(ranks, std::vector<int>(kSlots)));
  for (int layer = 0; layer < kLayers; ++layer) {
    for (int r = 0; r < ranks; ++r) {
      for (int s = 0; s < kSlots; ++s) before[layer][r][s] = r * kSlots + s;
    }
  }
  // About half the slots take an expert from a random slot anywhere: same
  // GPU copies, chains (a slot that is a source and a destination) and
  // several destinations of one source.
  Layout after = before;
  std::vector<TransferItem> plan;
  for (int layer = 0; layer < kLayers; ++layer) {
    for (int r = 0; r < ranks; ++r) {
      for (int s = 0; s < kSlots; ++s) {
        if (rng() % 2 == 0) continue;
        const int src_rank = static_cast<int>(rng() % ranks);
        const int src_slot = static_cast<int>(rng() % kSlots);
        const int expert = before[layer][src_rank][src_slot];
        if (expert == after[layer][r][s]) continue;
        after[layer][r][s] = expert;
        plan.push_back({layer, expert, src_rank, r, src_slot, s,
                        HostExpectedChecksum(layer, expert, shape.elements())});
      }
    }
  }
  ASSERT_GT(plan.size(), 4u);
  CRAFT_ASSERT_OK_AND_ASSIGN(NcclId id, NewNcclId());
  std::vector<int64_t> received(ranks, 0);
  const std::vector<absl::Status> status = OnEveryRank(ranks, [&](int rank) -> absl::Status {
    std::unique_ptr<DeviceSlots> slots;
    std::unique_ptr<NcclTransferExecutor> executor;
    CRAFT_RETURN_IF_ERROR(SetUpRank(rank, ranks, id, shape, before,
                                    /*staging=*/2 * kLayers * kSlots, absl::Seconds(60), &slots,
                                    &executor));
    CRAFT_ASSIGN_OR_RETURN(StagedTransfer staged, executor->Stage(plan));
    received[rank] = staged.bytes_received + staged.bytes_copied;
    CRAFT_RETURN_IF_ERROR(CheckSlots(rank, *slots, before));  // nothing serving changed yet
    CRAFT_RETURN_IF_ERROR(executor->Commit(plan, staged));
    CRAFT_RETURN_IF_ERROR(CheckSlots(rank, *slots, after));
    return executor->Close();
  });
  int64_t total = 0;
  for (int r = 0; r < ranks; ++r) {
    EXPECT_TRUE(status[r].ok()) << "rank " << r << ": " << status[r];
    total += received[r];
  }
  EXPECT_EQ(total, static_cast<int64_t>(plan.size()) * shape.bytes());
}

TEST(NcclTransferTest, ChecksumMismatchIsDataLossAndTheCommunicatorSurvives) {
  CRAFT_REQUIRE_GPUS(2);
  const ExpertShape shape{256, 128};
  const Layout before = {{{0, 1}, {2, 3}}};
  const uint64_t good = HostExpectedChecksum(0, 0, shape.elements());
  const std::vector<TransferItem> bad_plan = {{0, 0, 0, 1, 0, 1, good ^ 1}};
  const std::vector<TransferItem> good_plan = {{0, 0, 0, 1, 0, 1, good}};
  CRAFT_ASSERT_OK_AND_ASSIGN(NcclId id, NewNcclId());
  std::vector<absl::Status> first(2);
  const std::vector<absl::Status> status = OnEveryRank(2, [&](int rank) -> absl::Status {
    std::unique_ptr<DeviceSlots> slots;
    std::unique_ptr<NcclTransferExecutor> executor;
    CRAFT_RETURN_IF_ERROR(
        SetUpRank(rank, 2, id, shape, before, 1, absl::Seconds(60), &slots, &executor));
    absl::StatusOr<StagedTransfer> staged = executor->Stage(bad_plan);
    first[rank] = staged.status();
    if (staged.ok()) CRAFT_RETURN_IF_ERROR(executor->Discard(*staged));
    if (slots->free_staging() != 1) return absl::InternalError("staging buffer leaked");
    CRAFT_ASSIGN_OR_RETURN(StagedTransfer again, executor->Stage(good_plan));
    CRAFT_RETURN_IF_ERROR(executor->Commit(good_plan, again));
    return executor->Close();
  });
  EXPECT_TRUE(first[0].ok()) << first[0];
  EXPECT_EQ(first[1].code(), absl::StatusCode::kDataLoss) << first[1];
  for (const absl::Status& s : status) EXPECT_TRUE(s.ok()) << s;
}

TEST(NcclTransferTest, PeerThatNeverPostsItsReceiveTimesOutAndAborts) {
  CRAFT_REQUIRE_GPUS(2);
  // 96 MB experts: far beyond what NCCL could buffer without the receiver.
  const ExpertShape shape{4096, 4096};
  const Layout before = {{{0, 1}, {2, 3}}};
  const std::vector<TransferItem> plan = {
      {0, 0, 0, 1, 0, 0, HostExpectedChecksum(0, 0, shape.elements())},
      {0, 1, 0, 1, 1, 1, HostExpectedChecksum(0, 1, shape.elements())}};
  const absl::Duration timeout = absl::Seconds(3);
  CRAFT_ASSERT_OK_AND_ASSIGN(NcclId id, NewNcclId());
  std::atomic<bool> sender_done{false};
  absl::Status stage_status, after_abort, receiver_close;
  absl::Duration stage_time;
  const std::vector<absl::Status> status = OnEveryRank(2, [&](int rank) -> absl::Status {
    std::unique_ptr<DeviceSlots> slots;
    std::unique_ptr<NcclTransferExecutor> executor;
    CRAFT_RETURN_IF_ERROR(SetUpRank(rank, 2, id, shape, before, 2, timeout, &slots, &executor));
    if (rank == 0) {
      const absl::Time start = absl::Now();
      stage_status = executor->Stage(plan).status();
      stage_time = absl::Now() - start;
      after_abort = executor->Stage(plan).status();
      sender_done = true;
    } else {
      // The receiver never stages (a hung or departed peer), then leaves.
      while (!sender_done) absl::SleepFor(absl::Milliseconds(10));
      receiver_close = executor->Close();
      if (slots->free_staging() != 2) return absl::InternalError("staging buffer leaked");
    }
    return absl::OkStatus();
  });
  EXPECT_TRUE(status[0].ok()) << status[0];
  EXPECT_TRUE(status[1].ok()) << status[1];
  EXPECT_EQ(stage_status.code(), absl::StatusCode::kDeadlineExceeded) << stage_status;
  EXPECT_LT(stage_time, timeout + absl::Seconds(10));
  EXPECT_EQ(after_abort.code(), absl::StatusCode::kFailedPrecondition) << after_abort;
  // The receiver's close either finishes or aborts at its own deadline.
  std::cout << "[   INFO   ] sender gave up after " << stage_time
            << "; receiver close: " << receiver_close << std::endl;
}

TEST(NcclTransferTest, InitWithAMissingPeerTimesOut) {
  CRAFT_REQUIRE_GPUS(1);
  SlotsConfig config;
  config.shape = {64, 32};
  config.slots_per_layer = {1};
  CRAFT_ASSERT_OK_AND_ASSIGN(std::unique_ptr<DeviceSlots> slots, DeviceSlots::Create(config));
  CRAFT_ASSERT_OK_AND_ASSIGN(NcclId id, NewNcclId());
  TransferOptions options;
  options.timeout = absl::Seconds(2);
  const absl::Time start = absl::Now();
  // Rank 0 of 2; rank 1 never joins.
  const absl::Status status = NcclTransferExecutor::Create(slots.get(), id, 2, 0, options).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_LT(absl::Now() - start, absl::Seconds(12));
}

TEST(NcclTransferTest, RejectsMalformedPlansBeforeSending) {
  CRAFT_REQUIRE_GPUS(1);
  SlotsConfig config;
  config.shape = {64, 32};
  config.slots_per_layer = {2};
  config.staging_buffers = 1;
  CRAFT_ASSERT_OK_AND_ASSIGN(std::unique_ptr<DeviceSlots> slots, DeviceSlots::Create(config));
  CRAFT_ASSERT_OK_AND_ASSIGN(NcclId id, NewNcclId());
  CRAFT_ASSERT_OK_AND_ASSIGN(auto executor,
                             NcclTransferExecutor::Create(slots.get(), id, 1, 0, {}));
  const auto code = [&](std::vector<TransferItem> plan) {
    return executor->Stage(plan).status().code();
  };
  EXPECT_EQ(code({{0, 0, 0, 1, 0, 0, 0}}), absl::StatusCode::kInvalidArgument);  // rank 1 of 1
  EXPECT_EQ(code({{0, 0, 0, 0, 0, 5, 0}}), absl::StatusCode::kInvalidArgument);  // no slot 5
  EXPECT_EQ(code({{1, 0, 0, 0, 0, 0, 0}}), absl::StatusCode::kInvalidArgument);  // no layer 1
  EXPECT_EQ(code({{0, 0, 0, 0, 1, 0, 0}, {0, 1, 0, 0, 0, 0, 0}}),
            absl::StatusCode::kInvalidArgument);  // slot 0 written twice
  EXPECT_EQ(code({{0, 0, 0, 0, 1, 0, 0}, {0, 1, 0, 0, 0, 1, 0}}),
            absl::StatusCode::kResourceExhausted);  // two receptions, one staging buffer
  // A local copy with the right checksum stages and commits on one rank.
  CRAFT_ASSERT_OK(slots->FillSlot(0, 1, 6));
  const std::vector<TransferItem> copy = {
      {0, 6, 0, 0, 1, 0, HostExpectedChecksum(0, 6, config.shape.elements())}};
  CRAFT_ASSERT_OK_AND_ASSIGN(StagedTransfer staged, executor->Stage(copy));
  EXPECT_EQ(staged.bytes_copied, config.shape.bytes());
  CRAFT_ASSERT_OK(executor->Commit(copy, staged));
  CRAFT_ASSERT_OK(executor->Close());
}

}  // namespace
}  // namespace craft::gpu
