#include "gpu_worker/cuda/load_counter.h"

#include <algorithm>
#include <memory>
#include <random>
#include <vector>

#include "common/status_macros.h"
#include "gpu_worker/cuda/device_buffer.h"
#include "gpu_worker/cuda/gpu_test_util.h"
#include "gpu_worker/cuda/routing.h"
#include "gtest/gtest.h"

namespace craft::gpu {
namespace {

constexpr int kExperts = 64;
constexpr int kTopK = 8;

// A layer of `slots` slots: every expert once, then replicas of random experts.
RoutingTable RandomTable(int slots, std::mt19937& rng) {
  std::vector<int> phy2log(slots);
  for (int s = 0; s < slots; ++s)
    phy2log[s] = s < kExperts ? s : static_cast<int>(rng() % kExperts);
  std::shuffle(phy2log.begin(), phy2log.end(), rng);
  return *RoutingTable::FromPhy2Log(phy2log, kExperts);
}

// Skewed ids: expert 0 is hot; ~1% are padding (-1) or out of range.
std::vector<int32_t> RandomIds(int64_t tokens, std::mt19937& rng) {
  std::vector<int32_t> ids(tokens * kTopK);
  for (int32_t& id : ids) {
    const uint32_t r = rng() % 1000;
    id = r < 5 ? -1 : r < 10 ? kExperts + 3 : r < 300 ? 0 : static_cast<int32_t>(rng() % kExperts);
  }
  return ids;
}

struct Batch {
  std::vector<int32_t> ids;
  DeviceBuffer device_ids;
  DeviceBuffer device_phy;
};

class LoadCounterTest : public ::testing::Test {
 protected:
  void SetUp() override { CRAFT_REQUIRE_GPUS(1); }

  // Uploads a batch of `tokens` random tokens.
  absl::StatusOr<Batch> MakeBatch(int64_t tokens) {
    Batch batch;
    batch.ids = RandomIds(tokens, rng_);
    const int64_t bytes = batch.ids.size() * sizeof(int32_t);
    CRAFT_ASSIGN_OR_RETURN(batch.device_ids, DeviceBuffer::Allocate(0, bytes));
    CRAFT_ASSIGN_OR_RETURN(batch.device_phy, DeviceBuffer::Allocate(0, bytes));
    CRAFT_RETURN_IF_ERROR(batch.device_ids.CopyFromHost(batch.ids.data(), bytes));
    return batch;
  }

  std::mt19937 rng_{7};
};

TEST_F(LoadCounterTest, CountsMatchTheCpuReference) {
  const std::vector<RoutingTable> tables = {RandomTable(80, rng_), RandomTable(64, rng_),
                                            RandomTable(100, rng_)};
  LoadCounterOptions options;
  options.num_experts = kExperts;
  options.slot_capacity = {100, 100, 100};
  CRAFT_ASSERT_OK_AND_ASSIGN(std::unique_ptr<LoadCounter> counter,
                             LoadCounter::Create(options, tables));

  std::vector<std::vector<uint64_t>> expected(3);
  uint64_t expected_dropped = 0;
  for (int layer = 0; layer < 3; ++layer) expected[layer].assign(tables[layer].num_slots(), 0);
  for (int64_t tokens : {1, 37, 4096, 20000}) {
    for (int layer = 0; layer < 3; ++layer) {
      CRAFT_ASSERT_OK_AND_ASSIGN(Batch batch, MakeBatch(tokens));
      const int64_t window_id = 1000 + tokens;
      CRAFT_ASSERT_OK(
          counter->Count(layer, window_id, static_cast<const int32_t*>(batch.device_ids.data()),
                         tokens, kTopK, static_cast<int32_t*>(batch.device_phy.data()), nullptr));
      std::vector<int32_t> phy(batch.ids.size());
      CRAFT_ASSERT_OK(batch.device_phy.CopyToHost(phy.data(), phy.size() * sizeof(int32_t)));
      std::vector<int32_t> expected_phy(batch.ids.size());
      CountReference(batch.ids, kTopK, window_id, layer, tables[layer],
                     absl::MakeSpan(expected[layer]), &expected_dropped,
                     absl::MakeSpan(expected_phy));
      ASSERT_EQ(phy, expected_phy) << "layer " << layer << ", " << tokens << " tokens";
    }
  }
  CRAFT_ASSERT_OK_AND_ASSIGN(int64_t window, counter->CloseWindow(nullptr));
  EXPECT_EQ(window, 0);
  CRAFT_ASSERT_OK_AND_ASSIGN(WindowCounts counts, counter->Wait());
  EXPECT_EQ(counts.window, 0);
  EXPECT_EQ(counts.num_slots, (std::vector<int>{80, 64, 100}));
  EXPECT_EQ(counts.counts, expected);
  EXPECT_EQ(counts.dropped, expected_dropped);
}

TEST_F(LoadCounterTest, WindowsAreSeparateAndFollowTableChanges) {
  std::vector<RoutingTable> tables = {RandomTable(64, rng_)};
  LoadCounterOptions options;
  options.num_experts = kExperts;
  options.slot_capacity = {96};
  options.pending_windows = 2;
  CRAFT_ASSERT_OK_AND_ASSIGN(std::unique_ptr<LoadCounter> counter,
                             LoadCounter::Create(options, tables));
  CRAFT_ASSERT_OK_AND_ASSIGN(std::optional<WindowCounts> none, counter->Poll());
  EXPECT_FALSE(none.has_value());

  std::vector<std::vector<uint64_t>> expected;
  for (int w = 0; w < 2; ++w) {
    if (w == 1) {  // a new layout between windows
      tables[0] = RandomTable(96, rng_);
      CRAFT_ASSERT_OK(counter->SetRoutingTable(0, tables[0], nullptr));
    }
    CRAFT_ASSERT_OK_AND_ASSIGN(Batch batch, MakeBatch(5000));
    CRAFT_ASSERT_OK(counter->Count(0, /*window_id=*/w,
                                   static_cast<const int32_t*>(batch.device_ids.data()), 5000,
                                   kTopK, nullptr, nullptr));
    std::vector<uint64_t> counts(tables[0].num_slots(), 0);
    uint64_t dropped = 0;
    CountReference(batch.ids, kTopK, /*window_id=*/w, /*layer=*/0, tables[0],
                   absl::MakeSpan(counts), &dropped);
    expected.push_back(counts);
    CRAFT_ASSERT_OK(counter->CloseWindow(nullptr).status());
  }
  // Both pending: a third close is refused and the window keeps counting.
  EXPECT_EQ(counter->CloseWindow(nullptr).status().code(), absl::StatusCode::kUnavailable);
  for (int w = 0; w < 2; ++w) {
    CRAFT_ASSERT_OK_AND_ASSIGN(WindowCounts counts, counter->Wait());
    EXPECT_EQ(counts.window, w);
    EXPECT_EQ(counts.counts[0], expected[w]);
  }
  // The third window starts from zero although its buffer held window 0.
  CRAFT_ASSERT_OK_AND_ASSIGN(int64_t third, counter->CloseWindow(nullptr));
  EXPECT_EQ(third, 2);
  CRAFT_ASSERT_OK_AND_ASSIGN(WindowCounts empty, counter->Wait());
  EXPECT_EQ(empty.counts[0], std::vector<uint64_t>(96, 0));
  EXPECT_EQ(counter->Wait().status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(LoadCounterTest, RejectsTablesThatDoNotFit) {
  const std::vector<RoutingTable> tables = {RandomTable(64, rng_)};
  LoadCounterOptions options;
  options.num_experts = kExperts;
  options.slot_capacity = {70};
  CRAFT_ASSERT_OK_AND_ASSIGN(std::unique_ptr<LoadCounter> counter,
                             LoadCounter::Create(options, tables));
  EXPECT_EQ(counter->SetRoutingTable(0, RandomTable(80, rng_), nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(counter->SetRoutingTable(1, tables[0], nullptr).code(), absl::StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace craft::gpu
