// A replica layout: which logical expert every physical slot on every GPU holds.
#ifndef CRAFT_PLANNER_LAYOUT_H_
#define CRAFT_PLANNER_LAYOUT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "planner/cluster.h"

namespace craft::planner {

// One MoE layer's placement. Slots are ordered GPU-major: GPU 0's slots first,
// then GPU 1's, and so on. Unlike DeepSeek EPLB, GPUs may hold different
// numbers of slots in a layer (CRAFT's per-layer replica counts need that);
// the per-GPU total over all layers is what stays equal.
struct LayerPlacement {
  std::vector<int> slots_per_gpu;  // D entries
  std::vector<int> phy2log;        // sum(slots_per_gpu) entries: slot -> logical expert

  int num_slots() const { return static_cast<int>(phy2log.size()); }
  // Index of GPU `gpu`'s first slot. O(gpu): in a loop over GPUs use
  // SlotOffsets() once instead.
  int SlotOffset(int gpu) const;
  // Every GPU's first slot, and the slot count last: D + 1 entries.
  std::vector<int> SlotOffsets() const;
  // The GPU of every slot.
  std::vector<int> SlotGpus() const;
  // logcnt: replicas of every logical expert.
  std::vector<int> LogicalCounts(int num_experts) const;
  // log2phy: the slots of every logical expert, in slot order.
  std::vector<std::vector<int>> LogicalToPhysical(int num_experts) const;

  bool operator==(const LayerPlacement& other) const {
    return slots_per_gpu == other.slots_per_gpu && phy2log == other.phy2log;
  }
};

// The dimensions a layout is indexed by. Two layouts can be compared slot by
// slot, and a layout fits a configured model and cluster, only when these
// agree, which is what comparing LayoutShapes checks.
struct LayoutShape {
  int num_layers = 0;
  int num_experts = 0;
  int num_gpus = 0;
  int num_nodes = 0;

  bool operator==(const LayoutShape& other) const {
    return num_layers == other.num_layers && num_experts == other.num_experts &&
           num_gpus == other.num_gpus && num_nodes == other.num_nodes;
  }
  bool operator!=(const LayoutShape& other) const { return !(*this == other); }
  // "12 layers x 64 experts on 8 GPUs / 2 nodes", for error messages.
  std::string ToString() const;
};

// The one check that a layout has the shape it must before it is indexed or
// compared slot by slot: the configured model and cluster (the planner, a
// worker, an agent's model), a delta's base, the layout it is moved from.
// OK when `actual` is `expected`; else INVALID_ARGUMENT "<what> has shape
// <actual>; <expected_what> is <expected>", e.g. "layout 1.4 has shape 12
// layers x 64 experts on 8 GPUs / 2 nodes; this worker's is 12 layers x 64
// experts on 16 GPUs / 2 nodes".
absl::Status CheckLayoutShape(absl::string_view what, const LayoutShape& actual,
                              absl::string_view expected_what, const LayoutShape& expected);

struct Layout {
  int num_experts = 0;
  ClusterShape cluster;
  std::vector<LayerPlacement> layers;

  int num_layers() const { return static_cast<int>(layers.size()); }
  LayoutShape shape() const {
    return {num_layers(), num_experts, cluster.num_gpus, cluster.num_nodes};
  }
  // Slots GPU `gpu` holds summed over layers (its expert-weight memory).
  int SlotsOnGpu(int gpu) const;
  // Redundant slots (beyond one per expert) summed over layers.
  int TotalRedundantSlots() const;
  // True when every GPU holds the same number of slots in every layer (what
  // SGLang, vLLM and DeepSeek EPLB require).
  bool HasUniformSlots() const;

  // Structural checks: shapes, slot counts, expert ids in range, every expert
  // placed at least once, at most one replica per GPU when
  // `allow_duplicates_on_gpu` is false.
  absl::Status Validate(bool allow_duplicates_on_gpu = true) const;

  bool operator==(const Layout& other) const {
    return num_experts == other.num_experts && cluster.num_gpus == other.cluster.num_gpus &&
           cluster.num_nodes == other.cluster.num_nodes && layers == other.layers;
  }
};

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_LAYOUT_H_
