// The node's model shape: what every worker's hello must report and what
// every layout must fit. It comes from the agent's own configuration (the
// --num_layers/--num_experts/--top_k flags) or from the planner (the model in
// its Welcome, persisted in the state file so that a restarted agent knows it
// while the planner is away), never from a worker: one process declaring a
// wrong shape must not be able to lock the node's real workers out.
//
// Per field, a configured value (> 0) wins and the planner's fills the
// fields left at 0. A planner shape that contradicts a configured field is
// not adopted: the node keeps its configuration, says why (contradiction())
// and refuses that planner's layouts until a Welcome agrees again.
//
//   NodeModel model({/*num_layers=*/0, /*num_experts=*/0, /*top_k=*/0}, persisted.model);
//   model.shape();                           // nullopt: workers are refused UNAVAILABLE
//   model.AdoptPlannerShape(welcome.model());
//   model.shape();                           // the planner's
//
// Not thread-safe: ApplyRelay owns it; NodeState's lock guards it.
#ifndef CRAFT_AGENT_NODE_MODEL_H_
#define CRAFT_AGENT_NODE_MODEL_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "craft/v1/layout.pb.h"

namespace craft::agent {

// The model shape configured on the command line; 0 = not configured.
struct ModelCheck {
  int num_layers = 0;
  int num_experts = 0;
  int top_k = 0;
};

class NodeModel {
 public:
  // `persisted`: the planner's shape as the state file kept it (ignored,
  // with a warning, when it contradicts `configured`).
  NodeModel(ModelCheck configured, std::optional<craft::v1::ModelShape> persisted);

  // The shape workers and layouts are checked against; nullopt until the
  // layer and expert counts are known. A top_k or bytes_per_expert of 0 is
  // not checked.
  std::optional<craft::v1::ModelShape> shape() const;
  // What the configuration says, for AgentHello.model: zero fields are the
  // ones this agent learns from the planner.
  craft::v1::ModelShape configured() const;
  // The planner's shape last adopted (to persist); nullopt when none.
  const std::optional<craft::v1::ModelShape>& from_planner() const { return planner_; }

  // Takes the planner's shape, as its Welcome states it. INVALID_ARGUMENT
  // when it is malformed or contradicts the configuration: nothing is
  // adopted, and for a contradiction contradiction() says so until a
  // planner's shape agrees again.
  absl::Status AdoptPlannerShape(const craft::v1::ModelShape& planner);
  // Why the planner's layouts are refused; "" when they are not.
  const std::string& contradiction() const { return contradiction_; }

 private:
  const ModelCheck configured_;
  std::optional<craft::v1::ModelShape> planner_;
  std::string contradiction_;
};

// A worker's model against the node's `shape`: INVALID_ARGUMENT when it is
// malformed (non-positive counts, top_k outside [1, num_experts], negative
// bytes) or differs in a field `shape` sets (non-zero).
absl::Status CheckWorkerModel(const craft::v1::ModelShape& worker,
                              const craft::v1::ModelShape& shape);

}  // namespace craft::agent

#endif  // CRAFT_AGENT_NODE_MODEL_H_
