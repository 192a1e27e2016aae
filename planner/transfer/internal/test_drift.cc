#include "planner/transfer/internal/test_drift.h"

#include "common/check.h"
#include "planner/plan.h"
#include "planner/synth/synth.h"

namespace craft::planner::transfer_internal {
namespace {

// Test inputs that cannot be built are a broken test, not a result.
template <typename T>
T OrDie(absl::StatusOr<T> value) {
  CRAFT_CHECK(value.ok()) << "test drift: " << value.status();
  return *std::move(value);
}

}  // namespace

LoadTrace SynthTrace(int layers, int experts, uint64_t seed) {
  SynthOptions options;
  options.num_layers = layers;
  options.num_experts = experts;
  options.top_k = 2;
  options.num_windows = 24;
  options.tokens_per_window = 256;
  options.min_hot_ratio = 2;
  options.max_hot_ratio = experts / 2.0 - 1;
  options.seed = seed;
  return OrDie(SynthesizeTrace(options));
}

Drift MakeDrift(uint64_t seed, int layers, int experts, ClusterShape cluster, int budget) {
  PlanOptions options;
  options.cluster = cluster;
  options.budget = budget;
  PlanResult plan = OrDie(Plan(SynthTrace(layers, experts, seed), options));
  return {std::move(plan.layout), SynthTrace(layers, experts, seed + 1000)};
}

}  // namespace craft::planner::transfer_internal
