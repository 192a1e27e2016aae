// Rounding a per-layer replica plan up to equal memory per GPU.
#ifndef CRAFT_PLANNER_CRAFT_ROUNDING_H_
#define CRAFT_PLANNER_CRAFT_ROUNDING_H_

#include <cstdint>
#include <vector>

namespace craft::planner {

// The artifact's round_final_alloc, generalised to uneven L x E: while the
// total is short of the next total that divides evenly over the GPUs (with
// `base_slots` = L x E one-per-expert slots), double the smallest allocation
// (first layer on ties; 0 becomes 1), adding only the remainder when doubling
// would overshoot. Returns the padded plan.
std::vector<int> RoundFinalAlloc(std::vector<int> replicas, int num_gpus, int64_t base_slots);
// Pure function; thread-safe.

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_CRAFT_ROUNDING_H_
