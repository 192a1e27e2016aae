// The planning flags `plan` and `eval` share, as the library's PlanOptions.
#ifndef CRAFT_TOOLS_CRAFTCTL_PLAN_OPTIONS_H_
#define CRAFT_TOOLS_CRAFTCTL_PLAN_OPTIONS_H_

#include "absl/status/statusor.h"
#include "planner/plan.h"

namespace craft::ctl {

// --gpus, --nodes, --groups, --redundant_per_layer, --budget R|auto,
// --candidates, --objective (with --calibration, --tokens_per_gpu and --top_k
// for roofline), --no_duplicates, --uniform, --threads and the memory model
// (--hbm_gb, --non_expert_gb, --expert_mb, --kv_bytes_per_token), checked. The
// algorithm is left to the caller.
absl::StatusOr<planner::PlanOptions> PlanOptionsFromFlags();

}  // namespace craft::ctl

#endif  // CRAFT_TOOLS_CRAFTCTL_PLAN_OPTIONS_H_
