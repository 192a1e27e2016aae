#include "tools/craftctl/plan_options.h"

#include <optional>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "planner/cost/calibration.h"
#include "tools/craftctl/flags.h"

namespace craft::ctl {

absl::StatusOr<planner::PlanOptions> PlanOptionsFromFlags() {
  planner::PlanOptions options;
  const std::optional<int> gpus = absl::GetFlag(FLAGS_gpus);
  if (!gpus.has_value()) return absl::InvalidArgumentError("--gpus is required");
  options.cluster.num_gpus = *gpus;
  options.cluster.num_nodes = absl::GetFlag(FLAGS_nodes);
  CRAFT_RETURN_IF_ERROR(options.cluster.Validate());
  options.num_groups = absl::GetFlag(FLAGS_groups);
  options.redundant_per_layer = absl::GetFlag(FLAGS_redundant_per_layer);
  const std::string budget = absl::GetFlag(FLAGS_budget);
  if (budget != "auto") {
    int value = 0;
    if (!absl::SimpleAtoi(budget, &value) || value < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--budget needs a non-negative integer or 'auto', got '", budget, "'"));
    }
    options.budget = value;
  }
  options.candidates = absl::GetFlag(FLAGS_candidates).values;
  CRAFT_ASSIGN_OR_RETURN(options.objective,
                         planner::ParseObjective(absl::GetFlag(FLAGS_objective)));
  const std::string calibration = absl::GetFlag(FLAGS_calibration);
  CRAFT_ASSIGN_OR_RETURN(const std::optional<double> tokens_per_gpu,
                         FiniteFlag(FLAGS_tokens_per_gpu));
  const std::optional<int> top_k = absl::GetFlag(FLAGS_top_k);
  if (options.objective == planner::CraftObjective::kRoofline) {
    if (calibration.empty() || !tokens_per_gpu.has_value()) {
      return absl::InvalidArgumentError(
          "--objective roofline needs --calibration FILE and --tokens_per_gpu N");
    }
    CRAFT_ASSIGN_OR_RETURN(planner::Calibration loaded, planner::LoadCalibrationFile(calibration));
    planner::Regime regime;
    regime.tokens_per_gpu = *tokens_per_gpu;
    regime.top_k = top_k.value_or(regime.top_k);
    options.roofline.emplace(loaded.params, regime);
    CRAFT_RETURN_IF_ERROR(options.roofline->Validate());
  } else if (!calibration.empty() || tokens_per_gpu.has_value() || top_k.has_value()) {
    // They would change nothing: say so rather than plan as if they did.
    return absl::InvalidArgumentError(
        "--calibration, --tokens_per_gpu and --top_k need --objective roofline");
  }
  options.forbid_duplicates = absl::GetFlag(FLAGS_no_duplicates);
  options.uniform = absl::GetFlag(FLAGS_uniform);
  options.threads = absl::GetFlag(FLAGS_threads);
  if (options.threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--threads must be >= 0 (0: every core), got ", options.threads));
  }
  planner::MemoryModel& memory = options.memory;
  CRAFT_ASSIGN_OR_RETURN(const double hbm_gb, FiniteFlag(FLAGS_hbm_gb));
  CRAFT_ASSIGN_OR_RETURN(const double non_expert_gb, FiniteFlag(FLAGS_non_expert_gb));
  CRAFT_ASSIGN_OR_RETURN(const double expert_mb, FiniteFlag(FLAGS_expert_mb));
  CRAFT_ASSIGN_OR_RETURN(memory.kv_bytes_per_token, FiniteFlag(FLAGS_kv_bytes_per_token));
  memory.hbm_bytes = hbm_gb * 1e9;
  memory.non_expert_bytes = non_expert_gb * 1e9;
  memory.bytes_per_expert = expert_mb * 1e6;
  return options;
}

}  // namespace craft::ctl
