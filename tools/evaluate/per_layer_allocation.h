// Experiment 3: where the replicas go. At one D and CRAFT's focus budget, each
// layer's skew next to the replica counts the DP, the paper's heuristic and
// EPLB give it, and the benefit curves the DP chose from.
#ifndef CRAFT_TOOLS_EVALUATE_PER_LAYER_ALLOCATION_H_
#define CRAFT_TOOLS_EVALUATE_PER_LAYER_ALLOCATION_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "planner/plan.h"
#include "tools/evaluate/scale.h"
#include "tools/evaluate/table.h"
#include "tools/evaluate/workloads.h"

namespace craft::evaluate {

struct LayerRow {
  std::string workload;
  int gpus = 0;
  int layer = 0;
  double hot_ratio = 0;  // hottest expert / mean, planning aggregate
  // Redundant slots in this layer and its balancedness on the evaluation
  // windows, per algorithm.
  double none_balancedness = 0;
  int craft_replicas = 0;
  double craft_balancedness = 0;
  int paper_replicas = 0;
  double paper_balancedness = 0;
  int eplb_replicas = 0;
  double eplb_balancedness = 0;
};

struct PerLayerResult {
  int budget = 0;  // CRAFT's R
  std::vector<LayerRow> layers;
  // The DP's benefit curves (planning windows), with the workload and D.
  struct Curve {
    std::string workload;
    int gpus = 0;
    int layer = 0;
    double hot_ratio = 0;
    planner::BenefitCurve curve;
  };
  std::vector<Curve> curves;
};

// Every workload at FocusGpus(config.focus_gpus).
absl::StatusOr<PerLayerResult> RunPerLayerAllocation(const ScaleConfig& config,
                                                     const std::vector<Workload>& workloads);

// Layers of one workload whose skew falls in one bucket.
struct SkewBucket {
  std::string workload;
  int gpus = 0;
  std::string key;    // "low" (< 3x), "mid" (3-10x) or "high" (>= 10x)
  std::string label;  // e.g. "< 3x"
  int layers = 0;
  double craft_replicas = 0;  // means over the bucket's layers
  double paper_replicas = 0;
  double eplb_replicas = 0;
  double none_balancedness = 0;
  double craft_balancedness = 0;
  int replicated = 0;         // layers CRAFT gives replicas
  int worse_on_held_out = 0;  // ... that end less balanced than placement only
};

// Per workload, its layers bucketed by skew (empty buckets left out).
std::vector<SkewBucket> SkewBuckets(const PerLayerResult& result);

Table LayerTable(const PerLayerResult& result);  // one row per layer
Table CurveTable(const PerLayerResult& result);  // one row per layer and candidate
// Per workload, layers bucketed by skew: how many, and the mean replicas each
// algorithm gives them.
Table LayerSummary(const PerLayerResult& result);

}  // namespace craft::evaluate

#endif  // CRAFT_TOOLS_EVALUATE_PER_LAYER_ALLOCATION_H_
