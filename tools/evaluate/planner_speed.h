// Experiment 6: planner speed per stage on the paper's shapes, with as many
// load windows as the paper profiles (3000 at full scale). The windows repeat
// a synthetic trace's windows cyclically: the planner's work depends on their
// number and shape, not on their values. Timed with std::chrono::steady_clock
// (the library itself reads no clock); each time is the fastest of
// config.speed_repeats runs on one core.
#ifndef CRAFT_TOOLS_EVALUATE_PLANNER_SPEED_H_
#define CRAFT_TOOLS_EVALUATE_PLANNER_SPEED_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tools/evaluate/scale.h"
#include "tools/evaluate/table.h"
#include "tools/evaluate/workloads.h"

namespace craft::evaluate {

struct SpeedRow {
  std::string model;
  int layers = 0;
  int experts = 0;
  int gpus = 0;
  int windows = 0;
  std::string key;    // short id, e.g. "curves"
  std::string stage;  // what was timed
  double milliseconds = 0;
};

// One shape per model of `config` at FocusGpus, from its first workload.
absl::StatusOr<std::vector<SpeedRow>> RunPlannerSpeed(const ScaleConfig& config,
                                                      const std::vector<Workload>& workloads);

Table SpeedTable(const std::vector<SpeedRow>& rows);
// Stages as rows, models as columns.
Table SpeedSummary(const std::vector<SpeedRow>& rows);

}  // namespace craft::evaluate

#endif  // CRAFT_TOOLS_EVALUATE_PLANNER_SPEED_H_
