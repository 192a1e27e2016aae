#include "wire/layout_delta.h"

#include <algorithm>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "planner/initial_layout.h"
#include "wire/layout_proto.h"

namespace craft {
namespace {

// A random valid layout: every expert once per layer, then `extra` replicas,
// spread over GPUs at random (some GPUs hold nothing in a layer).
planner::Layout RandomLayout(std::mt19937& rng, int layers, int experts,
                             planner::ClusterShape cluster, int extra) {
  planner::Layout layout;
  layout.num_experts = experts;
  layout.cluster = cluster;
  for (int l = 0; l < layers; ++l) {
    std::vector<std::vector<int>> per_gpu(cluster.num_gpus);
    std::uniform_int_distribution<int> gpu(0, cluster.num_gpus - 1);
    std::uniform_int_distribution<int> expert(0, experts - 1);
    for (int e = 0; e < experts; ++e) per_gpu[gpu(rng)].push_back(e);
    for (int r = 0; r < extra; ++r) per_gpu[gpu(rng)].push_back(expert(rng));
    planner::LayerPlacement layer;
    for (const std::vector<int>& slots : per_gpu) {
      layer.slots_per_gpu.push_back(static_cast<int>(slots.size()));
      layer.phy2log.insert(layer.phy2log.end(), slots.begin(), slots.end());
    }
    layout.layers.push_back(std::move(layer));
  }
  return layout;
}

// `base` with `moves` replicas moved: a slot's expert replaced, or a replica
// taken from one GPU to another (which changes two GPUs' slot counts).
planner::Layout Moved(std::mt19937& rng, const planner::Layout& base, int moves) {
  planner::Layout out = base;
  for (int m = 0; m < moves; ++m) {
    planner::LayerPlacement& layer =
        out.layers[std::uniform_int_distribution<int>(0, out.num_layers() - 1)(rng)];
    const int slot = std::uniform_int_distribution<int>(0, layer.num_slots() - 1)(rng);
    if (m % 2 == 0) {
      layer.phy2log.push_back(layer.phy2log[slot]);  // keeps every expert placed
      ++layer.slots_per_gpu.back();
      continue;
    }
    const std::vector<int> gpus = layer.SlotGpus();
    const int to = std::uniform_int_distribution<int>(0, out.cluster.num_gpus - 1)(rng);
    const int expert = layer.phy2log[slot];
    layer.phy2log.erase(layer.phy2log.begin() + slot);
    --layer.slots_per_gpu[gpus[slot]];
    layer.phy2log.insert(layer.phy2log.begin() + layer.SlotOffset(to), expert);
    ++layer.slots_per_gpu[to];
  }
  return out;
}

TEST(LayoutDeltaTest, RoundTripsRandomLayouts) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const planner::ClusterShape cluster{8 * (1 + trial % 4), 1 + trial % 4};
    const int layers = 1 + trial % 5, experts = 4 + trial % 13;
    const planner::Layout base = RandomLayout(rng, layers, experts, cluster, trial % 9);
    ASSERT_TRUE(base.Validate().ok());
    // Unrelated targets (any list may change) and near ones (a few moves).
    const planner::Layout target = trial % 2 == 0
                                       ? RandomLayout(rng, layers, experts, cluster, trial % 7)
                                       : Moved(rng, base, 1 + trial % 6);
    ASSERT_TRUE(target.Validate().ok());
    absl::StatusOr<craft::v1::LayoutDelta> delta = MakeLayoutDelta(base, "1.1", target, "1.2");
    ASSERT_TRUE(delta.ok()) << delta.status();
    EXPECT_EQ(delta->base_version(), "1.1");
    EXPECT_EQ(delta->version(), "1.2");
    EXPECT_EQ(delta->fingerprint(), LayoutFingerprint(target));
    absl::StatusOr<planner::Layout> rebuilt = ApplyLayoutDelta(base, *delta);
    ASSERT_TRUE(rebuilt.ok()) << "trial " << trial << ": " << rebuilt.status();
    EXPECT_EQ(*rebuilt, target) << "trial " << trial;
  }
}

TEST(LayoutDeltaTest, CarriesOnlyTheListsThatChanged) {
  std::mt19937 rng(3);
  const planner::Layout base = RandomLayout(rng, 6, 32, {64, 8}, 40);
  absl::StatusOr<craft::v1::LayoutDelta> same = MakeLayoutDelta(base, "1.1", base, "1.2");
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->changed_size(), 0);
  EXPECT_EQ(*ApplyLayoutDelta(base, *same), base);

  planner::Layout target = base;
  std::swap(target.layers[2].phy2log[0], target.layers[2].phy2log.back());
  absl::StatusOr<craft::v1::LayoutDelta> delta = MakeLayoutDelta(base, "1.1", target, "1.2");
  ASSERT_TRUE(delta.ok());
  const std::vector<int> gpus = base.layers[2].SlotGpus();
  ASSERT_EQ(delta->changed_size(), gpus.front() == gpus.back() ? 1 : 2);
  EXPECT_EQ(delta->changed(0).layer(), 2);
  EXPECT_EQ(delta->changed(0).gpu(), gpus.front());
  EXPECT_LT(delta->ByteSizeLong(), LayoutToProto(target, "1.2").ByteSizeLong() / 10);
}

TEST(LayoutDeltaTest, AWrongBaseIsDetected) {
  std::mt19937 rng(11);
  const planner::Layout base = RandomLayout(rng, 4, 16, {16, 2}, 8);
  const planner::Layout target = Moved(rng, base, 3);
  const craft::v1::LayoutDelta delta = *MakeLayoutDelta(base, "1.1", target, "1.2");
  // Another layout under the same name: whatever the delta leaves alone
  // differs, and the fingerprint says so.
  const planner::Layout other = Moved(rng, base, 2);
  absl::StatusOr<planner::Layout> rebuilt = ApplyLayoutDelta(other, delta);
  ASSERT_FALSE(rebuilt.ok());
  EXPECT_EQ(rebuilt.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(rebuilt.status().message().find("full layout"), absl::string_view::npos);
}

TEST(LayoutDeltaTest, RefusesMalformedDeltas) {
  std::mt19937 rng(5);
  const planner::Layout base = RandomLayout(rng, 3, 8, {8, 2}, 4);
  const craft::v1::LayoutDelta good = *MakeLayoutDelta(base, "1.1", Moved(rng, base, 4), "1.2");
  ASSERT_GE(good.changed_size(), 2);
  struct Case {
    const char* what;
    void (*mutate)(craft::v1::LayoutDelta&);
    const char* message;
  };
  const Case cases[] = {
      {"layer", [](craft::v1::LayoutDelta& d) { d.mutable_changed(0)->set_layer(3); }, "layer 3"},
      {"negative layer", [](craft::v1::LayoutDelta& d) { d.mutable_changed(0)->set_layer(-1); },
       "layer -1"},
      {"gpu", [](craft::v1::LayoutDelta& d) { d.mutable_changed(1)->set_gpu(8); }, "gpu 8"},
      {"expert", [](craft::v1::LayoutDelta& d) { d.mutable_changed(0)->add_experts(8); },
       "expert 8"},
      {"order", [](craft::v1::LayoutDelta& d) { d.mutable_changed()->SwapElements(0, 1); },
       "out of order"},
      {"repeat", [](craft::v1::LayoutDelta& d) { *d.add_changed() = d.changed(0); },
       "out of order or repeated"},
      {"shape", [](craft::v1::LayoutDelta& d) { d.set_num_gpus(16); }, "16 GPUs"},
      {"layers", [](craft::v1::LayoutDelta& d) { d.set_num_layers(4); }, "4 layers"},
      {"expert lost",
       [](craft::v1::LayoutDelta& d) {
         for (auto& change : *d.mutable_changed()) change.clear_experts();
       },
       "invalid layout"},
  };
  for (const Case& c : cases) {
    craft::v1::LayoutDelta bad = good;
    c.mutate(bad);
    absl::StatusOr<planner::Layout> rebuilt = ApplyLayoutDelta(base, bad);
    ASSERT_FALSE(rebuilt.ok()) << c.what;
    EXPECT_EQ(rebuilt.status().code(), absl::StatusCode::kInvalidArgument) << c.what;
    EXPECT_NE(rebuilt.status().message().find(c.message), absl::string_view::npos)
        << c.what << ": " << rebuilt.status();
  }
}

TEST(LayoutDeltaTest, ShapesMustMatch) {
  std::mt19937 rng(9);
  const planner::Layout base = RandomLayout(rng, 3, 8, {8, 2}, 4);
  const planner::Layout wider = RandomLayout(rng, 3, 8, {16, 2}, 4);
  absl::StatusOr<craft::v1::LayoutDelta> delta = MakeLayoutDelta(base, "1.1", wider, "1.2");
  ASSERT_FALSE(delta.ok());
  EXPECT_EQ(delta.status().code(), absl::StatusCode::kInvalidArgument);
}

// proto/README.md, "Layout deltas": at DeepSeek's shape on 4096 GPUs (58 x
// 256, 8 redundant slots per GPU) the full layout is about 400 KiB; a delta
// is never more than the lists it names, so even one that names every
// (layer, GPU) list stays far below the planner's 16 MiB message limit.
TEST(LayoutDeltaTest, SizeBoundsAtDeepSeekScale) {
  const planner::ClusterShape cluster{4096, 512};
  std::mt19937 rng(1);
  const planner::Layout base = RandomLayout(rng, 58, 256, cluster, 8 * 4096 / 58);
  const size_t full = LayoutToProto(base, "1.1").ByteSizeLong();
  EXPECT_LT(full, 600u << 10);
  // Every list changes: each GPU's slots rotated to another expert.
  planner::Layout all = base;
  for (planner::LayerPlacement& layer : all.layers) {
    for (int& e : layer.phy2log) e = (e + 1) % all.num_experts;
  }
  for (planner::LayerPlacement& layer : all.layers) {
    for (int& count : layer.slots_per_gpu) ++count;
    std::vector<int> phy2log;
    int slot = 0;
    for (int count : layer.slots_per_gpu) {
      phy2log.insert(phy2log.end(), layer.phy2log.begin() + slot,
                     layer.phy2log.begin() + slot + count - 1);
      phy2log.push_back(0);
      slot += count - 1;
    }
    layer.phy2log = std::move(phy2log);
  }
  ASSERT_TRUE(all.Validate().ok());
  const craft::v1::LayoutDelta worst = *MakeLayoutDelta(base, "1.1", all, "1.2");
  EXPECT_EQ(worst.changed_size(), 58 * 4096);
  EXPECT_LT(worst.ByteSizeLong(), size_t{16} << 20);
  // A re-plan moving ~5% of the slots names at most two lists per move.
  const int slots = 58 * 256 + 8 * 4096;
  const planner::Layout moved = Moved(rng, base, slots / 20);
  const craft::v1::LayoutDelta realistic = *MakeLayoutDelta(base, "1.1", moved, "1.2");
  EXPECT_LE(realistic.changed_size(), 2 * (slots / 20));
  EXPECT_LT(realistic.ByteSizeLong(), full / 3);
  EXPECT_EQ(*ApplyLayoutDelta(base, realistic), moved);
}

TEST(LayoutDeltaTest, PrepareVersionIsTheDeltasWhenThereIsOne) {
  craft::v1::Prepare prepare;
  prepare.mutable_layout()->set_version("1.4");
  EXPECT_EQ(PrepareVersion(prepare), "1.4");
  prepare.clear_layout();
  prepare.mutable_layout_delta()->set_version("1.5");
  EXPECT_EQ(PrepareVersion(prepare), "1.5");
}

}  // namespace
}  // namespace craft
