#include "tools/craftctl/frontier.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "planner/replay.h"
#include "tools/craftctl/flags.h"
#include "tools/craftctl/text_table.h"

namespace craft::ctl {

absl::StatusOr<std::optional<planner::MoveLimit>> MoveLimitFromFlags() {
  CRAFT_ASSIGN_OR_RETURN(const std::optional<double> fraction,
                         FiniteFlag(FLAGS_max_moved_fraction));
  CRAFT_ASSIGN_OR_RETURN(const std::optional<double> gb, FiniteFlag(FLAGS_max_moved_gb));
  if (!fraction.has_value() && !gb.has_value()) return std::nullopt;
  planner::MoveLimit limit;
  limit.max_moved_fraction = fraction.value_or(1.0);
  if (!(limit.max_moved_fraction >= 0 && limit.max_moved_fraction <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_moved_fraction must be in [0, 1], got ", limit.max_moved_fraction));
  }
  if (gb.has_value()) {
    if (!(*gb >= 0) || *gb > 1e9) {
      return absl::InvalidArgumentError(
          absl::StrCat("--max_moved_gb must be a non-negative number of GB, got ", *gb));
    }
    limit.max_bytes_into_gpu = static_cast<int64_t>(std::floor(*gb * 1e9));
  }
  CRAFT_RETURN_IF_ERROR(limit.Validate());
  return limit;
}

absl::StatusOr<planner::IncrementalOptions> IncrementalOptionsFor(
    const planner::PlanOptions& options, const planner::MoveLimit& limit) {
  planner::IncrementalOptions incremental;
  if (options.uniform) {
    // Checked against the layout by the planner: E + r must divide over D.
    incremental.uniform_redundant_per_layer =
        options.redundant_per_layer.value_or(options.cluster.num_gpus);
  } else if (!options.budget.has_value()) {
    return absl::InvalidArgumentError("the incremental planner needs a fixed --budget R, not auto");
  } else {
    incremental.budget = *options.budget;
  }
  incremental.bytes_per_expert = static_cast<int64_t>(options.memory.bytes_per_expert);
  incremental.limit = limit;
  incremental.threads = options.threads;
  return incremental;
}

namespace {

const std::vector<Column>& FrontierColumns() {
  static const std::vector<Column> kColumns = {
      {"point", "point", 6},
      {"moves", "moves", 6},
      {"moved", "moved_replicas", 7},
      {"moved %", "moved_fraction", 8},
      {"max GB/GPU", "max_gb_into_gpu", 10},
      {"balancedness", "predicted_balancedness", 12},
      {"step (tokens)", "predicted_step_time", 13},
      {"held-out bal.", "heldout_balancedness", 13},
      {"held-out step", "heldout_step_time", 13},
  };
  return kColumns;
}

}  // namespace

absl::StatusOr<FrontierReport> ReportFrontier(const planner::Layout& previous,
                                              const planner::IncrementalPlan& plan,
                                              const planner::LoadTrace& heldout, double step) {
  if (!(step > 0 && step <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--frontier-step must be in (0, 1], got ", step));
  }
  std::vector<int> points = {0};
  const int last = static_cast<int>(plan.frontier.size()) - 1;
  for (int k = 1; k * step <= 1 + 1e-9 && points.back() < last; ++k) {
    planner::MoveLimit limit;
    limit.max_moved_fraction = std::min(1.0, k * step);
    const int point = planner::PickFrontierPoint(plan, limit);
    if (point != points.back()) points.push_back(point);
  }
  if (points.back() != last) points.push_back(last);

  FrontierReport report;
  report.json = nlohmann::json::array();
  std::vector<std::vector<std::string>> rows;
  for (int i : points) {
    const planner::FrontierPoint& p = plan.frontier[i];
    CRAFT_ASSIGN_OR_RETURN(planner::Layout layout, planner::LayoutAtPoint(previous, plan, i));
    CRAFT_ASSIGN_OR_RETURN(planner::LayoutStats held, planner::EvaluateLayout(layout, heldout));
    rows.push_back({absl::StrCat(i), absl::StrCat(p.num_moves), absl::StrCat(p.moved_replicas),
                    absl::StrFormat("%.2f", 100 * p.moved_fraction),
                    absl::StrFormat("%.2f", p.max_bytes_into_gpu / 1e9),
                    absl::StrFormat("%.4f", p.predicted_balancedness),
                    absl::StrFormat("%.0f", p.predicted_step_time),
                    absl::StrFormat("%.4f", held.mean_balancedness),
                    absl::StrFormat("%.0f", held.step_time)});
    report.json.push_back({{"point", i},
                           {"moves", p.num_moves},
                           {"moved_replicas", p.moved_replicas},
                           {"moved_fraction", p.moved_fraction},
                           {"max_bytes_into_gpu", p.max_bytes_into_gpu},
                           {"predicted_balancedness", p.predicted_balancedness},
                           {"predicted_step_time", p.predicted_step_time},
                           {"heldout_balancedness", held.mean_balancedness},
                           {"heldout_step_time", held.step_time}});
  }
  report.table = FormatTextTable(FrontierColumns(), rows);
  report.csv = FormatCsvTable(FrontierColumns(), rows);
  return report;
}

}  // namespace craft::ctl
