#include "tools/craftctl/common.h"

#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/file_io.h"
#include "common/status_macros.h"
#include "planner/cost/calibration.h"
#include "planner/io/layout_json.h"
#include "planner/io/trace_json.h"

namespace craft::ctl {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (absl::IsDataLoss(text.status())) {
    return absl::DataLossError(absl::StrCat("error reading ", text.status().message()));
  }
  if (!text.ok()) return absl::NotFoundError(absl::StrCat("cannot open ", text.status().message()));
  return text;
}

absl::Status WriteFile(const std::string& path, const std::string& text) {
  if (path == "-") {
    std::cout << text;
    return std::cout ? absl::OkStatus() : absl::DataLossError("error writing stdout");
  }
  return WriteFileAtomically(path, text);
}

absl::StatusOr<planner::LoadTrace> LoadTraceFile(const std::string& path) {
  CRAFT_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  // torch.save writes a zip archive: most likely an SGLang recorder dump.
  if (absl::StartsWith(text, "PK\x03\x04") || absl::EndsWith(path, ".pt")) {
    return absl::InvalidArgumentError(absl::StrCat(
        path,
        " is a torch file, not a JSON trace; convert an SGLang expert-distribution dump "
        "first: python3 tools/sglang/dump_to_trace.py ",
        path, " --out trace.json [--layers SPEC]"));
  }
  auto trace = planner::ParseTraceJson(text);
  if (!trace.ok()) {
    return absl::Status(trace.status().code(), absl::StrCat(path, ": ", trace.status().message()));
  }
  return trace;
}

absl::StatusOr<planner::Layout> LoadLayoutFile(const std::string& path) {
  CRAFT_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  auto layout = planner::ParseLayoutJson(text);
  if (!layout.ok()) {
    return absl::Status(layout.status().code(),
                        absl::StrCat(path, ": ", layout.status().message()));
  }
  return layout;
}

const std::vector<std::string>& PlanSwitches() {
  static const std::vector<std::string> kSwitches = {"no-duplicates", "uniform"};
  return kSwitches;
}

absl::StatusOr<planner::PlanOptions> ReadPlanOptions(Args& args) {
  planner::PlanOptions options;
  CRAFT_ASSIGN_OR_RETURN(options.cluster.num_gpus, args.Int("gpus"));
  CRAFT_ASSIGN_OR_RETURN(options.cluster.num_nodes, args.IntOr("nodes", 1));
  CRAFT_RETURN_IF_ERROR(options.cluster.Validate());
  CRAFT_ASSIGN_OR_RETURN(options.num_groups, args.IntOr("groups", 1));
  if (args.Has("redundant-per-layer")) {
    CRAFT_ASSIGN_OR_RETURN(options.redundant_per_layer, args.Int("redundant-per-layer"));
  }
  const std::string budget = args.StringOr("budget", "8");
  if (budget != "auto") {
    int value = 0;
    if (!absl::SimpleAtoi(budget, &value) || value < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--budget needs a non-negative integer or 'auto', got '", budget, "'"));
    }
    options.budget = value;
  }
  CRAFT_ASSIGN_OR_RETURN(options.candidates, args.IntListOr("candidates", {}));
  CRAFT_ASSIGN_OR_RETURN(options.objective,
                         planner::ParseObjective(args.StringOr("objective", "balancedness")));
  if (options.objective == planner::CraftObjective::kRoofline) {
    if (!args.Has("calibration") || !args.Has("tokens-per-gpu")) {
      return absl::InvalidArgumentError(
          "--objective roofline needs --calibration FILE and --tokens-per-gpu N");
    }
    CRAFT_ASSIGN_OR_RETURN(planner::Calibration calibration,
                           planner::LoadCalibrationFile(args.StringOr("calibration", "")));
    planner::Regime regime;
    CRAFT_ASSIGN_OR_RETURN(regime.tokens_per_gpu, args.DoubleOr("tokens-per-gpu", 0));
    CRAFT_ASSIGN_OR_RETURN(regime.top_k, args.IntOr("top-k", regime.top_k));
    options.roofline.emplace(calibration.params, regime);
    CRAFT_RETURN_IF_ERROR(options.roofline->Validate());
  }
  options.forbid_duplicates = args.Switch("no-duplicates");
  options.uniform = args.Switch("uniform");
  CRAFT_ASSIGN_OR_RETURN(options.threads, args.IntOr("threads", 0));
  if (options.threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--threads must be >= 0 (0: every core), got ", options.threads));
  }
  planner::MemoryModel& memory = options.memory;
  CRAFT_ASSIGN_OR_RETURN(memory.hbm_bytes, args.DoubleOr("hbm-gb", memory.hbm_bytes / 1e9));
  CRAFT_ASSIGN_OR_RETURN(memory.non_expert_bytes,
                         args.DoubleOr("non-expert-gb", memory.non_expert_bytes / 1e9));
  CRAFT_ASSIGN_OR_RETURN(memory.bytes_per_expert,
                         args.DoubleOr("expert-mb", memory.bytes_per_expert / 1e6));
  CRAFT_ASSIGN_OR_RETURN(memory.kv_bytes_per_token,
                         args.DoubleOr("kv-bytes-per-token", memory.kv_bytes_per_token));
  memory.hbm_bytes *= 1e9;
  memory.non_expert_bytes *= 1e9;
  memory.bytes_per_expert *= 1e6;
  return options;
}

}  // namespace craft::ctl
