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

// Request fields: `layers` is the L x E aggregate (every row the same
// length, counts in [0, 2^40]); num_gpus 0 takes the configured cluster (and
// num_nodes 0 then the configured nodes, else 1); algorithm "" and budget -1
// take the configured ones. INVALID_ARGUMENT for anything else malformed or
// impossible to plan.
absl::StatusOr<craft::v1::PlanResponse> PlanDryRun(const craft::v1::PlanRequest& request,
                                                   const PlannerConfig& config);

}  // namespace craft::server

#endif  // CRAFT_SERVER_DRY_RUN_H_
