#include "tools/evaluate/named_values.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace craft::evaluate {
namespace {

void AddBalanceValues(const BalanceResult& balance, NamedValueList& values) {
  for (const BalancePoint& p : balance.points) {
    values.push_back(
        {absl::StrCat("bal.", p.workload, ".", p.gpus, ".", p.algorithm, ".", p.budget),
         Fixed(p.eval_balancedness, 3)});
  }
  for (const HeuristicObjective& o : balance.objectives) {
    const std::string key = absl::StrCat("objective.", o.workload, ".", o.gpus);
    values.push_back({key + ".budget", absl::StrCat(o.budget)});
    values.push_back({key + ".heuristic", Fixed(o.comparison.heuristic_gain, 3)});
    values.push_back({key + ".dp", Fixed(o.comparison.dp_gain, 3)});
  }
}

// CRAFT against global EPLB with the same memory (R = L): how far apart.
void AddEqualMemoryValues(const BalanceResult& balance, NamedValueList& values) {
  int cells = 0, craft_ahead = 0;
  double max_gap = 0;
  for (const BalancePoint& eplb : balance.points) {
    if (eplb.algorithm != kEplbGlobal || eplb.redundant_slots == 0) continue;
    const BalancePoint* craft = FindPoint(balance, eplb.workload, eplb.gpus, kCraft, eplb.budget);
    if (craft == nullptr) continue;
    ++cells;
    if (craft->eval_balancedness >= eplb.eval_balancedness) ++craft_ahead;
    max_gap = std::max(max_gap, std::abs(craft->eval_balancedness - eplb.eval_balancedness));
  }
  values.push_back({"equal_memory.cells", absl::StrCat(cells)});
  values.push_back({"equal_memory.craft_ahead", absl::StrCat(craft_ahead)});
  values.push_back({"equal_memory.max_gap", Fixed(max_gap, 3)});
}

void AddSavingValues(const std::vector<SavingRow>& rows, NamedValueList& values) {
  for (const SavingRow& row : rows) {
    const std::string key = absl::StrCat("saving.", row.baseline, ".", row.workload, ".", row.gpus);
    values.push_back({key + ".budget", row.craft_budget < 0 ? std::string("not reached")
                                                            : absl::StrCat(row.craft_budget)});
    values.push_back({key + ".factor", SavingFactor(row)});
  }
}

void AddThroughputValues(const ThroughputResult& result, NamedValueList& values) {
  for (const ThroughputRow& row : result.rows) {
    if (!row.fits) continue;
    const std::string key = absl::StrCat("thr.", row.workload, ".", row.gpu, ".", row.gpus);
    values.push_back({key + ".auto_budget", absl::StrCat(row.auto_budget)});
    values.push_back({key + ".auto", Fixed(row.automatic.relative_throughput, 3)});
    values.push_back({key + ".craft", Fixed(row.craft.relative_throughput, 3)});
    values.push_back({key + ".eplb", Fixed(row.eplb.relative_throughput, 3)});
    values.push_back({key + ".eplb_global", Fixed(row.eplb_global.relative_throughput, 3)});
    for (const auto& [suffix, baseline] :
         {std::make_pair(".craft_over_eplb", &row.eplb),
          std::make_pair(".craft_over_eplb_global", &row.eplb_global)}) {
      values.push_back(
          {key + suffix,
           baseline->relative_throughput > 0
               ? Fixed(row.craft.relative_throughput / baseline->relative_throughput, 3)
               : "n/a"});
    }
    values.push_back({key + ".eplb_kv_loss",
                      absl::StrFormat("%.0f%%", 100 * (1 - row.eplb.kv_tokens_per_gpu /
                                                               row.none.kv_tokens_per_gpu))});
  }
}

void AddReplanValues(const std::vector<ReplanRow>& rows, NamedValueList& values) {
  for (const ReplanMeans& m : SummariseReplans(rows)) {
    const std::string key =
        absl::StrCat("replan.", m.workload, ".", m.algorithm, ".", MethodKey(m.method, m.limit));
    values.push_back({key + ".moved_pct", Fixed(100 * m.moved_fraction, 1)});
    values.push_back({key + ".max_gb", Fixed(m.max_gb_into_gpu, 2)});
    values.push_back({key + ".bal_planned", Fixed(m.planned, 4)});
    values.push_back({key + ".bal_next", Fixed(m.next, 4)});
    values.push_back({key + ".kept_planned", absl::StrCat(Fixed(100 * m.kept_planned, 0), "%")});
    values.push_back({key + ".kept_next", absl::StrCat(Fixed(100 * m.kept_next, 0), "%")});
    values.push_back({key + ".bal_static", Fixed(m.static_next, 4)});
  }
}

void AddSpeedValues(const std::vector<SpeedRow>& rows, NamedValueList& values) {
  for (size_t i = 0; i < rows.size(); ++i) {
    const SpeedRow& row = rows[i];
    if (i == 0 || rows[i - 1].model != row.model) {
      values.push_back({absl::StrCat("speed.", row.model, ".windows"), absl::StrCat(row.windows)});
    }
    values.push_back({absl::StrCat("speed.", row.model, ".", row.key), Fixed(row.milliseconds, 0)});
  }
}

// Over the cells of one baseline and profile ("high", "low", "recorded"):
// how many, how many CRAFT never matches, how many it matches within the
// focus budget (the paper's R = 8 at full scale), and
// the range of budgets and savings where it matches.
void AddSavingRanges(const Results& results, int focus_budget, NamedValueList& values) {
  std::map<std::string, std::string> profile_of;
  for (const Workload& workload : results.workloads) profile_of[workload.key] = workload.profile;
  struct Range {
    int cells = 0, not_reached = 0, focus_matches = 0, min_budget = INT_MAX, max_budget = -1;
    double min_factor = 1e300, max_factor = 0;
  };
  std::map<std::string, Range> ranges;  // ordered: stable output
  for (const SavingRow& row : results.saving) {
    Range& range = ranges[absl::StrCat(row.baseline, ".", profile_of[row.workload])];
    ++range.cells;
    if (row.craft_budget < 0) {
      ++range.not_reached;
      continue;
    }
    if (row.craft_budget <= focus_budget) ++range.focus_matches;
    range.min_budget = std::min(range.min_budget, row.craft_budget);
    range.max_budget = std::max(range.max_budget, row.craft_budget);
    if (row.craft_budget == 0) continue;
    const double factor = static_cast<double>(row.baseline_budget) / row.craft_budget;
    range.min_factor = std::min(range.min_factor, factor);
    range.max_factor = std::max(range.max_factor, factor);
  }
  for (const auto& [name, range] : ranges) {
    const std::string key = "saving_range." + name;
    values.push_back({key + ".cells", absl::StrCat(range.cells)});
    values.push_back({key + ".not_reached", absl::StrCat(range.not_reached)});
    values.push_back({key + ".focus_matches", absl::StrCat(range.focus_matches)});
    if (range.max_budget < 0) continue;
    values.push_back({key + ".min_budget", absl::StrCat(range.min_budget)});
    values.push_back({key + ".max_budget", absl::StrCat(range.max_budget)});
    if (range.max_factor == 0) continue;
    values.push_back({key + ".min_factor", absl::StrFormat("%.1fx", range.min_factor)});
    values.push_back({key + ".max_factor", absl::StrFormat("%.1fx", range.max_factor)});
  }
}

// The heuristic against the DP at the heuristic's R, in measured balancedness.
void AddHeuristicSummary(const BalanceResult& balance, NamedValueList& values) {
  int cells = 0, dp_ahead = 0, min_budget = INT_MAX, max_budget = 0;
  double max_gain = 0, max_loss = 0;
  for (const HeuristicObjective& o : balance.objectives) {
    const BalancePoint* paper = FindPoint(balance, o.workload, o.gpus, kCraftPaper);
    const BalancePoint* dp = FindPoint(balance, o.workload, o.gpus, kCraft, o.budget);
    if (paper == nullptr || dp == nullptr) continue;
    ++cells;
    const double gain = dp->eval_balancedness - paper->eval_balancedness;
    if (gain >= 0) ++dp_ahead;
    max_gain = std::max(max_gain, gain);
    max_loss = std::max(max_loss, -gain);
    min_budget = std::min(min_budget, o.budget);
    max_budget = std::max(max_budget, o.budget);
  }
  values.push_back({"heuristic.cells", absl::StrCat(cells)});
  values.push_back({"heuristic.dp_ahead", absl::StrCat(dp_ahead)});
  values.push_back({"heuristic.max_dp_gain", Fixed(max_gain, 3)});
  values.push_back({"heuristic.max_dp_loss", Fixed(max_loss, 3)});
  values.push_back({"heuristic.min_budget", absl::StrCat(min_budget)});
  values.push_back({"heuristic.max_budget", absl::StrCat(max_budget)});
}

void AddBucketValues(const PerLayerResult& result, NamedValueList& values) {
  for (const SkewBucket& b : SkewBuckets(result)) {
    const std::string key = absl::StrCat("layers.", b.workload, ".", b.key);
    values.push_back({key + ".layers", absl::StrCat(b.layers)});
    values.push_back({key + ".craft", Fixed(b.craft_replicas, 1)});
    values.push_back({key + ".paper", Fixed(b.paper_replicas, 1)});
    values.push_back({key + ".replicated", absl::StrCat(b.replicated)});
    values.push_back({key + ".worse", absl::StrCat(b.worse_on_held_out)});
  }
}

void AddPackingValues(const std::vector<PackingRow>& rows, NamedValueList& values) {
  for (const PackingRow& row : rows) {
    const std::string key = absl::StrCat("packing.", row.workload, ".", row.nodes);
    values.push_back({key + ".craft", Fixed(row.craft_balancedness, 3)});
    values.push_back({key + ".eplb", Fixed(row.eplb_balancedness, 3)});
  }
}

}  // namespace

NamedValueList NamedValues(const ScaleConfig& config, const Results& results) {
  NamedValueList values = {
      {"windows", absl::StrCat(config.num_windows)},
      {"half_windows", absl::StrCat(config.num_windows / 2)},
      {"tokens_per_window", absl::StrCat(config.tokens_per_window)},
      {"drift", absl::StrFormat("%g", config.drift)},
      {"drift_periods", absl::StrCat(config.drift_periods)},
      {"period_windows", absl::StrCat(config.num_windows / config.drift_periods)},
      {"focus_budget", absl::StrCat(config.focus_budget)},
      {"focus_gpus", absl::StrCat(config.focus_gpus)},
      {"speed_windows", absl::StrCat(config.speed_windows)},
      {"speed_repeats", absl::StrCat(config.speed_repeats)},
  };
  AddBalanceValues(results.balance, values);
  AddSavingValues(results.saving, values);
  AddThroughputValues(results.throughput, values);
  AddReplanValues(results.replan, values);
  AddSpeedValues(results.speed, values);
  AddSavingRanges(results, config.focus_budget, values);
  AddEqualMemoryValues(results.balance, values);
  AddHeuristicSummary(results.balance, values);
  AddBucketValues(results.per_layer, values);
  AddPackingValues(results.packing, values);
  return values;
}

}  // namespace craft::evaluate
