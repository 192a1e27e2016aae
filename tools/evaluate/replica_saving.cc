#include "tools/evaluate/replica_saving.h"

#include <iostream>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace craft::evaluate {
namespace {

// CRAFT's measured points of one workload and D by budget, filled on demand.
class CraftPoints {
 public:
  CraftPoints(const Workload& workload, int gpus, const BalanceResult& balance)
      : workload_(workload), gpus_(gpus) {
    for (const BalancePoint& point : balance.points) {
      if (point.workload == workload.key && point.gpus == gpus && point.algorithm == kCraft) {
        known_[point.budget] = point.eval_balancedness;
      }
    }
  }

  // The grid the balance experiment measured, ascending.
  std::vector<int> Grid() const {
    std::vector<int> grid;
    for (const auto& [budget, balancedness] : known_) grid.push_back(budget);
    return grid;
  }

  absl::StatusOr<double> At(int budget) {
    auto it = known_.find(budget);
    if (it != known_.end()) return it->second;
    CRAFT_ASSIGN_OR_RETURN(BalancePoint point, MeasureCraft(workload_, gpus_, budget));
    known_[budget] = point.eval_balancedness;
    return point.eval_balancedness;
  }

 private:
  const Workload& workload_;
  int gpus_;
  std::map<int, double> known_;
};

absl::StatusOr<SavingRow> FindMatch(const Workload& workload, int gpus, const char* baseline,
                                    const BalanceResult& balance, CraftPoints& craft) {
  SavingRow row;
  row.workload = workload.key;
  row.gpus = gpus;
  row.baseline = baseline;
  row.baseline_budget = workload.num_layers();
  const BalancePoint* eplb = FindPoint(balance, workload.key, gpus, baseline, row.baseline_budget);
  if (eplb == nullptr) {
    return absl::InternalError(absl::StrCat("no ", baseline, " point for ", workload.key));
  }
  row.baseline_balancedness = eplb->eval_balancedness;
  int below = -1;  // the largest grid budget known to fall short
  for (int budget : craft.Grid()) {
    CRAFT_ASSIGN_OR_RETURN(double balancedness, craft.At(budget));
    if (balancedness < row.baseline_balancedness) {
      below = budget;
      continue;
    }
    for (int r = below + 1; r <= budget; ++r) {
      CRAFT_ASSIGN_OR_RETURN(double at_r, craft.At(r));
      if (at_r >= row.baseline_balancedness) {
        row.craft_budget = r;
        row.craft_balancedness = at_r;
        return row;
      }
    }
  }
  return row;
}

}  // namespace

absl::StatusOr<std::vector<SavingRow>> RunReplicaSaving(const std::vector<Workload>& workloads,
                                                        const BalanceResult& balance) {
  std::vector<SavingRow> rows;
  for (const Workload& workload : workloads) {
    for (int gpus : workload.gpu_counts) {
      CraftPoints craft(workload, gpus, balance);
      for (const char* baseline : {kEplb, kEplbGlobal}) {
        CRAFT_ASSIGN_OR_RETURN(SavingRow row, FindMatch(workload, gpus, baseline, balance, craft));
        rows.push_back(row);
      }
      std::cerr << "  saving: " << workload.key << " D=" << gpus << "\n";
    }
  }
  return rows;
}

std::string SavingFactor(const SavingRow& row) {
  if (row.craft_budget < 0) return "< 1x";
  if (row.craft_budget == 0) return "any R";
  return absl::StrFormat("%.2fx", static_cast<double>(row.baseline_budget) / row.craft_budget);
}

Table SavingTable(const std::vector<SavingRow>& rows) {
  Table table({"workload", "gpus", "baseline", "baseline_budget", "baseline_balancedness",
               "craft_budget", "craft_balancedness", "saving"});
  for (const SavingRow& row : rows) {
    const bool reached = row.craft_budget >= 0;
    table.AddRow({row.workload, absl::StrCat(row.gpus), row.baseline,
                  absl::StrCat(row.baseline_budget), Fixed(row.baseline_balancedness, 4),
                  absl::StrCat(row.craft_budget), reached ? Fixed(row.craft_balancedness, 4) : "",
                  reached && row.craft_budget > 0
                      ? Fixed(static_cast<double>(row.baseline_budget) / row.craft_budget, 3)
                      : ""});
  }
  return table;
}

Table SavingSummary(const std::vector<SavingRow>& rows) {
  Table table({"workload", "D", "EPLB R", "EPLB bal", "CRAFT R to match", "saving",
               "EPLB global bal", "CRAFT R to match global", "saving vs global"});
  for (size_t i = 0; i + 1 < rows.size(); i += 2) {
    const SavingRow& hier = rows[i];
    const SavingRow& global = rows[i + 1];
    auto budget = [](const SavingRow& row) {
      return row.craft_budget < 0 ? std::string("not reached") : absl::StrCat(row.craft_budget);
    };
    table.AddRow({hier.workload, absl::StrCat(hier.gpus), absl::StrCat(hier.baseline_budget),
                  Fixed(hier.baseline_balancedness, 3), budget(hier), SavingFactor(hier),
                  Fixed(global.baseline_balancedness, 3), budget(global), SavingFactor(global)});
  }
  return table;
}

}  // namespace craft::evaluate
