#include "planner/craft/packing.h"

#include <algorithm>
#include <numeric>
#include <tuple>
#include <utility>

#include "absl/container/btree_set.h"
#include "absl/strings/str_cat.h"

namespace craft::planner {
namespace {

// Mutable state of one layer's packing.
//
// Free GPUs are kept ordered by the last three criteria (load, free slots,
// rank), so the common case, a free GPU on a node that holds no replica of the
// expert yet, is the first such GPU in that order: no scan of every GPU and no
// GPU x expert table, which at thousands of GPUs dominated planning.
class Packer {
 public:
  Packer(absl::Span<const int64_t> weight, const Replication& replication,
         const std::vector<int>& slots_per_gpu, const ClusterShape& cluster)
      : weight_(weight),
        replication_(replication),
        cluster_(cluster),
        free_(slots_per_gpu),
        load_(cluster.num_gpus, 0.0),
        gpu_begin_(cluster.num_gpus + 1, 0),
        slots_(replication.phy2log.size(), -1),
        node_copies_(cluster.num_nodes, 0) {
    for (int g = 0; g < cluster.num_gpus; ++g) gpu_begin_[g + 1] = gpu_begin_[g] + free_[g];
    for (int g = 0; g < cluster.num_gpus; ++g) {
      if (free_[g] > 0) free_order_.insert(OrderKey(g));
    }
  }

  // Places every physical expert; see PackLayer for the rules.
  absl::Status PlaceAll(bool forbid_duplicates) {
    int previous = -1;
    for (int e : HeaviestFirst()) {
      if (e != previous) gpus_of_expert_.clear();
      previous = e;
      int gpu = BestGpu(e, forbid_duplicates);
      if (gpu < 0) gpu = MakeRoomBySwap(e);
      if (gpu < 0) {
        return absl::FailedPreconditionError(
            absl::StrCat("cannot place ", replication_.logcnt[e], " replicas of expert ", e,
                         " without two on one GPU; allow duplicates or use fewer replicas"));
      }
      Put(gpu, e);
      gpus_of_expert_.push_back(gpu);
    }
    return absl::OkStatus();
  }

  // GPU-major phy2log; replicas inside a GPU in placement order.
  LayerPlacement Result(const std::vector<int>& slots_per_gpu) const {
    return LayerPlacement{slots_per_gpu, slots_};
  }

 private:
  // (load, -free slots, rank): criteria 3 to 5 of PackLayer.
  using Order = std::tuple<double, int, int>;

  Order OrderKey(int gpu) const { return {load_[gpu], -free_[gpu], gpu}; }
  double ReplicaLoad(int e) const {
    return static_cast<double>(weight_[e]) / replication_.logcnt[e];
  }
  // A GPU holds a few slots of a layer, so counting them beats a table.
  int Used(int gpu) const { return gpu_begin_[gpu + 1] - gpu_begin_[gpu] - free_[gpu]; }
  int CopiesOnGpu(int gpu, int e) const {
    return static_cast<int>(std::count(slots_.begin() + gpu_begin_[gpu],
                                       slots_.begin() + gpu_begin_[gpu] + Used(gpu), e));
  }

  // The expert of every replica, in placement order: decreasing per-replica
  // load, ties to the lower expert. An expert's replicas carry equal loads, so
  // they come one after another.
  std::vector<int> HeaviestFirst() const {
    const auto& cnt = replication_.logcnt;
    // A Replicator keeps the order; a replication made by hand is sorted here.
    const std::vector<int> experts = replication_.heaviest_first.size() == weight_.size()
                                         ? replication_.heaviest_first
                                         : HeaviestFirstOrder(weight_, cnt);
    std::vector<int> order;
    order.reserve(replication_.phy2log.size());
    for (int e : experts) order.insert(order.end(), cnt[e], e);
    return order;
  }

  // The free GPU with the least (copies of e on its node, copies of e on it,
  // load, -free slots, rank); -1 when none may take e.
  int BestGpu(int e, bool forbid_duplicates) {
    for (int g : gpus_of_expert_) ++node_copies_[cluster_.NodeOf(g)];
    int best = -1;
    std::pair<int, int> best_copies;
    for (const Order& key : free_order_) {
      const int g = std::get<2>(key);
      const int on_node = node_copies_[cluster_.NodeOf(g)];
      if (on_node == 0) {  // no copy on its node, so none on it: nothing beats it
        best = g;
        break;
      }
      const int on_gpu = CopiesOnGpu(g, e);
      if (forbid_duplicates && on_gpu > 0) continue;
      // Strictly fewer copies only: among equals the earlier in order wins.
      if (best < 0 || std::make_pair(on_node, on_gpu) < best_copies) {
        best = g;
        best_copies = {on_node, on_gpu};
      }
    }
    for (int g : gpus_of_expert_) node_copies_[cluster_.NodeOf(g)] = 0;
    return best;
  }

  // Finds a full GPU h without expert e holding some expert f that a GPU g
  // with a free slot lacks; moves f from h to g and returns h. -1 if none.
  int MakeRoomBySwap(int e) {
    for (int h = 0; h < cluster_.num_gpus; ++h) {
      if (CopiesOnGpu(h, e) > 0) continue;
      for (int i = 0; i < Used(h); ++i) {
        const int f = slots_[gpu_begin_[h] + i];
        for (int g = 0; g < cluster_.num_gpus; ++g) {
          if (free_[g] == 0 || CopiesOnGpu(g, f) > 0) continue;
          Take(h, i);
          Put(g, f);
          return h;
        }
      }
    }
    return -1;
  }

  void Put(int gpu, int e) {
    free_order_.erase(OrderKey(gpu));
    slots_[gpu_begin_[gpu] + Used(gpu)] = e;
    --free_[gpu];
    load_[gpu] += ReplicaLoad(e);
    if (free_[gpu] > 0) free_order_.insert(OrderKey(gpu));
  }

  void Take(int gpu, int index) {
    const auto first = slots_.begin() + gpu_begin_[gpu];
    const int e = first[index];
    if (free_[gpu] > 0) free_order_.erase(OrderKey(gpu));
    std::copy(first + index + 1, first + Used(gpu), first + index);
    ++free_[gpu];
    load_[gpu] -= ReplicaLoad(e);
    free_order_.insert(OrderKey(gpu));
  }

  absl::Span<const int64_t> weight_;
  const Replication& replication_;
  const ClusterShape& cluster_;
  std::vector<int> free_;
  std::vector<double> load_;
  absl::btree_set<Order> free_order_;  // GPUs with a free slot
  // Placed experts, GPU-major: GPU g's in slots_[gpu_begin_[g], + Used(g))
  // in placement order, so the finished array is the layer's phy2log.
  std::vector<int> gpu_begin_;
  std::vector<int> slots_;
  // The GPUs of the expert being placed, one entry per replica. Replicas of
  // one expert are placed one after another, and a swap only moves a replica
  // of an expert placed before, so no other expert's holders are needed.
  std::vector<int> gpus_of_expert_;
  std::vector<int> node_copies_;  // scratch of BestGpu, all zero between calls
};

}  // namespace

absl::StatusOr<LayerPlacement> PackLayer(absl::Span<const int64_t> weight,
                                         const Replication& replication,
                                         const std::vector<int>& slots_per_gpu,
                                         const ClusterShape& cluster,
                                         const PackingOptions& options) {
  if (static_cast<int>(slots_per_gpu.size()) != cluster.num_gpus) {
    return absl::InvalidArgumentError(absl::StrCat("slots_per_gpu has ", slots_per_gpu.size(),
                                                   " entries for ", cluster.num_gpus, " GPUs"));
  }
  const int64_t capacity = std::accumulate(slots_per_gpu.begin(), slots_per_gpu.end(), int64_t{0});
  if (capacity != static_cast<int64_t>(replication.phy2log.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat(capacity, " slots for ", replication.phy2log.size(), " physical experts"));
  }
  Packer packer(weight, replication, slots_per_gpu, cluster);
  if (absl::Status s = packer.PlaceAll(options.forbid_duplicates); !s.ok()) return s;
  return packer.Result(slots_per_gpu);
}

}  // namespace craft::planner
