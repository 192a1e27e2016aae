#include "planner/transfer/stabilize.h"

#include <algorithm>
#include <map>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/types/span.h"
#include "common/status_macros.h"
#include "planner/transfer/assignment.h"
#include "planner/transfer/internal/slot_diff.h"

namespace craft::planner {
namespace {

using transfer_internal::CheckComparable;
using transfer_internal::GpuExperts;
using transfer_internal::PreviousLayer;
using transfer_internal::SlotChange;

MoveStats MovesOf(SlotChange change) {
  MoveStats stats;
  if (change == SlotChange::kUnchanged) return stats;
  stats.slots_changed = 1;
  if (change == SlotChange::kRemoteLoad) {
    stats.remote_loads = 1;
  } else {
    stats.local_copies = 1;
  }
  return stats;
}

// The moves GPU `gpu` makes to hold `experts`, in this slot order.
MoveStats CountGpuMoves(const PreviousLayer& previous, int gpu, absl::Span<const int> experts) {
  MoveStats stats;
  for (int index = 0; index < static_cast<int>(experts.size()); ++index) {
    stats += MovesOf(previous.Classify(gpu, index, experts[index]));
  }
  return stats;
}

// Fewer remote loads first (they cross links), then fewer changed slots.
bool FewerMoves(const MoveStats& a, const MoveStats& b) {
  return std::tie(a.remote_loads, a.slots_changed) < std::tie(b.remote_loads, b.slots_changed);
}

bool NoMoreMoves(const MoveStats& a, const MoveStats& bound) {
  return a.remote_loads <= bound.remote_loads && a.slots_changed <= bound.slots_changed;
}

// Elements of the sorted multiset `bin` absent from the sorted set `held`.
int64_t CountMissing(const std::vector<int>& bin, const std::vector<int>& held) {
  int64_t missing = 0;
  for (int expert : bin) {
    if (!std::binary_search(held.begin(), held.end(), expert)) ++missing;
  }
  return missing;
}

// The size of the multiset intersection of two sorted vectors.
int64_t CountCommon(const std::vector<int>& a, const std::vector<int>& b) {
  int64_t common = 0;
  for (auto i = a.begin(), j = b.begin(); i != a.end() && j != b.end();) {
    if (*i < *j) {
      ++i;
    } else if (*j < *i) {
      ++j;
    } else {
      ++common, ++i, ++j;
    }
  }
  return common;
}

// Step (b): orders a GPU's bin (sorted) given the experts it held, in slot
// order. An expert that stays keeps its old index where that index still
// exists; the rest fill the free indices in ascending expert order.
//
// One pass over the old indices keeps the most slots: each old index wants one
// specific expert, so at most min(copies in the bin, old indices wanting it)
// indices can keep any expert, and the pass reaches that for every expert.
std::vector<int> OrderSlots(const std::vector<int>& bin, absl::Span<const int> old_experts) {
  constexpr int kFree = -1;
  const int n = static_cast<int>(bin.size());
  std::vector<int> slots(n, kFree);
  std::vector<bool> placed(n, false);
  const int kept_indices = std::min(n, static_cast<int>(old_experts.size()));
  for (int index = 0; index < kept_indices; ++index) {
    const int expert = old_experts[index];
    int k = static_cast<int>(std::lower_bound(bin.begin(), bin.end(), expert) - bin.begin());
    while (k < n && bin[k] == expert && placed[k]) ++k;
    if (k < n && bin[k] == expert) {
      slots[index] = expert;
      placed[k] = true;
    }
  }
  int k = 0;
  for (int& slot : slots) {
    if (slot != kFree) continue;
    while (placed[k]) ++k;
    slot = bin[k];
    placed[k] = true;
  }
  return slots;
}

// The GPUs of one layer with `slot_count` slots in the next layout: their bins
// are interchangeable without changing memory or load balance.
struct GpuGroup {
  int slot_count = 0;
  std::vector<int> gpus;  // ascending
};

std::vector<GpuGroup> GroupBySlotCount(const LayerPlacement& next) {
  std::map<int, std::vector<int>> gpus_by_count;
  for (int gpu = 0; gpu < static_cast<int>(next.slots_per_gpu.size()); ++gpu) {
    gpus_by_count[next.slots_per_gpu[gpu]].push_back(gpu);
  }
  std::vector<GpuGroup> groups;
  for (auto& [count, gpus] : gpus_by_count) groups.push_back({count, std::move(gpus)});
  return groups;
}

// A way to hand a group's bins to its GPUs: gpu_of_bin[b] indexes the group's
// GPUs; `moves` is what it costs once slots are ordered by OrderSlots.
struct Candidate {
  std::vector<int> gpu_of_bin;
  MoveStats moves;
};

// Relabels the bins of one group of GPUs (step a).
class GroupStabilizer {
 public:
  GroupStabilizer(const PreviousLayer& previous, const LayerPlacement& next, const GpuGroup& group)
      : previous_(previous), group_(group) {
    for (int gpu : group.gpus) {
      const absl::Span<const int> experts = GpuExperts(next, gpu);
      bins_.emplace_back(experts.begin(), experts.end());
      std::sort(bins_.back().begin(), bins_.back().end());
      baseline_ += CountGpuMoves(previous, gpu, experts);
    }
    PriceBins();
  }

  // Writes every group GPU's ordered slots into experts_of_gpu[gpu].
  absl::Status Apply(std::vector<std::vector<int>>& experts_of_gpu) const {
    CRAFT_ASSIGN_OR_RETURN(const Candidate chosen, Choose());
    for (int bin = 0; bin < size(); ++bin) {
      const int gpu = group_.gpus[chosen.gpu_of_bin[bin]];
      experts_of_gpu[gpu] = OrderSlots(bins_[bin], previous_.Experts(gpu));
    }
    return absl::OkStatus();
  }

 private:
  int size() const { return static_cast<int>(group_.gpus.size()); }

  // price_[b][j]: the moves of bin b on the group's GPU j after step (b).
  // Both numbers depend only on the bin and the GPU, not on slot order (remote
  // loads) or on the other bins (slots changed, by OrderSlots' optimality), so
  // a candidate's cost is exactly the sum of its prices.
  void PriceBins() {
    std::vector<std::vector<int>> kept_prefix;  // per GPU: its old experts at indices < slot_count
    for (int gpu : group_.gpus) {
      const absl::Span<const int> old = previous_.Experts(gpu);
      const size_t length = std::min(old.size(), static_cast<size_t>(group_.slot_count));
      kept_prefix.emplace_back(old.begin(), old.begin() + length);
      std::sort(kept_prefix.back().begin(), kept_prefix.back().end());
    }
    price_.assign(size(), std::vector<MoveStats>(size()));
    for (int b = 0; b < size(); ++b) {
      for (int j = 0; j < size(); ++j) {
        MoveStats& price = price_[b][j];
        price.remote_loads = CountMissing(bins_[b], previous_.Held(group_.gpus[j]));
        price.slots_changed = group_.slot_count - CountCommon(bins_[b], kept_prefix[j]);
        price.local_copies = price.slots_changed - price.remote_loads;
      }
    }
  }

  Candidate Priced(std::vector<int> gpu_of_bin) const {
    Candidate candidate{std::move(gpu_of_bin), {}};
    for (int b = 0; b < size(); ++b) candidate.moves += price_[b][candidate.gpu_of_bin[b]];
    return candidate;
  }

  // The min-cost assignment ordering the objectives lexicographically: a
  // weight above any possible sum of the minor objective makes one unit of
  // the major objective outweigh all of it.
  absl::StatusOr<Candidate> Optimal(bool remote_loads_first) const {
    const int64_t weight = static_cast<int64_t>(group_.slot_count) * size() + 1;
    std::vector<std::vector<int64_t>> cost(size(), std::vector<int64_t>(size()));
    for (int b = 0; b < size(); ++b) {
      for (int j = 0; j < size(); ++j) {
        const MoveStats& price = price_[b][j];
        cost[b][j] = remote_loads_first ? price.remote_loads * weight + price.slots_changed
                                        : price.slots_changed * weight + price.remote_loads;
      }
    }
    CRAFT_ASSIGN_OR_RETURN(std::vector<int> gpu_of_bin, SolveAssignment(cost));
    return Priced(std::move(gpu_of_bin));
  }

  // Picks the candidate with the fewest moves among those that move no more
  // than `next` itself, in both remote loads and slots changed.
  //
  // The identity labelling always qualifies: its remote loads equal next's
  // (remote loads do not depend on slot order) and its changed slots are at
  // most next's (OrderSlots keeps the most slots possible, and next's own order
  // is one possibility). So the guarantee holds whatever the assignments do.
  //
  // Why (a) is never worse than the identity in remote loads: a group's
  // remote loads are the sum of the prices of its bin -> GPU map (a GPU's
  // remote loads are the experts of its bin it did not hold, whatever their
  // order), and the identity is one such map. The remote-first assignment A
  // minimises cost = W * remote + changed with changed <= slot_count * size
  // < W. A map M with remote(M) <= remote(A) - 1 would cost at most
  // W * (remote(A) - 1) + W - 1 < W * remote(A) <= cost(A), contradicting
  // A's optimality; so remote(A) <= remote(identity) = remote(next).
  //
  // Slots changed can get worse, though: with old GPUs [A, B] and [C, A] and
  // one-slot bins {A} and {B}, swapping the bins saves the remote load of B
  // but turns one changed slot into two local copies. Hence the check against
  // `next`, and a second assignment, slots changed first, as a fallback.
  absl::StatusOr<Candidate> Choose() const {
    std::vector<int> identity(size());
    for (int b = 0; b < size(); ++b) identity[b] = b;
    Candidate best = Priced(std::move(identity));
    for (bool remote_loads_first : {true, false}) {
      CRAFT_ASSIGN_OR_RETURN(Candidate candidate, Optimal(remote_loads_first));
      if (NoMoreMoves(candidate.moves, baseline_) && FewerMoves(candidate.moves, best.moves)) {
        best = std::move(candidate);
      }
    }
    return best;
  }

  const PreviousLayer& previous_;
  const GpuGroup& group_;
  std::vector<std::vector<int>> bins_;  // per group GPU in next: its experts, sorted
  MoveStats baseline_;                  // the moves of next's own labelling and order
  std::vector<std::vector<MoveStats>> price_;
};

absl::StatusOr<LayerPlacement> StabilizeLayer(const LayerPlacement& previous,
                                              const LayerPlacement& next) {
  const PreviousLayer previous_layer(previous);
  std::vector<std::vector<int>> experts_of_gpu(next.slots_per_gpu.size());
  for (const GpuGroup& group : GroupBySlotCount(next)) {
    // GPUs without a slot in this layer hold nothing to relabel; with more
    // GPUs than experts they are most of the cluster, and an n x n
    // assignment over them would dominate a re-plan.
    if (group.slot_count == 0) continue;
    CRAFT_RETURN_IF_ERROR(GroupStabilizer(previous_layer, next, group).Apply(experts_of_gpu));
  }
  LayerPlacement stable;
  stable.slots_per_gpu = next.slots_per_gpu;
  for (const std::vector<int>& experts : experts_of_gpu) {
    stable.phy2log.insert(stable.phy2log.end(), experts.begin(), experts.end());
  }
  return stable;
}

}  // namespace

MoveStats& MoveStats::operator+=(const MoveStats& other) {
  slots_changed += other.slots_changed;
  remote_loads += other.remote_loads;
  local_copies += other.local_copies;
  return *this;
}

absl::StatusOr<MoveStats> CountMoves(const Layout& previous, const Layout& next) {
  CRAFT_RETURN_IF_ERROR(CheckComparable(previous, next));
  MoveStats stats;
  for (int l = 0; l < next.num_layers(); ++l) {
    const PreviousLayer previous_layer(previous.layers[l]);
    for (int gpu = 0; gpu < next.cluster.num_gpus; ++gpu) {
      stats += CountGpuMoves(previous_layer, gpu, GpuExperts(next.layers[l], gpu));
    }
  }
  return stats;
}

absl::StatusOr<Layout> Stabilize(const Layout& previous, const Layout& next) {
  CRAFT_RETURN_IF_ERROR(CheckComparable(previous, next));
  Layout stable = next;
  for (int l = 0; l < next.num_layers(); ++l) {
    CRAFT_ASSIGN_OR_RETURN(stable.layers[l], StabilizeLayer(previous.layers[l], next.layers[l]));
  }
  return stable;
}

}  // namespace craft::planner
