#include "planner/craft/test_traces.h"

#include <random>

namespace craft::planner::testing {

LoadTrace SkewedTrace(int num_layers, int num_experts, int num_windows, uint64_t seed,
                      double hot_ratio) {
  std::mt19937_64 rng(seed);
  LoadTrace trace(num_layers, num_experts, num_windows);
  for (int l = 0; l < num_layers; ++l) {
    const int hot = static_cast<int>(rng() % num_experts);
    for (int b = 0; b < num_windows; ++b) {
      auto row = trace.mutable_window(b, l);
      for (int e = 0; e < num_experts; ++e) {
        const int64_t base = 80 + static_cast<int64_t>(rng() % 41);  // 80..120
        row[e] = (l % 2 == 1 && e == hot) ? static_cast<int64_t>(base * hot_ratio) : base;
        if (rng() % 7 == 0) row[e] = 0;  // idle experts and ties happen
      }
    }
  }
  trace.SetAggregateFromWindows();
  return trace;
}

}  // namespace craft::planner::testing
