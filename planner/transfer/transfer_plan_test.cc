// Tests of the transfer plan: one source per changed slot, nearest first,
// load spread over holders, bytes accounted per link.
#include "planner/transfer/transfer_plan.h"

#include <algorithm>
#include <limits>
#include <map>
#include <random>
#include <tuple>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "planner/layout.h"
#include "planner/transfer/internal/test_layouts.h"
#include "planner/transfer/stabilize.h"

namespace craft::planner {
namespace {

using transfer_internal::OneLayer;
using transfer_internal::PerturbedLayout;
using transfer_internal::RandomCluster;
using transfer_internal::RandomLayout;

constexpr int64_t kBytes = 1000;

// (dst_slot, src_slot, kind) of every transfer, for compact expectations.
std::vector<std::tuple<int, int, LinkKind>> Routes(const TransferPlan& plan) {
  std::vector<std::tuple<int, int, LinkKind>> routes;
  for (const Transfer& t : plan.transfers) routes.emplace_back(t.dst_slot, t.src_slot, t.kind);
  return routes;
}

TEST(ClassifyLinkTest, UsesNodeMajorRanks) {
  const ClusterShape cluster{4, 2};
  EXPECT_EQ(ClassifyLink(cluster, 1, 1), LinkKind::kLocal);
  EXPECT_EQ(ClassifyLink(cluster, 0, 1), LinkKind::kIntraNode);
  EXPECT_EQ(ClassifyLink(cluster, 1, 2), LinkKind::kInterNode);
}

TEST(TransferPlanTest, SpreadsCopiesOverEquallyNearHolders) {
  // GPUs 0 and 1 both hold expert 0; GPUs 2 and 3 each need it and already
  // hold expert 1, which their new second slot copies locally.
  const Layout previous = OneLayer(2, {4, 1}, {1, 1, 1, 1}, {0, 0, 1, 1});
  const Layout next = OneLayer(2, {4, 1}, {1, 1, 2, 2}, {0, 0, 0, 1, 0, 1});
  absl::StatusOr<TransferPlan> plan = BuildTransferPlan(previous, next, kBytes);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(Routes(*plan), (std::vector<std::tuple<int, int, LinkKind>>{
                               {2, 0, LinkKind::kIntraNode},
                               {3, 2, LinkKind::kLocal},
                               {4, 1, LinkKind::kIntraNode},
                               {5, 3, LinkKind::kLocal},
                           }));
  EXPECT_EQ(plan->bytes_local, 2 * kBytes);
  EXPECT_EQ(plan->bytes_intra_node, 2 * kBytes);
  EXPECT_EQ(plan->bytes_inter_node, 0);
  ASSERT_EQ(plan->links.size(), 2u);
  EXPECT_EQ(std::make_tuple(plan->links[0].src_gpu, plan->links[0].dst_gpu, plan->links[0].bytes),
            std::make_tuple(0, 2, kBytes));
  EXPECT_EQ(std::make_tuple(plan->links[1].src_gpu, plan->links[1].dst_gpu, plan->links[1].bytes),
            std::make_tuple(1, 3, kBytes));
  EXPECT_EQ(plan->max_bytes_sent_by_a_gpu, kBytes);
  EXPECT_EQ(plan->max_bytes_received_by_a_gpu, kBytes);
}

TEST(TransferPlanTest, PrefersTheSameNodeOverALessBusyRemoteHolder) {
  // Nodes {0, 1} and {2, 3}. GPU 1 needs expert 0 twice: GPU 0 (same node)
  // serves both copies although GPU 2 (other node) holds it too and is idle.
  // GPU 2 needs expert 1, which only GPU 1 holds: a copy between nodes.
  const Layout previous = OneLayer(3, {4, 2}, {1, 1, 1, 1}, {0, 1, 0, 2});
  const Layout next = OneLayer(3, {4, 2}, {1, 3, 2, 1}, {0, 1, 0, 0, 0, 1, 2});
  absl::StatusOr<TransferPlan> plan = BuildTransferPlan(previous, next, kBytes);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(Routes(*plan), (std::vector<std::tuple<int, int, LinkKind>>{
                               {2, 0, LinkKind::kIntraNode},
                               {3, 0, LinkKind::kIntraNode},
                               {5, 1, LinkKind::kInterNode},
                           }));
  EXPECT_EQ(plan->bytes_intra_node, 2 * kBytes);
  EXPECT_EQ(plan->bytes_inter_node, kBytes);
  EXPECT_EQ(plan->max_bytes_sent_by_a_gpu, 2 * kBytes);
  EXPECT_EQ(plan->max_bytes_received_by_a_gpu, 2 * kBytes);
}

TEST(TransferPlanTest, NothingToDoForAnUnchangedLayout) {
  std::mt19937 rng(3);
  const Layout layout = RandomLayout(rng, {4, 2}, 2, 5, /*duplicate_free=*/false);
  absl::StatusOr<TransferPlan> plan = BuildTransferPlan(layout, layout, kBytes);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE(plan->transfers.empty());
  EXPECT_TRUE(plan->links.empty());
  EXPECT_EQ(plan->max_bytes_sent_by_a_gpu, 0);
}

TEST(TransferPlanTest, RejectsBadInput) {
  const Layout layout = OneLayer(2, {2, 1}, {1, 1}, {0, 1});
  EXPECT_EQ(BuildTransferPlan(layout, layout, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BuildTransferPlan(layout, layout, -5).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BuildTransferPlan(layout, layout, std::numeric_limits<int64_t>::max()).status().code(),
            absl::StatusCode::kInvalidArgument);
  const Layout other_cluster = OneLayer(2, {2, 2}, {1, 1}, {0, 1});
  EXPECT_EQ(BuildTransferPlan(layout, other_cluster, kBytes).status().code(),
            absl::StatusCode::kInvalidArgument);
  const Layout more_experts = OneLayer(3, {2, 1}, {1, 2}, {0, 1, 2});
  EXPECT_EQ(BuildTransferPlan(more_experts, layout, kBytes).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// The best link any holder of `expert` in `previous` offers `dst_gpu`.
LinkKind NearestHolder(const Layout& previous, int layer, int expert, int dst_gpu) {
  const LayerPlacement& placement = previous.layers[layer];
  const std::vector<int> slot_gpu = placement.SlotGpus();
  LinkKind nearest = LinkKind::kInterNode;
  const std::vector<std::vector<int>> holders = placement.LogicalToPhysical(previous.num_experts);
  for (int slot : holders[expert]) {
    nearest = std::min(nearest, ClassifyLink(previous.cluster, slot_gpu[slot], dst_gpu));
  }
  return nearest;
}

// Checks every promise of BuildTransferPlan for one (previous, next) pair.
void ExpectSoundPlan(const Layout& previous, const Layout& next) {
  absl::StatusOr<TransferPlan> plan = BuildTransferPlan(previous, next, kBytes);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(static_cast<int64_t>(plan->transfers.size()),
            CountMoves(previous, next)->slots_changed);

  std::map<std::tuple<int, int, int>, int> transfers_per_slot;  // (layer, gpu, slot)
  std::map<int, int64_t> sent, received;
  int64_t by_kind[3] = {0, 0, 0};
  for (const Transfer& t : plan->transfers) {
    const LayerPlacement& before = previous.layers[t.layer];
    const LayerPlacement& after = next.layers[t.layer];
    ++transfers_per_slot[{t.layer, t.dst_gpu, t.dst_slot}];
    EXPECT_EQ(after.phy2log[t.dst_slot], t.expert);
    EXPECT_EQ(after.SlotGpus()[t.dst_slot], t.dst_gpu);
    EXPECT_EQ(before.phy2log[t.src_slot], t.expert);
    EXPECT_EQ(before.SlotGpus()[t.src_slot], t.src_gpu);
    EXPECT_EQ(t.kind, ClassifyLink(next.cluster, t.src_gpu, t.dst_gpu));
    EXPECT_EQ(t.kind, NearestHolder(previous, t.layer, t.expert, t.dst_gpu));
    by_kind[static_cast<int>(t.kind)] += kBytes;
    if (t.kind != LinkKind::kLocal) {
      sent[t.src_gpu] += kBytes;
      received[t.dst_gpu] += kBytes;
    }
  }
  for (const auto& [slot, count] : transfers_per_slot) EXPECT_EQ(count, 1);
  EXPECT_TRUE(std::is_sorted(
      plan->transfers.begin(), plan->transfers.end(), [](const Transfer& a, const Transfer& b) {
        return std::tie(a.layer, a.dst_gpu, a.dst_slot) < std::tie(b.layer, b.dst_gpu, b.dst_slot);
      }));

  EXPECT_EQ(plan->bytes_local, by_kind[0]);
  EXPECT_EQ(plan->bytes_intra_node, by_kind[1]);
  EXPECT_EQ(plan->bytes_inter_node, by_kind[2]);
  int64_t link_total = 0;
  for (size_t i = 0; i < plan->links.size(); ++i) {
    const LinkBytes& link = plan->links[i];
    EXPECT_NE(link.src_gpu, link.dst_gpu);
    EXPECT_GT(link.bytes, 0);
    if (i > 0) {
      const LinkBytes& prior = plan->links[i - 1];
      EXPECT_LT(std::tie(prior.src_gpu, prior.dst_gpu), std::tie(link.src_gpu, link.dst_gpu));
    }
    link_total += link.bytes;
  }
  EXPECT_EQ(link_total, plan->bytes_intra_node + plan->bytes_inter_node);
  auto max_of = [](const std::map<int, int64_t>& bytes) {
    int64_t most = 0;
    for (const auto& [gpu, b] : bytes) most = std::max(most, b);
    return most;
  };
  EXPECT_EQ(plan->max_bytes_sent_by_a_gpu, max_of(sent));
  EXPECT_EQ(plan->max_bytes_received_by_a_gpu, max_of(received));
}

TEST(TransferPlanTest, RandomLayoutsGetSoundPlans) {
  for (int seed = 0; seed < 200; ++seed) {
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    std::mt19937 rng(seed);
    const ClusterShape cluster = RandomCluster(rng);
    const int num_layers = 1 + seed % 3;
    const int num_experts = 1 + static_cast<int>(rng() % 12);
    const Layout previous =
        RandomLayout(rng, cluster, num_layers, num_experts, /*duplicate_free=*/seed % 2 == 0);
    const Layout next = seed % 3 == 0 ? RandomLayout(rng, cluster, num_layers, num_experts,
                                                     /*duplicate_free=*/false)
                                      : PerturbedLayout(rng, previous);
    ExpectSoundPlan(previous, next);
    ExpectSoundPlan(previous, *Stabilize(previous, next));
  }
}

}  // namespace
}  // namespace craft::planner
