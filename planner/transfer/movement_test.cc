#include "planner/transfer/movement.h"

#include <random>

#include "gtest/gtest.h"
#include "planner/transfer/internal/test_layouts.h"
#include "planner/transfer/stabilize.h"

namespace craft::planner {
namespace {

using transfer_internal::OneLayer;

TEST(MovementTest, CountsAMultisetDifferencePerGpu) {
  // GPU 0: {0, 1} -> {1, 1}: one replica of 1 arrives (a duplicate counts).
  // GPU 1: {2, 3} -> {3, 2}: reordered, nothing arrives.
  // GPU 2: {0, 3} -> {0, 0, 2}: a new slot with 0 and 2 replacing 3.
  const Layout before = OneLayer(4, {3, 1}, {2, 2, 2}, {0, 1, 2, 3, 0, 3});
  const Layout after = OneLayer(4, {3, 1}, {2, 2, 3}, {1, 1, 3, 2, 0, 0, 2});
  absl::StatusOr<Movement> moved = CountMovement(before, after, 10);
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->moved_replicas, 3);
  EXPECT_EQ(moved->new_slots, 7);
  EXPECT_DOUBLE_EQ(moved->moved_fraction, 3.0 / 7);
  EXPECT_EQ(moved->replicas_into_gpu, (std::vector<int64_t>{1, 0, 2}));
  EXPECT_EQ(moved->max_bytes_into_gpu, 20);
}

TEST(MovementTest, NothingMovesAgainstItself) {
  const Layout layout = OneLayer(4, {2, 1}, {2, 3}, {0, 1, 2, 3, 0});
  absl::StatusOr<Movement> moved = CountMovement(layout, layout, 1);
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(moved->moved_replicas, 0);
  EXPECT_EQ(moved->max_bytes_into_gpu, 0);
}

TEST(MovementTest, LiesBetweenRemoteLoadsAndChangedSlots) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const ClusterShape cluster = transfer_internal::RandomCluster(rng);
    const Layout before = transfer_internal::RandomLayout(rng, cluster, 3, 6, trial % 2 == 0);
    const Layout after = transfer_internal::PerturbedLayout(rng, before);
    absl::StatusOr<Movement> moved = CountMovement(before, after, 1);
    absl::StatusOr<MoveStats> slots = CountMoves(before, after);
    ASSERT_TRUE(moved.ok() && slots.ok());
    EXPECT_LE(slots->remote_loads, moved->moved_replicas);
    EXPECT_LE(moved->moved_replicas, slots->slots_changed);
  }
}

TEST(MovementTest, RejectsBadInput) {
  const Layout a = OneLayer(4, {2, 1}, {2, 2}, {0, 1, 2, 3});
  const Layout b = OneLayer(4, {4, 1}, {1, 1, 1, 1}, {0, 1, 2, 3});
  EXPECT_EQ(CountMovement(a, b, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CountMovement(a, a, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CountMovement(a, a, -5).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace craft::planner
