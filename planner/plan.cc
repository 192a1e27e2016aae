#include "planner/plan.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clip.h"
#include "common/status_macros.h"
#include "planner/craft/craft_planner.h"
#include "planner/craft/paper_heuristic.h"
#include "planner/craft/uniform.h"
#include "planner/eplb/eplb.h"
#include "planner/replay.h"

namespace craft::planner {
namespace {

struct NamedAlgorithm {
  Algorithm algorithm;
  absl::string_view name;
};

constexpr NamedAlgorithm kAlgorithmNames[] = {
    {Algorithm::kNone, "none"},
    {Algorithm::kEplb, "eplb"},
    {Algorithm::kCraft, "craft"},
    {Algorithm::kCraftPaper, "craft-paper"},
};

absl::StatusOr<PlanResult> PlanPlacementOnly(const LoadTrace& trace, const PlanOptions& options) {
  PlanResult result;
  result.replicas_per_layer.assign(trace.num_layers(), 0);
  CRAFT_ASSIGN_OR_RETURN(result.layout,
                         BuildLayout(trace, options.cluster, result.replicas_per_layer,
                                     PackingOptions{options.forbid_duplicates}, options.threads));
  return result;
}

absl::StatusOr<PlanResult> PlanDeepSeekEplb(const LoadTrace& trace, const PlanOptions& options) {
  if (options.forbid_duplicates) {
    return absl::InvalidArgumentError(
        "eplb reproduces DeepSeek's algorithm exactly, which may put two replicas of an expert on "
        "one GPU; --no-duplicates applies to none, craft and craft-paper");
  }
  const int redundant = options.redundant_per_layer.value_or(options.cluster.num_gpus);
  if (redundant < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("redundant slots per layer must be >= 0, got ", redundant));
  }
  PlanResult result;
  CRAFT_ASSIGN_OR_RETURN(result.layout, PlanEplb(trace, trace.num_experts() + redundant,
                                                 options.num_groups, options.cluster));
  result.replicas_per_layer.assign(trace.num_layers(), redundant);
  result.budget = static_cast<int>(static_cast<int64_t>(redundant) * trace.num_layers() /
                                   options.cluster.num_gpus);
  return result;
}

}  // namespace

absl::StatusOr<Algorithm> ParseAlgorithm(absl::string_view name) {
  for (const NamedAlgorithm& entry : kAlgorithmNames) {
    if (entry.name == name) return entry.algorithm;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown algorithm '", Clip(name, 64),
                                                 "' (expected none, eplb, craft or craft-paper)"));
}

absl::StatusOr<CraftObjective> ParseObjective(absl::string_view name) {
  if (name == "balancedness") return CraftObjective::kBalancedness;
  if (name == "step-time") return CraftObjective::kStepTime;
  if (name == "roofline") return CraftObjective::kRoofline;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown objective '", Clip(name, 64), "' (expected balancedness, step-time or roofline)"));
}

absl::string_view AlgorithmName(Algorithm algorithm) {
  for (const NamedAlgorithm& entry : kAlgorithmNames) {
    if (entry.algorithm == algorithm) return entry.name;
  }
  return "unknown";
}

absl::StatusOr<PlanResult> Plan(const LoadTrace& trace, const PlanOptions& options) {
  CRAFT_RETURN_IF_ERROR(trace.Validate());
  CRAFT_RETURN_IF_ERROR(options.cluster.Validate());
  if (options.uniform && options.algorithm != Algorithm::kCraft &&
      options.algorithm != Algorithm::kEplb) {
    return absl::InvalidArgumentError(
        absl::StrCat("uniform layouts are planned by craft (eplb's always are), not ",
                     AlgorithmName(options.algorithm)));
  }
  if (options.objective == CraftObjective::kRoofline) {
    if (!options.roofline.has_value()) {
      return absl::InvalidArgumentError(
          "the roofline objective needs a calibration and a regime (tokens per GPU)");
    }
    CRAFT_RETURN_IF_ERROR(options.roofline->Validate());
  }
  switch (options.algorithm) {
    case Algorithm::kNone:
      return PlanPlacementOnly(trace, options);
    case Algorithm::kEplb:
      return PlanDeepSeekEplb(trace, options);
    case Algorithm::kCraft:
      return options.uniform ? PlanCraftUniform(trace, options) : PlanCraft(trace, options);
    case Algorithm::kCraftPaper:
      return PlanCraftPaper(trace, options);
  }
  return absl::InvalidArgumentError("unknown algorithm");
}

absl::StatusOr<double> ObjectiveStepTime(const Layout& layout, const LoadTrace& trace,
                                         const PlanOptions& options) {
  if (options.objective == CraftObjective::kRoofline && options.roofline.has_value()) {
    return options.roofline->StepUs(layout, trace);
  }
  CRAFT_ASSIGN_OR_RETURN(LayoutStats stats, EvaluateLayout(layout, trace));
  return stats.step_time;
}

}  // namespace craft::planner
