// What craftctl's subcommands share: files, the plan flags, loading traces.
#ifndef CRAFT_TOOLS_CRAFTCTL_COMMON_H_
#define CRAFT_TOOLS_CRAFTCTL_COMMON_H_

#include <string>

#include "absl/status/statusor.h"
#include "planner/layout.h"
#include "planner/load_trace.h"
#include "planner/plan.h"
#include "tools/craftctl/args.h"

namespace craft::ctl {

absl::StatusOr<std::string> ReadFile(const std::string& path);
// Writes `text` to `path` ("-" = stdout) with WriteFileAtomically,
// so a reader never sees half a layout.
absl::Status WriteFile(const std::string& path, const std::string& text);

// Reads and validates a trace file (aggregate counts or craft's own format).
absl::StatusOr<planner::LoadTrace> LoadTraceFile(const std::string& path);
absl::StatusOr<planner::Layout> LoadLayoutFile(const std::string& path);

// The planning flags shared by `plan` and `eval`: --gpus, --nodes, --groups,
// --redundant-per-layer, --budget R|auto, --candidates, --objective,
// --no-duplicates and the memory model (--hbm-gb, --non-expert-gb,
// --expert-mb, --kv-bytes-per-token). The algorithm is left to the caller.
absl::StatusOr<planner::PlanOptions> ReadPlanOptions(Args& args);

// The switches (value-less flags) `plan` and `eval` accept.
const std::vector<std::string>& PlanSwitches();

}  // namespace craft::ctl

#endif  // CRAFT_TOOLS_CRAFTCTL_COMMON_H_
