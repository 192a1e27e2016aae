#include "planner/transfer/internal/slot_diff.h"

#include <algorithm>

#include "common/status_macros.h"

namespace craft::planner::transfer_internal {

absl::Status CheckComparable(const Layout& previous, const Layout& next) {
  CRAFT_RETURN_IF_ERROR(previous.Validate());
  CRAFT_RETURN_IF_ERROR(next.Validate());
  return CheckLayoutShape("the next layout", next.shape(), "the previous one's", previous.shape());
}

absl::Span<const int> GpuExperts(const LayerPlacement& layer, int gpu) {
  return absl::MakeConstSpan(layer.phy2log)
      .subspan(layer.SlotOffset(gpu), layer.slots_per_gpu[gpu]);
}

PreviousLayer::PreviousLayer(const LayerPlacement& layer)
    : layer_(&layer), offsets_(layer.slots_per_gpu.size(), 0), held_(layer.slots_per_gpu.size()) {
  for (size_t gpu = 1; gpu < offsets_.size(); ++gpu) {
    offsets_[gpu] = offsets_[gpu - 1] + layer.slots_per_gpu[gpu - 1];
  }
  for (size_t gpu = 0; gpu < held_.size(); ++gpu) {
    const absl::Span<const int> experts = Experts(static_cast<int>(gpu));
    std::vector<int>& held = held_[gpu];
    held.assign(experts.begin(), experts.end());
    std::sort(held.begin(), held.end());
    held.erase(std::unique(held.begin(), held.end()), held.end());
  }
}

absl::Span<const int> PreviousLayer::Experts(int gpu) const {
  return absl::MakeConstSpan(layer_->phy2log).subspan(offsets_[gpu], layer_->slots_per_gpu[gpu]);
}

bool PreviousLayer::Holds(int gpu, int expert) const {
  return std::binary_search(held_[gpu].begin(), held_[gpu].end(), expert);
}

SlotChange PreviousLayer::Classify(int gpu, int index, int expert) const {
  const absl::Span<const int> experts = Experts(gpu);
  if (index < static_cast<int>(experts.size()) && experts[index] == expert) {
    return SlotChange::kUnchanged;
  }
  return Holds(gpu, expert) ? SlotChange::kLocalCopy : SlotChange::kRemoteLoad;
}

}  // namespace craft::planner::transfer_internal
