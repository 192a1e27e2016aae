// A check on craft's packing: every layer given exactly D redundant slots (the
// memory of EPLB with R = L), placed by craft's capacity-aware packing (which
// spreads an expert's replicas over nodes before it balances load) and by
// DeepSeek EPLB's global policy (which only balances load), with the GPUs on
// D / 8 nodes and, for contrast, on one node.
#ifndef CRAFT_TOOLS_EVALUATE_PACKING_ABLATION_H_
#define CRAFT_TOOLS_EVALUATE_PACKING_ABLATION_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tools/evaluate/scale.h"
#include "tools/evaluate/table.h"
#include "tools/evaluate/workloads.h"

namespace craft::evaluate {

struct PackingRow {
  std::string workload;
  int gpus = 0;
  int nodes = 0;
  double craft_balancedness = 0;  // craft's packing, r = D in every layer
  double eplb_balancedness = 0;   // EPLB global, r = D in every layer
};

// Every workload at FocusGpus(config.focus_gpus), on D / 8 nodes and on one.
absl::StatusOr<std::vector<PackingRow>> RunPackingAblation(const ScaleConfig& config,
                                                           const std::vector<Workload>& workloads);

Table PackingTable(const std::vector<PackingRow>& rows);

}  // namespace craft::evaluate

#endif  // CRAFT_TOOLS_EVALUATE_PACKING_ABLATION_H_
