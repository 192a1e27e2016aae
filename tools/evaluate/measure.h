// What every experiment does with a workload: plan it with one algorithm,
// replay the layout on the planning and on the evaluation windows, and model
// the KV cache a layout leaves.
#ifndef CRAFT_TOOLS_EVALUATE_MEASURE_H_
#define CRAFT_TOOLS_EVALUATE_MEASURE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "planner/cluster.h"
#include "planner/layout.h"
#include "planner/plan.h"
#include "planner/replay.h"
#include "tools/evaluate/workloads.h"

namespace craft::evaluate {

// D GPUs on D / 8 nodes of 8 (one node below 8 GPUs).
planner::ClusterShape ClusterFor(int gpus);

// How EPLB groups experts: by node (its hierarchical policy, DeepSeek's
// configuration on 8 nodes) or as one group (its global policy).
enum class EplbPolicy { kHierarchical, kGlobal };

// Options for `algorithm` on D = `gpus`: EPLB with one redundant slot per GPU
// per layer and the hierarchical policy (num_groups = nodes); CRAFT's budget
// left unset (auto-R) for the caller to fill in.
planner::PlanOptions OptionsFor(planner::Algorithm algorithm, int gpus,
                                EplbPolicy policy = EplbPolicy::kHierarchical);

// One plan and its replays.
struct Measured {
  planner::PlanResult plan;
  planner::LayoutStats on_plan;  // replayed on the windows it was planned on
  planner::LayoutStats on_eval;  // replayed on the evaluation windows
};

absl::StatusOr<Measured> PlanAndMeasure(const Workload& workload,
                                        const planner::PlanOptions& options);

// The most expert slots any GPU of `layout` holds, over all layers.
int64_t MaxSlotsPerGpu(const planner::Layout& layout);

// KV-cache tokens a GPU holding `slots_per_gpu` expert slots has left: the
// memory model auto-R uses (planner/craft/craft_planner.h), never negative.
double KvTokensPerGpu(const planner::MemoryModel& memory, int64_t slots_per_gpu);

// The GPU count of `workload` closest to `target` from below (or its
// smallest when all are larger): where the single-D studies run.
int FocusGpus(const Workload& workload, int target);

}  // namespace craft::evaluate

#endif  // CRAFT_TOOLS_EVALUATE_MEASURE_H_
