// Experiment 2: the replica saving. For every workload and D, the smallest
// budget R at which CRAFT's DP is at least as balanced (on the evaluation
// windows) as EPLB with one redundant slot per GPU per layer (R = L), and
// L / R: how many times fewer replicas CRAFT needs.
#ifndef CRAFT_TOOLS_EVALUATE_REPLICA_SAVING_H_
#define CRAFT_TOOLS_EVALUATE_REPLICA_SAVING_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tools/evaluate/balance_vs_budget.h"
#include "tools/evaluate/table.h"
#include "tools/evaluate/workloads.h"

namespace craft::evaluate {

struct SavingRow {
  std::string workload;
  int gpus = 0;
  std::string baseline;     // kEplb or kEplbGlobal
  int baseline_budget = 0;  // L
  double baseline_balancedness = 0;
  // The smallest R with CRAFT's balancedness >= the baseline's; -1 when even
  // the largest R measured falls short.
  int craft_budget = -1;
  double craft_balancedness = 0;  // at craft_budget
};

// Starts from the DP points of `balance` (which include R = L) and measures
// the integers between the last budget that falls short and the first that
// matches, so the answer is exact wherever balancedness rises with R.
absl::StatusOr<std::vector<SavingRow>> RunReplicaSaving(const std::vector<Workload>& workloads,
                                                        const BalanceResult& balance);

// "7.2x", "any R" (placement alone matches) or "< 1x" (not reached).
std::string SavingFactor(const SavingRow& row);

Table SavingTable(const std::vector<SavingRow>& rows);  // CSV
// Markdown; expects each cell's rows in RunReplicaSaving's order (EPLB, then
// EPLB global).
Table SavingSummary(const std::vector<SavingRow>& rows);

}  // namespace craft::evaluate

#endif  // CRAFT_TOOLS_EVALUATE_REPLICA_SAVING_H_
