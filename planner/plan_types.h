// The types of planner::Plan (planner/plan.h) without the algorithms: the
// options every algorithm reads and the result every one returns. The
// algorithms (planner/craft/) include this; plan.h includes it and them. So
// the types sit below both, and no header includes one that includes it back.
#ifndef CRAFT_PLANNER_PLAN_TYPES_H_
#define CRAFT_PLANNER_PLAN_TYPES_H_

#include <optional>
#include <vector>

#include "planner/cluster.h"
#include "planner/cost/roofline.h"
#include "planner/layout.h"

namespace craft::planner {

enum class Algorithm {
  kNone,        // placement only: one replica per expert, balanced packing
  kEplb,        // DeepSeek EPLB, the same redundant slots in every layer
  kCraft,       // CRAFT: per-layer replica counts by an exact knapsack DP
  kCraftPaper,  // the CRAFT paper's released threshold heuristic
};

// What the knapsack maximises.
enum class CraftObjective {
  kBalancedness,  // summed per-layer balancedness gain (the paper's)
  kStepTime,      // minus the modelled step time, sum_l max_g load
  kRoofline,      // minus the roofline model's step time in µs (planner/cost/roofline.h)
};

// Memory of one GPU, for auto-R's throughput model: replicas take memory the
// KV cache would otherwise use.
struct MemoryModel {
  double hbm_bytes = 141e9;                         // usable device memory per GPU
  double non_expert_bytes = 40e9;                   // attention, dense weights, activations
  double bytes_per_expert = 3 * 7168.0 * 2048 * 2;  // one expert's weights (bf16)
  double kv_bytes_per_token = 70272;                // KV cache per token per GPU
};

struct PlanOptions {
  Algorithm algorithm = Algorithm::kCraft;
  ClusterShape cluster;
  // EPLB: expert groups (hierarchical policy when groups % nodes == 0).
  int num_groups = 1;
  // EPLB: redundant slots in every layer; unset means D (the paper's EPLB).
  std::optional<int> redundant_per_layer;
  // CRAFT: redundant slots per GPU summed over layers (R). Unset means auto.
  std::optional<int> budget;
  // CRAFT: candidate replica counts per layer; empty means DefaultCandidates
  // (planner/craft/benefit.h): every count 0..D up to 128 GPUs.
  std::vector<int> candidates;
  CraftObjective objective = CraftObjective::kBalancedness;
  // kRoofline: the calibrated model and the regime it is evaluated at.
  std::optional<RooflineModel> roofline;
  // Never put two replicas of one expert on one GPU.
  bool forbid_duplicates = false;
  // CRAFT: the same slots on every GPU in every layer (E + redundant_per_layer
  // per layer, default D), for engines that need it (SGLang, vLLM): no
  // per-layer counts, craft's replication and packing (planner/craft/uniform.h).
  bool uniform = false;
  MemoryModel memory;
  // Threads for per-layer work (benefit curves, packing); 0 means every core.
  // Plans are identical whatever the count.
  int threads = 0;
};

// One layer's benefit curve: balancedness (and busiest-GPU load) replayed with
// each candidate replica count.
struct BenefitCurve {
  std::vector<int> replicas;         // candidate counts, ascending, starting at 0
  std::vector<double> balancedness;  // per candidate
  std::vector<double> max_gpu_load;  // per candidate
  std::vector<double> modelled_us;   // per candidate, kRoofline only: busiest GPU's µs
};

// One point of auto-R's sweep: the DP's plan at budget R, and the modelled
// throughput that trades its balance against the KV cache its replicas cost.
struct BudgetPoint {
  int budget = 0;                     // R
  int redundant_slots = 0;            // sum_l r_l actually used (<= R x D)
  double predicted_balancedness = 0;  // mean over layers, from the benefit curves
  double predicted_step_time = 0;     // sum_l busiest-GPU load, tokens
  double predicted_step_ms = 0;       // kRoofline only: the modelled MoE step, ms
  double kv_tokens_per_gpu = 0;       // KV cache left after weights and replicas
  double relative_throughput = 0;     // kv_tokens / step time (ms under kRoofline), normalised
                                      // to R = 0
};

struct PlanResult {
  Layout layout;
  std::vector<int> replicas_per_layer;    // r_l, redundant slots of each layer
  int budget = 0;                         // R: redundant slots per GPU
  std::vector<BenefitCurve> curves;       // CRAFT algorithms only
  std::vector<BudgetPoint> budget_sweep;  // auto-R only
  int uniform_layers_from_eplb = 0;       // uniform CRAFT: layers where EPLB's placement won
};

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_PLAN_TYPES_H_
