// Small deterministic skewed traces for the planner's tests.
#ifndef CRAFT_PLANNER_CRAFT_TEST_TRACES_H_
#define CRAFT_PLANNER_CRAFT_TEST_TRACES_H_

#include <cstdint>

#include "planner/load_trace.h"

namespace craft::planner::testing {

// A trace whose odd layers have one expert at `hot_ratio` x the mean and
// whose even layers are close to uniform; window counts vary around that.
LoadTrace SkewedTrace(int num_layers, int num_experts, int num_windows, uint64_t seed,
                      double hot_ratio = 12.0);

}  // namespace craft::planner::testing

#endif  // CRAFT_PLANNER_CRAFT_TEST_TRACES_H_
