// craftctl plan --loads FILE --gpus D --algorithm NAME [...] [--out FILE]
//              [--previous LAYOUT [--max_moved_fraction F] [--max_moved_gb G]]
//              [--format sglang [--num_hidden_layers N --moe_layers SPEC]]
//
// With --previous alone a fresh plan is stabilised against LAYOUT; with a
// movement limit too, the incremental planner starts from LAYOUT instead and
// the output is its frontier point within the limit.
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "planner/io/layout_json.h"
#include "planner/replay.h"
#include "planner/transfer/incremental.h"
#include "planner/transfer/movement.h"
#include "planner/transfer/stabilize.h"
#include "planner/transfer/transfer_plan.h"
#include "tools/craftctl/commands.h"
#include "tools/craftctl/files.h"
#include "tools/craftctl/flags.h"
#include "tools/craftctl/frontier.h"
#include "tools/craftctl/plan_options.h"

namespace craft::ctl {
namespace {

// Reports, on stderr, what applying `next` over `previous` moves: replicas
// (Movement) and the bytes of its transfer plan per link kind.
absl::Status ReportTransfers(const planner::Layout& previous, const planner::Layout& next,
                             double bytes_per_expert) {
  const auto bytes = static_cast<int64_t>(bytes_per_expert);
  CRAFT_ASSIGN_OR_RETURN(planner::Movement moved, planner::CountMovement(previous, next, bytes));
  CRAFT_ASSIGN_OR_RETURN(planner::TransferPlan transfers,
                         planner::BuildTransferPlan(previous, next, bytes));
  std::cerr << absl::StrFormat(
      "vs previous: %d of %d replicas moved (%.2f%% of slots), max %.2f GB into one GPU; "
      "%.2f GB cross-node, %.2f GB intra-node\n",
      moved.moved_replicas, moved.new_slots, 100 * moved.moved_fraction,
      moved.max_bytes_into_gpu / 1e9, transfers.bytes_inter_node / 1e9,
      transfers.bytes_intra_node / 1e9);
  return absl::OkStatus();
}

// Stabilises `layout` against the previous one and reports what moves.
absl::StatusOr<planner::Layout> StabilizeAndReport(const planner::Layout& previous,
                                                   const planner::Layout& layout,
                                                   double bytes_per_expert) {
  CRAFT_ASSIGN_OR_RETURN(planner::MoveStats raw, planner::CountMoves(previous, layout));
  CRAFT_ASSIGN_OR_RETURN(planner::Layout stable, planner::Stabilize(previous, layout));
  CRAFT_ASSIGN_OR_RETURN(planner::MoveStats moved, planner::CountMoves(previous, stable));
  CRAFT_RETURN_IF_ERROR(ReportTransfers(previous, stable, bytes_per_expert));
  std::cerr << absl::StrFormat(
      "  %d slots change without stabilisation, %d with (%d remote loads, %d local copies)\n",
      raw.slots_changed, moved.slots_changed, moved.remote_loads, moved.local_copies);
  return stable;
}

// The incremental planner's point within `limit`, from `previous`.
absl::StatusOr<planner::Layout> PlanIncrementally(const planner::Layout& previous,
                                                  const planner::LoadTrace& trace,
                                                  const planner::PlanOptions& options,
                                                  const planner::MoveLimit& limit) {
  CRAFT_ASSIGN_OR_RETURN(planner::IncrementalOptions incremental,
                         IncrementalOptionsFor(options, limit));
  CRAFT_ASSIGN_OR_RETURN(planner::IncrementalPlan plan,
                         planner::PlanIncremental(previous, trace, incremental));
  const int point = planner::PickFrontierPoint(plan, limit);
  std::cerr << absl::StrFormat(
      "incremental: frontier of %d points, point %d within the limit (%d moves); predicted "
      "balancedness %.4f -> %.4f\n",
      plan.frontier.size(), point, plan.frontier[point].num_moves,
      plan.frontier[0].predicted_balancedness, plan.frontier[point].predicted_balancedness);
  CRAFT_ASSIGN_OR_RETURN(planner::Layout layout, planner::LayoutAtPoint(previous, plan, point));
  CRAFT_RETURN_IF_ERROR(ReportTransfers(previous, layout, options.memory.bytes_per_expert));
  return layout;
}

// The model shape --format sglang writes rows for: --num_hidden_layers N and
// --moe_layers SPEC (both or neither; neither: every trace layer is MoE).
absl::StatusOr<planner::SglangModel> SglangModelFromFlags(const std::string& format) {
  planner::SglangModel model;
  const std::optional<int> rows = absl::GetFlag(FLAGS_num_hidden_layers);
  const std::string spec = absl::GetFlag(FLAGS_moe_layers);
  if ((rows.has_value() || !spec.empty()) && format != "sglang") {
    return absl::InvalidArgumentError("--num_hidden_layers and --moe_layers need --format sglang");
  }
  if (!spec.empty() && !rows.has_value()) {
    return absl::InvalidArgumentError(
        "--moe_layers needs --num_hidden_layers (the model's num_hidden_layers, dense layers "
        "included)");
  }
  if (!rows.has_value()) return model;
  model.num_hidden_layers = *rows;
  if (model.num_hidden_layers < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--num_hidden_layers must be positive, got ", model.num_hidden_layers));
  }
  if (!spec.empty()) {
    absl::StatusOr<std::vector<int>> layers =
        planner::ParseLayerSpec(spec, model.num_hidden_layers);
    if (!layers.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--moe_layers: ", layers.status().message()));
    }
    model.moe_layers = *std::move(layers);
  }
  return model;
}

// SGLang indexes its map by decoder layer: refuse, before planning, a trace
// that does not hold exactly the model's MoE layers.
absl::Status CheckSglangLayers(const planner::SglangModel& model, int trace_layers) {
  if (model.num_hidden_layers == 0) return absl::OkStatus();
  const int moe = model.moe_layers.empty() ? model.num_hidden_layers
                                           : static_cast<int>(model.moe_layers.size());
  if (trace_layers == moe) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "the trace has ", trace_layers, " layers but --num_hidden_layers ", model.num_hidden_layers,
      model.moe_layers.empty() ? " (every layer MoE)" : " --moe_layers", " names ", moe,
      " MoE layers; the trace must hold exactly the model's MoE layers, in order"));
}

}  // namespace

absl::Status RunPlan() {
  const std::string loads_path = absl::GetFlag(FLAGS_loads);
  if (loads_path.empty()) return absl::InvalidArgumentError("--loads is required");
  CRAFT_ASSIGN_OR_RETURN(std::optional<planner::MoveLimit> limit, MoveLimitFromFlags());
  // The incremental planner plans CRAFT layouts, so --algorithm may be left out.
  std::string algorithm_name = absl::GetFlag(FLAGS_algorithm);
  if (algorithm_name.empty()) {
    if (!limit.has_value()) return absl::InvalidArgumentError("--algorithm is required");
    algorithm_name = "craft";
  }
  CRAFT_ASSIGN_OR_RETURN(planner::PlanOptions options, PlanOptionsFromFlags());
  CRAFT_ASSIGN_OR_RETURN(options.algorithm, planner::ParseAlgorithm(algorithm_name));
  const std::string previous_path = absl::GetFlag(FLAGS_previous);
  if (limit.has_value() && previous_path.empty()) {
    return absl::InvalidArgumentError("--max_moved_fraction and --max_moved_gb need --previous");
  }
  if (limit.has_value() && options.algorithm != planner::Algorithm::kCraft) {
    return absl::InvalidArgumentError(
        "a movement limit plans incrementally, which needs --algorithm craft");
  }
  std::string format = absl::GetFlag(FLAGS_format);
  if (format.empty()) format = "craft";
  std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) out = "-";
  if (format != "craft" && format != "sglang") {
    return absl::InvalidArgumentError("--format must be craft or sglang, got '" + format + "'");
  }
  CRAFT_ASSIGN_OR_RETURN(planner::SglangModel sglang_model, SglangModelFromFlags(format));

  CRAFT_ASSIGN_OR_RETURN(planner::LoadTrace trace, LoadTraceFile(loads_path));
  CRAFT_RETURN_IF_ERROR(CheckSglangLayers(sglang_model, trace.num_layers()));
  planner::PlanResult plan;
  if (limit.has_value()) {
    CRAFT_ASSIGN_OR_RETURN(planner::Layout previous, LoadLayoutFile(previous_path));
    CRAFT_ASSIGN_OR_RETURN(plan.layout, PlanIncrementally(previous, trace, options, *limit));
    // R as the layout holds it: slots per GPU beyond the placement's own.
    const int64_t base = static_cast<int64_t>(trace.num_layers()) * trace.num_experts();
    const int gpus = plan.layout.cluster.num_gpus;
    plan.budget = plan.layout.SlotsOnGpu(0) - static_cast<int>((base + gpus - 1) / gpus);
    for (const planner::LayerPlacement& layer : plan.layout.layers) {
      plan.replicas_per_layer.push_back(layer.num_slots() - plan.layout.num_experts);
    }
  } else {
    CRAFT_ASSIGN_OR_RETURN(plan, planner::Plan(trace, options));
    if (!previous_path.empty()) {
      CRAFT_ASSIGN_OR_RETURN(planner::Layout previous, LoadLayoutFile(previous_path));
      CRAFT_ASSIGN_OR_RETURN(
          plan.layout, StabilizeAndReport(previous, plan.layout, options.memory.bytes_per_expert));
    }
  }
  CRAFT_ASSIGN_OR_RETURN(planner::LayoutStats stats, planner::EvaluateLayout(plan.layout, trace));
  std::cerr << absl::StrFormat(
      "%s: %d redundant slots (R = %d per GPU), balancedness %.4f (worst layer %.4f)\n",
      algorithm_name, plan.layout.TotalRedundantSlots(), plan.budget, stats.mean_balancedness,
      stats.worst_balancedness);
  if (options.roofline.has_value()) {
    CRAFT_ASSIGN_OR_RETURN(const double us, options.roofline->StepUs(plan.layout, trace));
    std::cerr << absl::StrFormat("%s: modelled MoE step %.3f ms at %g tokens per GPU (roofline)\n",
                                 algorithm_name, us / 1000,
                                 options.roofline->regime().tokens_per_gpu);
  }

  std::string text;
  if (format == "sglang") {
    CRAFT_ASSIGN_OR_RETURN(planner::SglangExport file,
                           planner::LayoutToSglang(plan.layout, sglang_model));
    text = std::move(file.json);
    std::cerr << absl::StrFormat(
        "sglang: start SGLang with --ep-num-redundant-experts %d --ep-size %d "
        "(map width %d = %d experts + %d redundant)\n",
        file.num_redundant_experts, file.ep_size,
        plan.layout.num_experts + file.num_redundant_experts, plan.layout.num_experts,
        file.num_redundant_experts);
  } else {
    nlohmann::json extra = {{"budget", plan.budget},
                            {"replicas_per_layer", plan.replicas_per_layer}};
    text = planner::LayoutToJson(plan.layout, algorithm_name, extra);
  }
  return WriteFile(out, text + "\n");
}

}  // namespace craft::ctl
