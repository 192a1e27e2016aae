// PlacementService.Plan: plan on loads a client supplies, without touching
// the cluster. A pure function of the request and the configuration, so it
// is unit-tested without gRPC and can run on the replan loop's thread.
//
//   absl::StatusOr<craft::v1::PlanResponse> response = PlanDryRun(request, config);
//
// Thread-safety: pure; safe to call concurrently.
#ifndef CRAFT_SERVER_DRY_RUN_H_
#define CRAFT_SERVER_DRY_RUN_H_

#include "absl/status/statusor.h"
#include "craft/v1/placement.pb.h"
#include "server/config.h"

namespace craft::server {

// What planning L layers x E experts on D GPUs with C candidate replica
// counts costs, in units of about 30 ns on one core: placement and replay
// grow with every (layer, expert, GPU) for every candidate. Measured: 1 x
// 20000 experts on 4096 GPUs, 14 candidates (1.1e9 units), 40 s.
int64_t PlanWork(int64_t layers, int64_t experts, int64_t gpus, int64_t candidates);

// The bound a dry run gets unless configured (limits.max_plan_work): twice
// the work of planning the configured cluster, which the planner does on
// every replan anyway, and at least 2^26 units (about 2 s).
int64_t DefaultMaxPlanWork(const PlannerConfig& config);

// Request fields: `layers` is the L x E aggregate (every row the same
// length, counts in [0, 2^40]); num_gpus 0 takes the configured cluster (and
// num_nodes 0 then the configured nodes, else 1); algorithm "" and budget -1
// take the configured ones. INVALID_ARGUMENT for anything else malformed or
// impossible to plan; RESOURCE_EXHAUSTED, before any planning, when its
// PlanWork exceeds `max_work`.
absl::StatusOr<craft::v1::PlanResponse> PlanDryRun(const craft::v1::PlanRequest& request,
                                                   const PlannerConfig& config, int64_t max_work);

}  // namespace craft::server

#endif  // CRAFT_SERVER_DRY_RUN_H_
