#include "planner/transfer/movement.h"

#include <algorithm>
#include <limits>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "planner/transfer/internal/slot_diff.h"

namespace craft::planner {

int64_t ArrivingReplicas(absl::Span<const int> previous_experts,
                         absl::Span<const int> next_experts) {
  // A GPU holds a few slots per layer: no allocation for them (the
  // incremental planner counts this thousands of times per move).
  absl::InlinedVector<int, 16> before(previous_experts.begin(), previous_experts.end());
  absl::InlinedVector<int, 16> after(next_experts.begin(), next_experts.end());
  std::sort(before.begin(), before.end());
  std::sort(after.begin(), after.end());
  // |after \ before| as multisets: walk both sorted lists once.
  int64_t arriving = 0;
  size_t i = 0;
  for (int expert : after) {
    while (i < before.size() && before[i] < expert) ++i;
    if (i < before.size() && before[i] == expert) {
      ++i;
    } else {
      ++arriving;
    }
  }
  return arriving;
}

absl::StatusOr<Movement> CountMovement(const Layout& previous, const Layout& next,
                                       int64_t bytes_per_expert) {
  CRAFT_RETURN_IF_ERROR(transfer_internal::CheckComparable(previous, next));
  if (bytes_per_expert <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("bytes_per_expert must be positive, got ", bytes_per_expert));
  }
  Movement movement;
  const int gpus = next.cluster.num_gpus;
  movement.replicas_into_gpu.assign(gpus, 0);
  for (int l = 0; l < next.num_layers(); ++l) {
    const LayerPlacement& before = previous.layers[l];
    const LayerPlacement& after = next.layers[l];
    movement.new_slots += after.num_slots();
    // GPU-major slots: walk both layers' GPUs in step (looking each GPU's
    // slots up from scratch is O(D) per GPU, which dominated at 4,096 GPUs).
    const absl::Span<const int> before_slots(before.phy2log), after_slots(after.phy2log);
    size_t before_at = 0, after_at = 0;
    for (int g = 0; g < gpus; ++g) {
      movement.replicas_into_gpu[g] +=
          ArrivingReplicas(before_slots.subspan(before_at, before.slots_per_gpu[g]),
                           after_slots.subspan(after_at, after.slots_per_gpu[g]));
      before_at += before.slots_per_gpu[g];
      after_at += after.slots_per_gpu[g];
    }
  }
  int64_t max_replicas = 0;
  for (int64_t replicas : movement.replicas_into_gpu) {
    movement.moved_replicas += replicas;
    max_replicas = std::max(max_replicas, replicas);
  }
  if (max_replicas > std::numeric_limits<int64_t>::max() / bytes_per_expert) {
    return absl::InvalidArgumentError("bytes moved into one GPU overflow int64_t");
  }
  movement.max_bytes_into_gpu = max_replicas * bytes_per_expert;
  movement.moved_fraction =
      static_cast<double>(movement.moved_replicas) / static_cast<double>(movement.new_slots);
  return movement;
}

}  // namespace craft::planner
