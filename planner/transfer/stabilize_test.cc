// Tests of move counting and layout stabilisation.
#include "planner/transfer/stabilize.h"

#include <algorithm>
#include <random>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "planner/layout.h"
#include "planner/transfer/internal/test_layouts.h"

namespace craft::planner {
namespace {

using transfer_internal::OneLayer;
using transfer_internal::PerturbedLayout;
using transfer_internal::RandomCluster;
using transfer_internal::RandomLayout;

MoveStats Moves(int64_t changed, int64_t remote, int64_t local) {
  MoveStats stats;
  stats.slots_changed = changed;
  stats.remote_loads = remote;
  stats.local_copies = local;
  return stats;
}

// Per layer, the sorted list of (slot count, sorted experts) over GPUs: what
// Stabilize must keep, up to which GPU holds which bin.
std::vector<std::vector<std::pair<int, std::vector<int>>>> Bins(const Layout& layout) {
  std::vector<std::vector<std::pair<int, std::vector<int>>>> bins;
  for (const LayerPlacement& layer : layout.layers) {
    auto& layer_bins = bins.emplace_back();
    int offset = 0;
    for (int count : layer.slots_per_gpu) {
      std::vector<int> experts(layer.phy2log.begin() + offset,
                               layer.phy2log.begin() + offset + count);
      std::sort(experts.begin(), experts.end());
      layer_bins.emplace_back(count, std::move(experts));
      offset += count;
    }
    std::sort(layer_bins.begin(), layer_bins.end());
  }
  return bins;
}

TEST(CountMovesTest, ClassifiesEverySlot) {
  const Layout previous = OneLayer(4, {2, 1}, {2, 2}, {0, 1, 2, 3});
  // GPU 0: 0 stays, 0 copied locally into index 1, new slot with 2 (remote).
  // GPU 1: 3 is copied from index 1 to index 0 (local), index 1 takes 1
  // (remote).
  const Layout next = OneLayer(4, {2, 1}, {3, 2}, {0, 0, 2, 3, 1});
  absl::StatusOr<MoveStats> moves = CountMoves(previous, next);
  ASSERT_TRUE(moves.ok()) << moves.status();
  EXPECT_EQ(*moves, Moves(4, 2, 2));
}

TEST(CountMovesTest, RejectsMismatchedShapes) {
  const Layout layout = OneLayer(2, {2, 1}, {1, 1}, {0, 1});
  EXPECT_EQ(CountMoves(layout, OneLayer(3, {2, 1}, {1, 2}, {0, 1, 2})).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CountMoves(layout, OneLayer(2, {2, 2}, {1, 1}, {0, 1})).status().code(),
            absl::StatusCode::kInvalidArgument);
  Layout two_layers = layout;
  two_layers.layers.push_back(layout.layers[0]);
  EXPECT_EQ(CountMoves(layout, two_layers).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Stabilize(layout, two_layers).status().code(), absl::StatusCode::kInvalidArgument);
  Layout broken = layout;
  broken.layers[0].phy2log = {0, 0};  // expert 1 unplaced
  EXPECT_EQ(Stabilize(layout, broken).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(StabilizeTest, IdenticalLayoutsStayPut) {
  std::mt19937 rng(7);
  const Layout layout = RandomLayout(rng, {4, 2}, 3, 6, /*duplicate_free=*/false);
  EXPECT_EQ(*CountMoves(layout, layout), MoveStats());
  absl::StatusOr<Layout> stable = Stabilize(layout, layout);
  ASSERT_TRUE(stable.ok()) << stable.status();
  EXPECT_EQ(*stable, layout);
}

TEST(StabilizeTest, UndoesAPermutationOfGpusAndSlots) {
  const Layout previous = OneLayer(6, {4, 2}, {2, 2, 3, 2}, {0, 1, 2, 3, 4, 5, 0, 1, 3});
  // GPUs 0, 1 and 3 (two slots each) swap bins around; every GPU reorders.
  const Layout next = OneLayer(6, {4, 2}, {2, 2, 3, 2}, {3, 1, 1, 0, 0, 5, 4, 3, 2});
  EXPECT_GT(CountMoves(previous, next)->remote_loads, 0);
  absl::StatusOr<Layout> stable = Stabilize(previous, next);
  ASSERT_TRUE(stable.ok()) << stable.status();
  EXPECT_EQ(*stable, previous);
}

TEST(StabilizeTest, KeepsStayingExpertsAtTheirIndexAndFillsTheRestInOrder) {
  // One GPU, so only step (b) acts: every old expert keeps its index and the
  // extra replicas take the new indices.
  const Layout previous = OneLayer(10, {1, 1}, {10}, {3, 1, 2, 0, 4, 5, 6, 7, 8, 9});
  const Layout next = OneLayer(10, {1, 1}, {13}, {9, 7, 2, 1, 4, 0, 3, 5, 6, 8, 0, 0, 0});
  absl::StatusOr<Layout> stable = Stabilize(previous, next);
  ASSERT_TRUE(stable.ok()) << stable.status();
  EXPECT_EQ(stable->layers[0].phy2log, (std::vector<int>{3, 1, 2, 0, 4, 5, 6, 7, 8, 9, 0, 0, 0}));
  const Layout reversed = OneLayer(10, {1, 1}, {10}, {9, 8, 7, 6, 5, 4, 3, 2, 1, 0});
  EXPECT_EQ(Stabilize(previous, reversed)->layers[0].phy2log, previous.layers[0].phy2log);
}

TEST(StabilizeTest, NewExpertsFillFreeIndicesInAscendingOrder) {
  // GPUs of different slot counts never swap bins, so only step (b) acts.
  const Layout previous = OneLayer(10, {2, 1}, {3, 7}, {3, 1, 2, 0, 4, 5, 6, 7, 8, 9});
  const Layout next = OneLayer(10, {2, 1}, {4, 6}, {9, 5, 2, 1, 0, 3, 4, 6, 7, 8});
  // GPU 0 keeps 1 at index 1 and 2 at index 2; 5 and 9 take indices 0 and 3.
  // GPU 1 gives up 5 and 9 and takes 3, which lands on 5's old index 2.
  EXPECT_EQ(Stabilize(previous, next)->layers[0].phy2log,
            (std::vector<int>{5, 1, 2, 9, 0, 4, 3, 6, 7, 8}));
}

TEST(StabilizeTest, DoesNotTradeARemoteLoadForMoreChangedSlots) {
  // Experts A=0, B=1, C=2. GPUs 0 and 1 get one slot each: {A} and {B}.
  // Swapping them would avoid fetching B (GPU 0 held it at index 1) but
  // would change two slots instead of one, so next's labelling stays.
  const Layout previous = OneLayer(3, {3, 1}, {2, 2, 2}, {0, 1, 2, 0, 2, 1});
  const Layout next = OneLayer(3, {3, 1}, {1, 1, 2}, {0, 1, 1, 2});
  EXPECT_EQ(*CountMoves(previous, next), Moves(3, 1, 2));
  absl::StatusOr<Layout> stable = Stabilize(previous, next);
  ASSERT_TRUE(stable.ok()) << stable.status();
  EXPECT_EQ(stable->layers[0].phy2log, (std::vector<int>{0, 1, 2, 1}));
  EXPECT_EQ(*CountMoves(previous, *stable), Moves(1, 1, 0));
}

// Checks everything Stabilize promises for one (previous, next) pair and
// returns the remote loads it saved.
int64_t ExpectStable(const Layout& previous, const Layout& next, int seed) {
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  absl::StatusOr<Layout> stable = Stabilize(previous, next);
  EXPECT_TRUE(stable.ok()) << stable.status();
  if (!stable.ok()) return 0;
  EXPECT_TRUE(stable->Validate().ok()) << stable->Validate();
  for (int l = 0; l < next.num_layers(); ++l) {
    EXPECT_EQ(stable->layers[l].slots_per_gpu, next.layers[l].slots_per_gpu);
  }
  EXPECT_EQ(Bins(*stable), Bins(next));
  const MoveStats before = *CountMoves(previous, next);
  const MoveStats after = *CountMoves(previous, *stable);
  EXPECT_LE(after.remote_loads, before.remote_loads);
  EXPECT_LE(after.slots_changed, before.slots_changed);
  EXPECT_EQ(after.slots_changed, after.remote_loads + after.local_copies);
  if (next.Validate(/*allow_duplicates_on_gpu=*/false).ok()) {
    EXPECT_TRUE(stable->Validate(/*allow_duplicates_on_gpu=*/false).ok());
  }
  // Stabilising is idempotent: a stable layout has nothing left to gain.
  EXPECT_EQ(*CountMoves(previous, *Stabilize(previous, *stable)), after);
  return before.remote_loads - after.remote_loads;
}

TEST(StabilizeTest, RandomLayoutsNeverMoveMore) {
  int improved = 0;
  for (int seed = 0; seed < 200; ++seed) {
    std::mt19937 rng(seed);
    const ClusterShape cluster = RandomCluster(rng);
    const int num_layers = 1 + seed % 3;
    const int num_experts = 1 + static_cast<int>(rng() % 12);
    const bool duplicate_free = seed % 2 == 0;
    const Layout previous = RandomLayout(rng, cluster, num_layers, num_experts, duplicate_free);
    const Layout next = seed % 3 == 0
                            ? RandomLayout(rng, cluster, num_layers, num_experts, duplicate_free)
                            : PerturbedLayout(rng, previous);
    if (ExpectStable(previous, next, seed) > 0) ++improved;
  }
  // The property is not vacuous: relabelling pays off on most perturbed pairs.
  EXPECT_GT(improved, 100);
}

}  // namespace
}  // namespace craft::planner
