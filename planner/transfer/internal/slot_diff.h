// Implementation detail of //planner/transfer: comparing the slots of a
// freshly planned layout with the committed one. Not part of the public API.
#ifndef CRAFT_PLANNER_TRANSFER_INTERNAL_SLOT_DIFF_H_
#define CRAFT_PLANNER_TRANSFER_INTERNAL_SLOT_DIFF_H_

#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "planner/layout.h"

namespace craft::planner::transfer_internal {

// OK when both layouts validate (duplicates on a GPU allowed) and share the
// number of layers, the number of experts and the cluster; INVALID_ARGUMENT
// otherwise. Everything else in this package indexes by those shapes.
absl::Status CheckComparable(const Layout& previous, const Layout& next);

// The experts of GPU `gpu`'s slots in `layer`, in slot order.
absl::Span<const int> GpuExperts(const LayerPlacement& layer, int gpu);

// What a slot of the next layout needs before it can serve. A slot is
// identified by (layer, GPU, index within that GPU's slots).
enum class SlotChange {
  kUnchanged,   // the same index on the same GPU already holds the expert
  kLocalCopy,   // the GPU holds the expert in another slot: a device-local copy
  kRemoteLoad,  // the GPU did not hold the expert: bytes from another GPU
};

// One layer of the committed layout, indexed to answer "did GPU g hold expert
// e before?" in O(log slots). Every question about the previous layout in this
// package goes through here.
//
// Thread-safety: immutable after construction; the referenced LayerPlacement
// must outlive it and stay unchanged.
class PreviousLayer {
 public:
  explicit PreviousLayer(const LayerPlacement& layer);

  // GPU `gpu`'s experts in slot order.
  absl::Span<const int> Experts(int gpu) const;
  // The distinct experts GPU `gpu` held, ascending.
  const std::vector<int>& Held(int gpu) const { return held_[gpu]; }
  bool Holds(int gpu, int expert) const;
  // How slot `index` of GPU `gpu` comes to hold `expert` in the next layout.
  SlotChange Classify(int gpu, int index, int expert) const;

 private:
  const LayerPlacement* layer_;
  std::vector<int> offsets_;            // per GPU: its first slot
  std::vector<std::vector<int>> held_;  // per GPU: Held()
};

}  // namespace craft::planner::transfer_internal

#endif  // CRAFT_PLANNER_TRANSFER_INTERNAL_SLOT_DIFF_H_
