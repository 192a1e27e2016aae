// craftctl eval --loads FILE --gpus D [--algorithms none,eplb,craft,craft-paper]
//               [--holdout F] [--previous LAYOUT] [--layouts A,B] [--format table|csv|json]
//               [--max_moved_fraction F] [--max_moved_gb G] [--frontier_step S]
//
// With --previous the table gains the replicas each layout moves (Movement,
// planner/transfer/movement.h), as planned and stabilised, an `incremental`
// row (the incremental planner's point within the limit) and, below it, the
// incremental frontier.
#include <iostream>
#include <optional>

#include "absl/flags/flag.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "planner/replay.h"
#include "planner/transfer/incremental.h"
#include "planner/transfer/movement.h"
#include "planner/transfer/stabilize.h"
#include "tools/craftctl/commands.h"
#include "tools/craftctl/files.h"
#include "tools/craftctl/flags.h"
#include "tools/craftctl/frontier.h"
#include "tools/craftctl/plan_options.h"
#include "tools/craftctl/text_table.h"

namespace craft::ctl {
namespace {

struct Row {
  std::string name;
  double replicas_per_gpu = 0;  // redundant slots / D
  double replica_gb_per_gpu = 0;
  double balancedness = 0;
  double worst_layer = 0;
  double step_time = 0;                 // modelled, tokens
  std::optional<double> step_ms;        // --objective roofline: the modelled MoE step
  std::optional<int64_t> moved;         // Movement::moved_replicas vs --previous, as planned
  std::optional<int64_t> moved_stable;  // ... and stabilised
};

absl::StatusOr<Row> Measure(const std::string& name, const planner::Layout& layout,
                            const planner::LoadTrace& eval_trace,
                            const std::optional<planner::Layout>& previous,
                            const planner::PlanOptions& options) {
  const double bytes_per_expert = options.memory.bytes_per_expert;
  CRAFT_ASSIGN_OR_RETURN(planner::LayoutStats stats, planner::EvaluateLayout(layout, eval_trace));
  Row row;
  row.name = name;
  row.replicas_per_gpu =
      static_cast<double>(layout.TotalRedundantSlots()) / layout.cluster.num_gpus;
  row.replica_gb_per_gpu = row.replicas_per_gpu * bytes_per_expert / 1e9;
  row.balancedness = stats.mean_balancedness;
  row.worst_layer = stats.worst_balancedness;
  row.step_time = stats.step_time;
  if (options.roofline.has_value()) {
    CRAFT_ASSIGN_OR_RETURN(const double us, options.roofline->StepUs(layout, eval_trace));
    row.step_ms = us / 1000;
  }
  if (previous.has_value()) {
    const auto bytes = static_cast<int64_t>(bytes_per_expert);
    CRAFT_ASSIGN_OR_RETURN(planner::Movement raw, planner::CountMovement(*previous, layout, bytes));
    CRAFT_ASSIGN_OR_RETURN(planner::Layout stable, planner::Stabilize(*previous, layout));
    CRAFT_ASSIGN_OR_RETURN(planner::Movement moved,
                           planner::CountMovement(*previous, stable, bytes));
    row.moved = raw.moved_replicas;
    row.moved_stable = moved.moved_replicas;
  }
  return row;
}

std::string MovedCell(const std::optional<int64_t>& value) {
  return value.has_value() ? absl::StrCat(*value) : "-";
}

// One row's cells, in the column order of Columns(); `speedup` relative to
// the first row.
std::vector<std::string> Cells(const Row& row, double first_step_time) {
  return {row.name,
          absl::StrFormat("%.2f", row.replicas_per_gpu),
          absl::StrFormat("%.2f", row.replica_gb_per_gpu),
          absl::StrFormat("%.4f", row.balancedness),
          absl::StrFormat("%.4f", row.worst_layer),
          absl::StrFormat("%.0f", row.step_time),
          absl::StrFormat("%.3f", first_step_time / row.step_time),
          row.step_ms.has_value() ? absl::StrFormat("%.3f", *row.step_ms) : "-",
          MovedCell(row.moved),
          MovedCell(row.moved_stable)};
}

const std::vector<Column>& Columns() {
  static const std::vector<Column> kColumns = {
      {"algorithm", "algorithm", -14},
      {"repl/GPU", "replicas_per_gpu", 9},
      {"GB/GPU", "replica_gb_per_gpu", 10},
      {"balancedness", "balancedness", 12},
      {"worst layer", "worst_layer", 11},
      {"step (tokens)", "step_time", 13},
      {"speedup", "speedup_vs_first", 8},
      {"step (ms)", "modelled_step_ms", 10},
      {"moved", "moved", 8},
      {"stable", "moved_stabilized", 8},
  };
  return kColumns;
}

std::vector<std::vector<std::string>> AllCells(const std::vector<Row>& rows) {
  std::vector<std::vector<std::string>> cells;
  for (const Row& row : rows) cells.push_back(Cells(row, rows[0].step_time));
  return cells;
}

nlohmann::json FormatJson(const std::vector<Row>& rows) {
  nlohmann::json out = nlohmann::json::array();
  for (const Row& row : rows) {
    nlohmann::json item = {{"algorithm", row.name},
                           {"replicas_per_gpu", row.replicas_per_gpu},
                           {"replica_gb_per_gpu", row.replica_gb_per_gpu},
                           {"balancedness", row.balancedness},
                           {"worst_layer", row.worst_layer},
                           {"step_time", row.step_time},
                           {"speedup_vs_first", rows[0].step_time / row.step_time}};
    if (row.step_ms) item["modelled_step_ms"] = *row.step_ms;
    if (row.moved) item["moved"] = *row.moved;
    if (row.moved_stable) item["moved_stabilized"] = *row.moved_stable;
    out.push_back(item);
  }
  return out;
}

// The windows to plan on and the windows to replay: with --holdout F the last
// F of the windows are kept out of planning, as a deployment plans on the
// past and serves the future.
absl::StatusOr<std::pair<planner::LoadTrace, planner::LoadTrace>> SplitTrace(
    planner::LoadTrace trace, double holdout) {
  if (holdout == 0) return std::make_pair(trace, trace);
  if (holdout < 0 || holdout >= 1) {
    return absl::InvalidArgumentError("--holdout must be in [0, 1)");
  }
  const int windows = trace.num_windows();
  const int cut = static_cast<int>(windows * (1 - holdout));
  if (cut < 1 || cut >= windows) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--holdout %.2f leaves no windows on one side (the trace has %d)", holdout, windows));
  }
  return std::make_pair(trace.SliceWindows(0, cut), trace.SliceWindows(cut, windows));
}

}  // namespace

absl::Status RunEval() {
  const std::string loads_path = absl::GetFlag(FLAGS_loads);
  if (loads_path.empty()) return absl::InvalidArgumentError("--loads is required");
  CRAFT_ASSIGN_OR_RETURN(planner::PlanOptions options, PlanOptionsFromFlags());
  const std::vector<std::string> algorithms = ListFlag(FLAGS_algorithms);
  const std::vector<std::string> layout_paths = ListFlag(FLAGS_layouts);
  CRAFT_ASSIGN_OR_RETURN(const double holdout, FiniteFlag(FLAGS_holdout));
  const std::string previous_path = absl::GetFlag(FLAGS_previous);
  std::string format = absl::GetFlag(FLAGS_format);
  if (format.empty()) format = "table";
  CRAFT_ASSIGN_OR_RETURN(std::optional<planner::MoveLimit> limit, MoveLimitFromFlags());
  CRAFT_ASSIGN_OR_RETURN(const double frontier_step, FiniteFlag(FLAGS_frontier_step));
  if (limit.has_value() && previous_path.empty()) {
    return absl::InvalidArgumentError("--max_moved_fraction and --max_moved_gb need --previous");
  }
  if (format != "table" && format != "csv" && format != "json") {
    return absl::InvalidArgumentError("--format must be table, csv or json, got '" + format + "'");
  }

  CRAFT_ASSIGN_OR_RETURN(planner::LoadTrace trace, LoadTraceFile(loads_path));
  CRAFT_ASSIGN_OR_RETURN(auto split, SplitTrace(std::move(trace), holdout));
  const auto& [plan_trace, eval_trace] = split;
  std::optional<planner::Layout> previous;
  if (!previous_path.empty()) {
    CRAFT_ASSIGN_OR_RETURN(previous, LoadLayoutFile(previous_path));
  }
  std::vector<Row> rows;
  for (const std::string& name : algorithms) {
    planner::PlanOptions algorithm_options = options;
    CRAFT_ASSIGN_OR_RETURN(algorithm_options.algorithm, planner::ParseAlgorithm(name));
    const bool craft = algorithm_options.algorithm == planner::Algorithm::kCraft;
    // --uniform shapes craft's plan; the other algorithms are compared as they are.
    algorithm_options.uniform = options.uniform && craft;
    CRAFT_ASSIGN_OR_RETURN(planner::PlanResult plan, planner::Plan(plan_trace, algorithm_options));
    std::string label = name;
    if (craft) {
      label = options.uniform ? absl::StrCat(name, " uniform r=", plan.replicas_per_layer.front())
                              : absl::StrCat(name, " R=", plan.budget);
    }
    CRAFT_ASSIGN_OR_RETURN(Row row, Measure(label, plan.layout, eval_trace, previous, options));
    rows.push_back(row);
  }
  for (const std::string& path : layout_paths) {
    CRAFT_ASSIGN_OR_RETURN(planner::Layout layout, LoadLayoutFile(path));
    CRAFT_ASSIGN_OR_RETURN(Row row, Measure(path, layout, eval_trace, previous, options));
    rows.push_back(row);
  }
  std::optional<FrontierReport> frontier;
  if (previous.has_value()) {
    // The incremental planner from --previous on the planning windows; its
    // point within the limit is a row, its frontier a second table.
    CRAFT_ASSIGN_OR_RETURN(planner::IncrementalOptions incremental,
                           IncrementalOptionsFor(options, limit.value_or(planner::MoveLimit{})));
    CRAFT_ASSIGN_OR_RETURN(planner::IncrementalPlan plan,
                           planner::PlanIncremental(*previous, plan_trace, incremental));
    const int point = planner::PickFrontierPoint(plan, incremental.limit);
    CRAFT_ASSIGN_OR_RETURN(planner::Layout layout, planner::LayoutAtPoint(*previous, plan, point));
    const std::string label =
        incremental.uniform_redundant_per_layer.has_value()
            ? absl::StrCat("incremental uniform r=", *incremental.uniform_redundant_per_layer)
            : absl::StrCat("incremental R=", incremental.budget);
    CRAFT_ASSIGN_OR_RETURN(Row row, Measure(label, layout, eval_trace, previous, options));
    rows.push_back(row);
    CRAFT_ASSIGN_OR_RETURN(frontier, ReportFrontier(*previous, plan, eval_trace, frontier_step));
  }
  if (rows.empty()) return absl::InvalidArgumentError("nothing to evaluate");
  if (format == "json") {
    nlohmann::json out = FormatJson(rows);
    // With --previous: {"algorithms": [...], "frontier": [...]}.
    if (frontier.has_value()) out = {{"algorithms", out}, {"frontier", frontier->json}};
    std::cout << out.dump(2) << "\n";
    return absl::OkStatus();
  }
  const bool table = format == "table";
  std::cout << (table ? FormatTextTable(Columns(), AllCells(rows))
                      : FormatCsvTable(Columns(), AllCells(rows)));
  if (frontier.has_value()) {
    // A blank line separates the two tables in either format.
    std::cout << "\n"
              << (table ? "incremental frontier (moved vs --previous):\n" : "")
              << (table ? frontier->table : frontier->csv);
  }
  return absl::OkStatus();
}

}  // namespace craft::ctl
