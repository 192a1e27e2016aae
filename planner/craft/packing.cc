#include "planner/craft/packing.h"

#include <algorithm>
#include <numeric>
#include <tuple>

#include "absl/strings/str_cat.h"

namespace craft::planner {
namespace {

// Mutable state of one layer's packing.
class Packer {
 public:
  Packer(absl::Span<const int64_t> weight, const Replication& replication,
         const std::vector<int>& slots_per_gpu, const ClusterShape& cluster)
      : weight_(weight),
        replication_(replication),
        cluster_(cluster),
        free_(slots_per_gpu),
        load_(cluster.num_gpus, 0.0),
        on_gpu_(cluster.num_gpus),
        copies_on_gpu_(static_cast<size_t>(cluster.num_gpus) * weight.size(), 0),
        copies_on_node_(static_cast<size_t>(cluster.num_nodes) * weight.size(), 0) {}

  // Places every physical expert; see PackLayer for the rules.
  absl::Status PlaceAll(bool forbid_duplicates) {
    for (int p : HeaviestFirst()) {
      const int e = replication_.phy2log[p];
      int gpu = BestGpu(e, forbid_duplicates);
      if (gpu < 0) gpu = MakeRoomBySwap(e);
      if (gpu < 0) {
        return absl::FailedPreconditionError(
            absl::StrCat("cannot place ", replication_.logcnt[e], " replicas of expert ", e,
                         " without two on one GPU; allow duplicates or use fewer replicas"));
      }
      Put(gpu, e);
    }
    return absl::OkStatus();
  }

  // GPU-major phy2log; replicas inside a GPU in placement order.
  LayerPlacement Result(const std::vector<int>& slots_per_gpu) const {
    LayerPlacement placement{slots_per_gpu, {}};
    for (const std::vector<int>& experts : on_gpu_) {
      placement.phy2log.insert(placement.phy2log.end(), experts.begin(), experts.end());
    }
    return placement;
  }

 private:
  double ReplicaLoad(int e) const {
    return static_cast<double>(weight_[e]) / replication_.logcnt[e];
  }
  int& CopiesOnGpu(int gpu, int e) { return copies_on_gpu_[gpu * weight_.size() + e]; }
  int CopiesOnGpu(int gpu, int e) const { return copies_on_gpu_[gpu * weight_.size() + e]; }
  int& CopiesOnNode(int node, int e) { return copies_on_node_[node * weight_.size() + e]; }
  int CopiesOnNode(int node, int e) const { return copies_on_node_[node * weight_.size() + e]; }

  std::vector<int> HeaviestFirst() const {
    std::vector<int> order(replication_.phy2log.size());
    std::iota(order.begin(), order.end(), 0);
    const auto& log = replication_.phy2log;
    const auto& cnt = replication_.logcnt;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
      const int ea = log[a], eb = log[b];
      if (PerReplicaLoadGreater(weight_[ea], cnt[ea], weight_[eb], cnt[eb])) return true;
      if (PerReplicaLoadGreater(weight_[eb], cnt[eb], weight_[ea], cnt[ea])) return false;
      return std::make_pair(ea, replication_.rank[a]) < std::make_pair(eb, replication_.rank[b]);
    });
    return order;
  }

  int BestGpu(int e, bool forbid_duplicates) const {
    int best = -1;
    auto key = [&](int g) {
      return std::make_tuple(CopiesOnNode(cluster_.NodeOf(g), e), CopiesOnGpu(g, e), load_[g],
                             -free_[g], g);
    };
    for (int g = 0; g < cluster_.num_gpus; ++g) {
      if (free_[g] == 0 || (forbid_duplicates && CopiesOnGpu(g, e) > 0)) continue;
      if (best < 0 || key(g) < key(best)) best = g;
    }
    return best;
  }

  // Finds a full GPU h without expert e holding some expert f that a GPU g
  // with a free slot lacks; moves f from h to g and returns h. -1 if none.
  int MakeRoomBySwap(int e) {
    for (int h = 0; h < cluster_.num_gpus; ++h) {
      if (CopiesOnGpu(h, e) > 0) continue;
      for (size_t i = 0; i < on_gpu_[h].size(); ++i) {
        const int f = on_gpu_[h][i];
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
    on_gpu_[gpu].push_back(e);
    --free_[gpu];
    load_[gpu] += ReplicaLoad(e);
    ++CopiesOnGpu(gpu, e);
    ++CopiesOnNode(cluster_.NodeOf(gpu), e);
  }

  void Take(int gpu, size_t index) {
    const int e = on_gpu_[gpu][index];
    on_gpu_[gpu].erase(on_gpu_[gpu].begin() + index);
    ++free_[gpu];
    load_[gpu] -= ReplicaLoad(e);
    --CopiesOnGpu(gpu, e);
    --CopiesOnNode(cluster_.NodeOf(gpu), e);
  }

  absl::Span<const int64_t> weight_;
  const Replication& replication_;
  const ClusterShape& cluster_;
  std::vector<int> free_;
  std::vector<double> load_;
  std::vector<std::vector<int>> on_gpu_;
  std::vector<int> copies_on_gpu_;   // [gpu][expert]
  std::vector<int> copies_on_node_;  // [node][expert]
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
