// One GPU's part of a layout: which logical expert each of its slots holds.
//
// A planner::Layout numbers slots globally (GPU-major); a GPU stores only its
// own, indexed locally from 0 in every layer. LocalLayout keeps both views:
//
//   LocalLayout mine = LocalLayout::Of(layout, "3.7", /*gpu=*/2);
//   absl::StatusOr<int> local = mine.Resolve(layer, global_slot, expert);
//
// Thread-safety: a plain value; const methods may be called concurrently.
#ifndef CRAFT_GPU_WORKER_LOCAL_LAYOUT_H_
#define CRAFT_GPU_WORKER_LOCAL_LAYOUT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "planner/layout.h"

namespace craft::gpu_worker {

struct LocalLayer {
  int first_slot = 0;        // global index of this GPU's first slot in the layer
  std::vector<int> experts;  // logical expert of every local slot

  int num_slots() const { return static_cast<int>(experts.size()); }
  bool operator==(const LocalLayer& other) const {
    return first_slot == other.first_slot && experts == other.experts;
  }
};

struct LocalLayout {
  std::string version;
  std::vector<LocalLayer> layers;

  // GPU `gpu`'s slots of a valid `layout` (gpu must be a rank of it).
  static LocalLayout Of(const planner::Layout& layout, std::string version, int gpu);

  int num_layers() const { return static_cast<int>(layers.size()); }
  // Slots summed over layers.
  int total_slots() const;

  // The local index of global slot `global_slot` of `layer`, checking that it
  // is on this GPU and holds `expert`: NOT_FOUND for a layer or slot that is
  // not here, FAILED_PRECONDITION when the slot holds another expert.
  absl::StatusOr<int> Resolve(int layer, int global_slot, int expert) const;
  // OUT_OF_RANGE unless (layer, slot) is a local slot of this layout.
  absl::Status CheckSlot(int layer, int slot) const;

  bool operator==(const LocalLayout& other) const {
    return version == other.version && layers == other.layers;
  }
};

}  // namespace craft::gpu_worker

#endif  // CRAFT_GPU_WORKER_LOCAL_LAYOUT_H_
