// What the evaluation runs at each scale: model shapes, skew profiles, window
// counts and budgets. `full` is what docs/EVALUATION.md publishes; `small` is
// the same pipeline on tiny shapes, for CI.
#ifndef CRAFT_TOOLS_EVALUATE_SCALE_H_
#define CRAFT_TOOLS_EVALUATE_SCALE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "planner/plan.h"

namespace craft::evaluate {

enum class Scale { kSmall, kFull };

// "small" or "full"; INVALID_ARGUMENT otherwise.
absl::StatusOr<Scale> ParseScale(absl::string_view name);

// A synthetic model: the MoE shape and the cluster sizes it is evaluated on.
struct ModelShape {
  std::string key;   // short id used in workload names, e.g. "deepseek"
  std::string name;  // e.g. "DeepSeek-R1"
  int num_layers = 0;
  int num_experts = 0;
  int top_k = 0;
  std::vector<int> gpu_counts;  // D values; nodes = D / 8
  // Weights on every GPU besides the routed experts (attention, dense layers,
  // shared experts, embeddings in bf16, plus activations), for the KV model.
  double non_expert_bytes = 0;
};

// A skew profile for SynthesizeTrace.
struct SkewProfile {
  std::string key;  // "high" or "low"
  std::string description;
  double skewed_layer_fraction = 0;
  double min_hot_ratio = 1;
  double max_hot_ratio = 1;  // clamped to num_experts / top_k per model
};

// A recorded aggregate-count trace the evaluation reads when present.
struct RealTrace {
  std::string file;   // name inside --traces
  std::string key;    // workload name
  std::string model;  // what was recorded
  std::vector<int> gpu_counts;
};

// One GPU type's memory for the throughput model.
struct GpuMemory {
  std::string key;  // "h200", "a100"
  std::string name;
  double hbm_bytes = 0;
};

struct ScaleConfig {
  Scale scale = Scale::kFull;
  std::vector<ModelShape> models;
  std::vector<SkewProfile> profiles;
  std::vector<RealTrace> real_traces;
  std::vector<GpuMemory> gpus;
  int num_windows = 0;  // synthetic windows: the first half plans, the second half replays
  int tokens_per_window = 0;
  double drift = 0;  // per-window log-popularity random walk
  uint64_t seed = 1;
  // CRAFT budgets R swept in every cell; EPLB's R = L is added per model.
  std::vector<int> budgets;
  int focus_budget = 8;   // the paper's CRA8
  int focus_gpus = 64;    // D for the per-layer, throughput and drift studies
  int drift_periods = 8;  // consecutive re-plan periods over all windows
  int speed_windows = 0;  // windows in the planner-speed traces (the paper: 3000)
  int speed_repeats = 1;  // timings are the fastest of this many runs
  double bytes_per_expert = 3 * 7168.0 * 2048 * 2;  // bf16 DeepSeek/Kimi expert
  double kv_bytes_per_token = 70272;                // MLA: 576 x 61 layers x 2 B
};

ScaleConfig ConfigFor(Scale scale);

// Memory model of one GPU type for a model.
planner::MemoryModel MemoryFor(const ScaleConfig& config, const GpuMemory& gpu,
                               double non_expert_bytes);

}  // namespace craft::evaluate

#endif  // CRAFT_TOOLS_EVALUATE_SCALE_H_
