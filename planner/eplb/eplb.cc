#include "planner/eplb/eplb.h"

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "common/status_macros.h"
#include "planner/replicate.h"

namespace craft::planner {
namespace {

// The sizes one layer is solved with, after the policy choice: the global
// policy is the hierarchical one with a single group on a single node.
struct EplbShape {
  int num_experts;
  int num_physical;
  int num_groups;
  int num_nodes;
  int num_gpus;

  int experts_per_node() const { return num_experts / num_nodes; }
  int physical_per_node() const { return num_physical / num_nodes; }
  int gpus_per_node() const { return num_gpus / num_nodes; }
  int physical_per_gpu() const { return num_physical / num_gpus; }
  int group_size() const { return num_experts / num_groups; }
  int groups_per_node() const { return num_groups / num_nodes; }
};

// An item to pack: `load` tokens spread over `count` replicas. Keeping the
// ratio unevaluated lets the heaviest-first sort compare items exactly.
struct Share {
  int64_t load;
  int64_t count;

  double value() const { return static_cast<double>(load) / static_cast<double>(count); }
};

// Where balanced packing put each item.
struct Packing {
  std::vector<int> pack;  // the pack of every item
  std::vector<int> rank;  // items already in that pack when it arrived
};

// One layer's answer, before log2phy is built (its width depends on all
// layers).
struct LayerResult {
  std::vector<int> phy2log;
  std::vector<int> phyrank;
  std::vector<int> logcnt;
};

absl::Status ValidateSizes(const LoadTrace& loads, int num_replicas, int num_groups, int num_nodes,
                           int num_gpus) {
  const std::pair<const char*, int> sizes[] = {{"num_replicas", num_replicas},
                                               {"num_groups", num_groups},
                                               {"num_nodes", num_nodes},
                                               {"num_gpus", num_gpus}};
  for (const auto& [name, value] : sizes) {
    if (value <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(name, " must be positive, got ", value));
    }
  }
  CRAFT_RETURN_IF_ERROR(loads.ValidateAggregate());
  const int num_experts = loads.num_experts();
  if (num_replicas < num_experts) {
    return absl::InvalidArgumentError(absl::StrCat("num_replicas (", num_replicas,
                                                   ") must be at least the number of experts (",
                                                   num_experts, ")"));
  }
  if (num_replicas % num_gpus != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_replicas (", num_replicas, ") must be a multiple of num_gpus (", num_gpus, ")"));
  }
  return absl::OkStatus();
}

// Upstream's policy choice plus the asserts of its hierarchical function,
// which only see the group and node counts that policy passes in. The even
// splits packing needs at every level (E / nodes experts per node, P / nodes
// slots per node, P / gpus slots per GPU) follow from these.
absl::StatusOr<EplbShape> ChooseShape(int num_experts, int num_replicas, int num_groups,
                                      int num_nodes, int num_gpus) {
  const bool hierarchical = num_groups % num_nodes == 0;
  EplbShape shape{num_experts, num_replicas, hierarchical ? num_groups : 1,
                  hierarchical ? num_nodes : 1, num_gpus};
  if (shape.num_experts % shape.num_groups != 0) {
    return absl::InvalidArgumentError(absl::StrCat("the number of experts (", num_experts,
                                                   ") must be a multiple of num_groups (",
                                                   num_groups, ") for the hierarchical policy"));
  }
  if (shape.num_gpus % shape.num_nodes != 0) {
    return absl::InvalidArgumentError(absl::StrCat("num_gpus (", num_gpus,
                                                   ") must be a multiple of num_nodes (", num_nodes,
                                                   ") for the hierarchical policy"));
  }
  return shape;
}

// Upstream's balanced_packing: `items` into `num_packs` packs of equal
// cardinality. Heaviest item first (lowest index on equal loads), each into
// the lightest pack with room (lowest pack on equal weights). Requires
// items.size() % num_packs == 0.
Packing BalancedPacking(absl::Span<const Share> items, int num_packs) {
  const int num_items = static_cast<int>(items.size());
  const int per_pack = num_items / num_packs;
  Packing out{std::vector<int>(num_items), std::vector<int>(num_items, 0)};
  if (per_pack == 1) {
    // Upstream skips sorting here, so item i stays in pack i.
    std::iota(out.pack.begin(), out.pack.end(), 0);
    return out;
  }
  std::vector<int> order(num_items);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&items](int a, int b) {
    return PerReplicaLoadGreater(items[a].load, items[a].count, items[b].load, items[b].count);
  });
  std::vector<double> pack_weight(num_packs, 0.0);
  std::vector<int> pack_size(num_packs, 0);
  for (int item : order) {
    int best = -1;
    for (int p = 0; p < num_packs; ++p) {
      if (pack_size[p] == per_pack) continue;
      if (best < 0 || pack_weight[p] < pack_weight[best]) best = p;
    }
    out.pack[item] = best;
    out.rank[item] = pack_size[best]++;
    pack_weight[best] += items[item].value();
  }
  return out;
}

std::vector<int> InversePermutation(absl::Span<const int> perm) {
  std::vector<int> inverse(perm.size());
  for (int i = 0; i < static_cast<int>(perm.size()); ++i) inverse[perm[i]] = i;
  return inverse;
}

// Step 1: packs whole groups onto nodes and returns log2mlog, the
// permutation that makes node n own "meta-logical" experts
// [n * E / nodes, (n + 1) * E / nodes), groups in rank order.
std::vector<int> GroupsToNodes(absl::Span<const int64_t> weight, const EplbShape& shape) {
  const int group_size = shape.group_size();
  std::vector<Share> groups(shape.num_groups, Share{0, 1});
  for (int e = 0; e < shape.num_experts; ++e) groups[e / group_size].load += weight[e];
  const Packing packing = BalancedPacking(groups, shape.num_nodes);
  std::vector<int> log2mlog(shape.num_experts);
  for (int e = 0; e < shape.num_experts; ++e) {
    const int g = e / group_size;
    const int slot_group = packing.pack[g] * shape.groups_per_node() + packing.rank[g];
    log2mlog[e] = slot_group * group_size + e % group_size;
  }
  return log2mlog;
}

// Steps 2 and 3 for node `node`: replicates its experts into its slots, packs
// the slots onto its GPUs and writes them into `out`. `mlog2log` maps
// meta-logical ids back to logical ones.
absl::Status PlaceNode(absl::Span<const int64_t> weight, absl::Span<const int> mlog2log,
                       const EplbShape& shape, int node, LayerResult& out) {
  const int first_mlog = node * shape.experts_per_node();
  const absl::Span<const int> node_experts = mlog2log.subspan(first_mlog, shape.experts_per_node());
  std::vector<int64_t> node_weight;
  node_weight.reserve(node_experts.size());
  for (int e : node_experts) node_weight.push_back(weight[e]);
  CRAFT_ASSIGN_OR_RETURN(const Replication rep,
                         ReplicateExperts(node_weight, shape.physical_per_node()));

  std::vector<Share> slot_loads;
  slot_loads.reserve(rep.phy2log.size());
  for (int m : rep.phy2log) slot_loads.push_back(Share{node_weight[m], rep.logcnt[m]});
  const Packing packing = BalancedPacking(slot_loads, shape.gpus_per_node());

  const int first_slot = node * shape.physical_per_node();
  for (int j = 0; j < static_cast<int>(rep.phy2log.size()); ++j) {
    const int slot = first_slot + packing.pack[j] * shape.physical_per_gpu() + packing.rank[j];
    out.phy2log[slot] = node_experts[rep.phy2log[j]];
    out.phyrank[slot] = rep.rank[j];
  }
  for (int m = 0; m < static_cast<int>(node_experts.size()); ++m) {
    out.logcnt[node_experts[m]] = rep.logcnt[m];
  }
  return absl::OkStatus();
}

absl::StatusOr<LayerResult> RebalanceLayer(absl::Span<const int64_t> weight,
                                           const EplbShape& shape) {
  const std::vector<int> mlog2log = InversePermutation(GroupsToNodes(weight, shape));
  LayerResult out{std::vector<int>(shape.num_physical), std::vector<int>(shape.num_physical),
                  std::vector<int>(shape.num_experts)};
  for (int node = 0; node < shape.num_nodes; ++node) {
    CRAFT_RETURN_IF_ERROR(PlaceNode(weight, mlog2log, shape, node, out));
  }
  return out;
}

// Upstream's scatter: log2phy[l][phy2log[p]][phyrank[p]] = p, all layers
// padded to the same width.
std::vector<std::vector<std::vector<int>>> BuildLog2Phy(const std::vector<LayerResult>& layers) {
  int max_count = 0;
  for (const LayerResult& layer : layers) {
    max_count = std::max(max_count, *std::max_element(layer.logcnt.begin(), layer.logcnt.end()));
  }
  std::vector<std::vector<std::vector<int>>> log2phy;
  log2phy.reserve(layers.size());
  for (const LayerResult& layer : layers) {
    std::vector<std::vector<int>> table(layer.logcnt.size(), std::vector<int>(max_count, -1));
    for (int p = 0; p < static_cast<int>(layer.phy2log.size()); ++p) {
      table[layer.phy2log[p]][layer.phyrank[p]] = p;
    }
    log2phy.push_back(std::move(table));
  }
  return log2phy;
}

}  // namespace

absl::StatusOr<EplbResult> RebalanceExperts(const LoadTrace& loads, int num_replicas,
                                            int num_groups, int num_nodes, int num_gpus) {
  CRAFT_RETURN_IF_ERROR(ValidateSizes(loads, num_replicas, num_groups, num_nodes, num_gpus));
  CRAFT_ASSIGN_OR_RETURN(const EplbShape shape, ChooseShape(loads.num_experts(), num_replicas,
                                                            num_groups, num_nodes, num_gpus));
  std::vector<LayerResult> layers;
  layers.reserve(loads.num_layers());
  for (int l = 0; l < loads.num_layers(); ++l) {
    CRAFT_ASSIGN_OR_RETURN(LayerResult layer, RebalanceLayer(loads.aggregate(l), shape));
    layers.push_back(std::move(layer));
  }
  EplbResult result;
  result.log2phy = BuildLog2Phy(layers);
  for (LayerResult& layer : layers) {
    result.phy2log.push_back(std::move(layer.phy2log));
    result.logcnt.push_back(std::move(layer.logcnt));
  }
  return result;
}

absl::StatusOr<Layout> PlanEplb(const LoadTrace& loads, int num_replicas, int num_groups,
                                const ClusterShape& cluster) {
  CRAFT_RETURN_IF_ERROR(cluster.Validate());
  CRAFT_ASSIGN_OR_RETURN(EplbResult eplb, RebalanceExperts(loads, num_replicas, num_groups,
                                                           cluster.num_nodes, cluster.num_gpus));
  Layout layout;
  layout.num_experts = loads.num_experts();
  layout.cluster = cluster;
  const std::vector<int> slots_per_gpu(cluster.num_gpus, num_replicas / cluster.num_gpus);
  for (std::vector<int>& phy2log : eplb.phy2log) {
    layout.layers.push_back(LayerPlacement{slots_per_gpu, std::move(phy2log)});
  }
  return layout;
}

}  // namespace craft::planner
