// Layouts and Prepare messages shared by the worker's tests.
#ifndef CRAFT_GPU_WORKER_TEST_UTIL_H_
#define CRAFT_GPU_WORKER_TEST_UTIL_H_

#include <cstdint>
#include <map>
#include <string>

#include "craft/v1/agent.pb.h"
#include "gpu_worker/traffic.h"
#include "planner/layout.h"

namespace craft::gpu_worker::testing {

// 2 GPUs on 1 node, 2 layers of 4 experts: the initial layout, where GPU 0
// holds experts {0, 1} and GPU 1 holds {2, 3} in both layers.
planner::Layout InitialTwoGpuLayout();

// A next layout for InitialTwoGpuLayout() that exercises every kind of source:
//  layer 0, slots [3, 3]: GPU 0 {0 kept, 3 fetched, 2 fetched},
//                         GPU 1 {2 kept, 1 fetched, 0 fetched};
//  layer 1, slots [2, 2]: GPU 0 {1, 0} and GPU 1 {3, 2}: local copies.
planner::Layout NextTwoGpuLayout();

// A Prepare from `from` (serving version `from_version` on every GPU) to
// `to`, named `version`, with the transfers planner::BuildTransferPlan picks
// and the given transfer endpoints.
craft::v1::Prepare MakePrepare(const planner::Layout& from, const std::string& from_version,
                               const planner::Layout& to, const std::string& version,
                               const std::map<int, std::string>& endpoints,
                               int64_t bytes_per_expert);

// The tokens of the two-GPU layouts' model (2 layers of 4 experts): skewed
// synthetic popularity, seed 5.
TrafficGenerator TwoGpuTraffic(int tokens_per_window, int top_k);

}  // namespace craft::gpu_worker::testing

#endif  // CRAFT_GPU_WORKER_TEST_UTIL_H_
