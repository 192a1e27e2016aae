#include "planner/transfer/transfer_plan.h"

#include <algorithm>
#include <limits>
#include <map>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "planner/transfer/internal/slot_diff.h"

namespace craft::planner {
namespace {

using transfer_internal::CheckComparable;
using transfer_internal::PreviousLayer;
using transfer_internal::SlotChange;

absl::Status CheckBytesPerExpert(const Layout& next, int64_t bytes_per_expert) {
  if (bytes_per_expert <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("bytes_per_expert must be positive, got ", bytes_per_expert));
  }
  int64_t slots = 0;
  for (const LayerPlacement& layer : next.layers) slots += layer.num_slots();
  if (slots > 0 && bytes_per_expert > std::numeric_limits<int64_t>::max() / slots) {
    return absl::InvalidArgumentError(absl::StrCat("bytes_per_expert ", bytes_per_expert, " times ",
                                                   slots, " slots overflows int64"));
  }
  return absl::OkStatus();
}

// Builds a plan one transfer at a time, in the plan's order, tracking what
// every GPU has been given to send so that later choices spread the load.
class TransferPlanner {
 public:
  TransferPlanner(const ClusterShape& cluster, int64_t bytes_per_expert)
      : cluster_(cluster),
        bytes_per_expert_(bytes_per_expert),
        sent_(cluster.num_gpus, 0),
        received_(cluster.num_gpus, 0) {}

  void AddLayer(int layer, const LayerPlacement& previous, const LayerPlacement& next,
                int num_experts) {
    const PreviousLayer previous_layer(previous);
    const std::vector<std::vector<int>> holders = previous.LogicalToPhysical(num_experts);
    const std::vector<int> slot_gpu = previous.SlotGpus();
    int dst_slot = 0;
    for (int dst_gpu = 0; dst_gpu < cluster_.num_gpus; ++dst_gpu) {
      for (int index = 0; index < next.slots_per_gpu[dst_gpu]; ++index, ++dst_slot) {
        const int expert = next.phy2log[dst_slot];
        if (previous_layer.Classify(dst_gpu, index, expert) == SlotChange::kUnchanged) continue;
        const int src_slot = ChooseSource(holders[expert], slot_gpu, dst_gpu);
        const int src_gpu = slot_gpu[src_slot];
        Record({layer, expert, dst_gpu, dst_slot, src_gpu, src_slot,
                ClassifyLink(cluster_, src_gpu, dst_gpu)});
      }
    }
  }

  TransferPlan Finish() && {
    for (const auto& [link, bytes] : link_bytes_) {
      plan_.links.push_back({link.first, link.second, bytes});
    }
    plan_.max_bytes_sent_by_a_gpu = *std::max_element(sent_.begin(), sent_.end());
    plan_.max_bytes_received_by_a_gpu = *std::max_element(received_.begin(), received_.end());
    return std::move(plan_);
  }

 private:
  // The previous slot to copy from, among `holder_slots` (the expert's slots
  // in the previous layer, ascending): nearest link first, then the GPU with
  // the fewest bytes to send so far, then the lowest GPU and slot.
  int ChooseSource(const std::vector<int>& holder_slots, const std::vector<int>& slot_gpu,
                   int dst_gpu) const {
    auto preference = [&](int slot) {
      const int gpu = slot_gpu[slot];
      return std::make_tuple(ClassifyLink(cluster_, gpu, dst_gpu), sent_[gpu], gpu, slot);
    };
    return *std::min_element(holder_slots.begin(), holder_slots.end(),
                             [&](int a, int b) { return preference(a) < preference(b); });
  }

  void Record(const Transfer& transfer) {
    plan_.transfers.push_back(transfer);
    switch (transfer.kind) {
      case LinkKind::kLocal:
        plan_.bytes_local += bytes_per_expert_;
        return;  // no link involved
      case LinkKind::kIntraNode:
        plan_.bytes_intra_node += bytes_per_expert_;
        break;
      case LinkKind::kInterNode:
        plan_.bytes_inter_node += bytes_per_expert_;
        break;
    }
    sent_[transfer.src_gpu] += bytes_per_expert_;
    received_[transfer.dst_gpu] += bytes_per_expert_;
    link_bytes_[{transfer.src_gpu, transfer.dst_gpu}] += bytes_per_expert_;
  }

  const ClusterShape cluster_;
  const int64_t bytes_per_expert_;
  TransferPlan plan_;
  std::vector<int64_t> sent_;      // per GPU, over links
  std::vector<int64_t> received_;  // per GPU, over links
  std::map<std::pair<int, int>, int64_t> link_bytes_;
};

}  // namespace

LinkKind ClassifyLink(const ClusterShape& cluster, int src_gpu, int dst_gpu) {
  if (src_gpu == dst_gpu) return LinkKind::kLocal;
  return cluster.NodeOf(src_gpu) == cluster.NodeOf(dst_gpu) ? LinkKind::kIntraNode
                                                            : LinkKind::kInterNode;
}

absl::StatusOr<TransferPlan> BuildTransferPlan(const Layout& previous, const Layout& next,
                                               int64_t bytes_per_expert) {
  CRAFT_RETURN_IF_ERROR(CheckComparable(previous, next));
  CRAFT_RETURN_IF_ERROR(CheckBytesPerExpert(next, bytes_per_expert));
  TransferPlanner planner(next.cluster, bytes_per_expert);
  for (int l = 0; l < next.num_layers(); ++l) {
    planner.AddLayer(l, previous.layers[l], next.layers[l], next.num_experts);
  }
  return std::move(planner).Finish();
}

}  // namespace craft::planner
