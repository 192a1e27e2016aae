// craftctl plan --loads FILE --gpus D --algorithm NAME [...] [--out FILE]
#include <iostream>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "planner/io/layout_json.h"
#include "planner/replay.h"
#include "planner/transfer/stabilize.h"
#include "planner/transfer/transfer_plan.h"
#include "tools/craftctl/commands.h"
#include "tools/craftctl/common.h"

namespace craft::ctl {
namespace {

// Stabilises `layout` against the previous one and reports what moves.
absl::StatusOr<planner::Layout> StabilizeAndReport(const planner::Layout& previous,
                                                   const planner::Layout& layout,
                                                   double bytes_per_expert) {
  CRAFT_ASSIGN_OR_RETURN(planner::MoveStats raw, planner::CountMoves(previous, layout));
  CRAFT_ASSIGN_OR_RETURN(planner::Layout stable, planner::Stabilize(previous, layout));
  CRAFT_ASSIGN_OR_RETURN(planner::MoveStats moved, planner::CountMoves(previous, stable));
  CRAFT_ASSIGN_OR_RETURN(
      planner::TransferPlan transfers,
      planner::BuildTransferPlan(previous, stable, static_cast<int64_t>(bytes_per_expert)));
  std::cerr << absl::StrFormat(
      "vs previous: %d slots change without stabilisation, %d with (%d remote loads, %d local "
      "copies); %.2f GB cross-node, %.2f GB intra-node, max %.2f GB into one GPU\n",
      raw.slots_changed, moved.slots_changed, moved.remote_loads, moved.local_copies,
      transfers.bytes_inter_node / 1e9, transfers.bytes_intra_node / 1e9,
      transfers.max_bytes_received_by_a_gpu / 1e9);
  return stable;
}

}  // namespace

absl::Status RunPlan(const std::vector<std::string>& argv) {
  CRAFT_ASSIGN_OR_RETURN(Args args, Args::Parse(argv, PlanSwitches()));
  CRAFT_ASSIGN_OR_RETURN(std::string loads_path, args.String("loads"));
  CRAFT_ASSIGN_OR_RETURN(std::string algorithm_name, args.String("algorithm"));
  CRAFT_ASSIGN_OR_RETURN(planner::PlanOptions options, ReadPlanOptions(args));
  CRAFT_ASSIGN_OR_RETURN(options.algorithm, planner::ParseAlgorithm(algorithm_name));
  const std::string previous_path = args.StringOr("previous", "");
  const std::string format = args.StringOr("format", "craft");
  const std::string out = args.StringOr("out", "-");
  CRAFT_RETURN_IF_ERROR(args.CheckAllUsed());
  if (format != "craft" && format != "sglang") {
    return absl::InvalidArgumentError("--format must be craft or sglang, got '" + format + "'");
  }

  CRAFT_ASSIGN_OR_RETURN(planner::LoadTrace trace, LoadTraceFile(loads_path));
  CRAFT_ASSIGN_OR_RETURN(planner::PlanResult plan, planner::Plan(trace, options));
  if (!previous_path.empty()) {
    CRAFT_ASSIGN_OR_RETURN(planner::Layout previous, LoadLayoutFile(previous_path));
    CRAFT_ASSIGN_OR_RETURN(
        plan.layout, StabilizeAndReport(previous, plan.layout, options.memory.bytes_per_expert));
  }
  CRAFT_ASSIGN_OR_RETURN(planner::LayoutStats stats, planner::EvaluateLayout(plan.layout, trace));
  std::cerr << absl::StrFormat(
      "%s: %d redundant slots (R = %d per GPU), balancedness %.4f (worst layer %.4f)\n",
      algorithm_name, plan.layout.TotalRedundantSlots(), plan.budget, stats.mean_balancedness,
      stats.worst_balancedness);

  std::string text;
  if (format == "sglang") {
    CRAFT_ASSIGN_OR_RETURN(text, planner::LayoutToSglangJson(plan.layout));
  } else {
    nlohmann::json extra = {{"budget", plan.budget},
                            {"replicas_per_layer", plan.replicas_per_layer}};
    text = planner::LayoutToJson(plan.layout, algorithm_name, extra);
  }
  return WriteFile(out, text + "\n");
}

}  // namespace craft::ctl
