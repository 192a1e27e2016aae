#include "server/dry_run.h"

#include <algorithm>
#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "planner/load_trace.h"
#include "planner/plan.h"
#include "planner/replay.h"
#include "server/load_store.h"
#include "wire/layout_proto.h"

namespace craft::server {
namespace {

absl::StatusOr<planner::LoadTrace> TraceFromRequest(const craft::v1::PlanRequest& request) {
  if (request.layers().empty() || request.layers(0).counts().empty()) {
    return absl::InvalidArgumentError("Plan needs an L x E load matrix with L, E >= 1");
  }
  const int num_layers = request.layers_size();
  const int num_experts = request.layers(0).counts_size();
  planner::LoadTrace trace(num_layers, num_experts);
  for (int l = 0; l < num_layers; ++l) {
    const auto& counts = request.layers(l).counts();
    if (counts.size() != num_experts) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer ", l, " has ", counts.size(), " counts, layer 0 has ", num_experts));
    }
    for (int e = 0; e < num_experts; ++e) {
      if (counts[e] < 0 || counts[e] > kMaxSlotCount) {
        return absl::InvalidArgumentError(
            absl::StrCat("layer ", l, " expert ", e, ": count ", counts[e], " outside [0, 2^40]"));
      }
    }
    std::copy(counts.begin(), counts.end(), trace.mutable_aggregate(l).begin());
  }
  return trace;
}

absl::StatusOr<planner::PlanOptions> OptionsFromRequest(const craft::v1::PlanRequest& request,
                                                        const PlannerConfig& config) {
  planner::PlanOptions options = config.plan;
  if (request.num_gpus() != 0) {
    if (request.num_gpus() < 0 || request.num_gpus() > kMaxGpus) {
      return absl::InvalidArgumentError(
          absl::StrCat("num_gpus ", request.num_gpus(), " outside [1, ", kMaxGpus, "]"));
    }
    options.cluster = {request.num_gpus(), request.num_nodes() != 0 ? request.num_nodes() : 1};
    // The configured candidates were checked against the configured cluster.
    options.candidates.clear();
  } else if (request.num_nodes() != 0) {
    options.cluster.num_nodes = request.num_nodes();
  }
  CRAFT_RETURN_IF_ERROR(options.cluster.Validate());
  if (!request.algorithm().empty()) {
    CRAFT_ASSIGN_OR_RETURN(options.algorithm, planner::ParseAlgorithm(request.algorithm()));
  }
  if (request.budget() < -1) {
    return absl::InvalidArgumentError(
        absl::StrCat("budget must be -1 (configured) or >= 0, got ", request.budget()));
  }
  if (request.budget() >= 0) options.budget = request.budget();
  return options;
}

// How many candidate replica counts a layer is tried with.
int64_t Candidates(const planner::PlanOptions& options) {
  if (!options.candidates.empty()) return static_cast<int64_t>(options.candidates.size());
  int64_t count = 2;  // 0 and 1, then 2, 4, ..., up to D
  for (int64_t r = 2; r <= options.cluster.num_gpus; r *= 2) ++count;
  return count;
}

}  // namespace

int64_t PlanWork(int64_t layers, int64_t experts, int64_t gpus, int64_t candidates) {
  // Each factor is below 2^20 (layers, experts and candidates) or 2^13
  // (GPUs): saturate instead of overflowing.
  const double work = static_cast<double>(layers) * static_cast<double>(experts) *
                      static_cast<double>(gpus) *
                      static_cast<double>(std::max<int64_t>(1, candidates));
  return work >= 9e18 ? std::numeric_limits<int64_t>::max() : static_cast<int64_t>(work);
}

int64_t DefaultMaxPlanWork(const PlannerConfig& config) {
  const int64_t own = PlanWork(config.model.num_layers, config.model.num_experts,
                               config.cluster.num_gpus, Candidates(config.plan));
  return std::max<int64_t>(int64_t{1} << 26, own > INT64_MAX / 2 ? INT64_MAX : 2 * own);
}

absl::StatusOr<craft::v1::PlanResponse> PlanDryRun(const craft::v1::PlanRequest& request,
                                                   const PlannerConfig& config, int64_t max_work) {
  CRAFT_ASSIGN_OR_RETURN(planner::PlanOptions options, OptionsFromRequest(request, config));
  if (!request.layers().empty()) {
    const int64_t work = PlanWork(request.layers_size(), request.layers(0).counts_size(),
                                  options.cluster.num_gpus, Candidates(options));
    if (work > max_work) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "a plan of ", request.layers_size(), " layers x ", request.layers(0).counts_size(),
          " experts on ", options.cluster.num_gpus, " GPUs costs ", work,
          " work units, over this planner's limit of ", max_work, " (limits.max_plan_work)"));
    }
  }
  CRAFT_ASSIGN_OR_RETURN(planner::LoadTrace trace, TraceFromRequest(request));
  CRAFT_ASSIGN_OR_RETURN(planner::PlanResult plan, planner::Plan(trace, options));
  CRAFT_ASSIGN_OR_RETURN(planner::LayoutStats stats, planner::EvaluateLayout(plan.layout, trace));
  craft::v1::PlanResponse response;
  *response.mutable_layout() = LayoutToProto(plan.layout, /*version=*/"");
  response.mutable_replicas_per_layer()->Add(plan.replicas_per_layer.begin(),
                                             plan.replicas_per_layer.end());
  response.set_predicted_balancedness(stats.mean_balancedness);
  return response;
}

}  // namespace craft::server
