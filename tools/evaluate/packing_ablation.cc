#include "tools/evaluate/packing_ablation.h"

#include <iostream>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "planner/craft/craft_planner.h"
#include "planner/eplb/eplb.h"
#include "planner/replay.h"
#include "tools/evaluate/measure.h"

namespace craft::evaluate {
namespace {

absl::StatusOr<double> EvalBalancedness(const planner::Layout& layout, const Workload& workload) {
  CRAFT_ASSIGN_OR_RETURN(planner::LayoutStats stats,
                         planner::EvaluateLayout(layout, workload.eval));
  return stats.mean_balancedness;
}

absl::StatusOr<PackingRow> Compare(const Workload& workload, const planner::ClusterShape& cluster) {
  PackingRow row;
  row.workload = workload.key;
  row.gpus = cluster.num_gpus;
  row.nodes = cluster.num_nodes;
  const std::vector<int> replicas(workload.num_layers(), cluster.num_gpus);
  CRAFT_ASSIGN_OR_RETURN(planner::Layout craft,
                         planner::BuildLayout(workload.plan, cluster, replicas, {}));
  CRAFT_ASSIGN_OR_RETURN(planner::Layout eplb,
                         planner::PlanEplb(workload.plan, workload.num_experts() + cluster.num_gpus,
                                           /*num_groups=*/1, cluster));
  CRAFT_ASSIGN_OR_RETURN(row.craft_balancedness, EvalBalancedness(craft, workload));
  CRAFT_ASSIGN_OR_RETURN(row.eplb_balancedness, EvalBalancedness(eplb, workload));
  return row;
}

}  // namespace

absl::StatusOr<std::vector<PackingRow>> RunPackingAblation(const ScaleConfig& config,
                                                           const std::vector<Workload>& workloads) {
  std::vector<PackingRow> rows;
  for (const Workload& workload : workloads) {
    if (workload.gpu_counts.empty()) continue;
    const planner::ClusterShape cluster = ClusterFor(FocusGpus(workload, config.focus_gpus));
    for (int nodes : {cluster.num_nodes, 1}) {
      CRAFT_ASSIGN_OR_RETURN(PackingRow row, Compare(workload, {cluster.num_gpus, nodes}));
      rows.push_back(row);
      if (cluster.num_nodes == 1) break;  // both rows would be the same
    }
    std::cerr << "  packing: " << workload.key << "\n";
  }
  return rows;
}

Table PackingTable(const std::vector<PackingRow>& rows) {
  Table table({"workload", "D", "nodes", "craft packing", "EPLB global", "difference"});
  for (const PackingRow& r : rows) {
    table.AddRow({r.workload, absl::StrCat(r.gpus), absl::StrCat(r.nodes),
                  Fixed(r.craft_balancedness, 4), Fixed(r.eplb_balancedness, 4),
                  Fixed(r.craft_balancedness - r.eplb_balancedness, 4)});
  }
  return table;
}

}  // namespace craft::evaluate
