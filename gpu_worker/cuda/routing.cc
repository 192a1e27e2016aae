#include "gpu_worker/cuda/routing.h"

#include "absl/strings/str_cat.h"

namespace craft::gpu {

absl::StatusOr<RoutingTable> RoutingTable::FromPhy2Log(absl::Span<const int> phy2log,
                                                       int num_experts) {
  if (num_experts <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("num_experts is ", num_experts));
  }
  RoutingTable table;
  table.replica_begin.assign(num_experts + 1, 0);
  for (size_t slot = 0; slot < phy2log.size(); ++slot) {
    const int expert = phy2log[slot];
    if (expert < 0 || expert >= num_experts) {
      return absl::InvalidArgumentError(
          absl::StrCat("phy2log[", slot, "] is ", expert, ", not in [0, ", num_experts, ")"));
    }
    ++table.replica_begin[expert + 1];
  }
  for (int e = 0; e < num_experts; ++e) {
    if (table.replica_begin[e + 1] == 0) {
      return absl::InvalidArgumentError(absl::StrCat("expert ", e, " has no replica"));
    }
    table.replica_begin[e + 1] += table.replica_begin[e];
  }
  // Counting sort keeps each expert's slots in slot order.
  table.replica_slots.resize(phy2log.size());
  std::vector<int32_t> next(table.replica_begin.begin(), table.replica_begin.end() - 1);
  for (size_t slot = 0; slot < phy2log.size(); ++slot) {
    table.replica_slots[next[phy2log[slot]]++] = static_cast<int32_t>(slot);
  }
  return table;
}

void CountReference(absl::Span<const int32_t> topk_ids, int top_k, int64_t window_id, int layer,
                    const RoutingTable& table, absl::Span<uint64_t> slot_counts, uint64_t* dropped,
                    absl::Span<int32_t> phy_ids) {
  for (size_t p = 0; p < topk_ids.size(); ++p) {
    const RouteKey key{window_id, layer, static_cast<int64_t>(p / top_k),
                       static_cast<int>(p % top_k)};
    const int32_t slot = RouteToSlot(topk_ids[p], key, table.num_experts(),
                                     table.replica_begin.data(), table.replica_slots.data());
    if (slot >= 0) {
      ++slot_counts[slot];
    } else {
      ++*dropped;
    }
    if (!phy_ids.empty()) phy_ids[p] = slot;
  }
}

}  // namespace craft::gpu
