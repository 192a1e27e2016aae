// Test support for //planner/transfer: a committed layout planned on one
// synthetic load, and a drifted load to re-plan it on. Not part of the API.
#ifndef CRAFT_PLANNER_TRANSFER_INTERNAL_TEST_DRIFT_H_
#define CRAFT_PLANNER_TRANSFER_INTERNAL_TEST_DRIFT_H_

#include <cstdint>

#include "planner/cluster.h"
#include "planner/layout.h"
#include "planner/load_trace.h"

namespace craft::planner::transfer_internal {

// 24 windows of 256 tokens, top-2, hot experts (2x to experts/2 - 1 x the
// mean load) chosen by `seed`.
LoadTrace SynthTrace(int layers, int experts, uint64_t seed);

struct Drift {
  Layout committed;   // CRAFT with `budget`, planned on SynthTrace(seed)
  LoadTrace drifted;  // SynthTrace(seed + 1000): other hot experts
};
Drift MakeDrift(uint64_t seed, int layers, int experts, ClusterShape cluster, int budget);

}  // namespace craft::planner::transfer_internal

#endif  // CRAFT_PLANNER_TRANSFER_INTERNAL_TEST_DRIFT_H_
