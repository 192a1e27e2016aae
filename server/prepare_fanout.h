// The Prepares of one apply (proto/README.md, "What a Prepare carries"),
// built so that each agent gets only what its node needs:
//
// - the new layout once per version, as a delta against the committed layout
//   every participant holds (wire/layout_delta.h), shared by all agents;
//   in full for a node that needs it (it refused a delta) or when the delta
//   would not be smaller;
// - the transfers whose source or destination GPU is on the node, bucketed
//   by node once, not filtered per agent;
// - the transfer endpoints and node names of the GPUs those transfers name,
//   not of every GPU of the cluster.
//
//   PrepareFanout::Inputs inputs = ...;
//   CRAFT_ASSIGN_OR_RETURN(PrepareFanout fanout, PrepareFanout::Create(std::move(inputs)));
//   *message.mutable_prepare() = fanout.ForNode(cluster.NodeOf(gpus[0]), needs_full);
//
// Immutable after Create; ForNode is thread-safe.
#ifndef CRAFT_SERVER_PREPARE_FANOUT_H_
#define CRAFT_SERVER_PREPARE_FANOUT_H_

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "craft/v1/agent.pb.h"
#include "planner/cluster.h"
#include "planner/layout.h"

namespace craft::server {

class PrepareFanout {
 public:
  struct Inputs {
    const planner::Layout* base = nullptr;  // the committed layout
    std::string base_version;
    const planner::Layout* target = nullptr;
    std::string version;
    planner::ClusterShape cluster;
    std::vector<craft::v1::Transfer> transfers;
    // Per GPU rank: its worker's transfer endpoint and its node's name; an
    // empty name is a GPU no connected node claims.
    std::vector<std::string> endpoints;
    std::vector<std::string> node_names;
    // The fields every node's Prepare carries alike (bytes_per_expert,
    // timeout_ms, transfer_group_id); no layout, transfers or endpoints.
    craft::v1::Prepare common;
  };

  // INVALID_ARGUMENT when the layouts' shapes differ or the per-GPU vectors
  // do not have one entry per GPU.
  static absl::StatusOr<PrepareFanout> Create(Inputs inputs);

  // The Prepare for cluster node `node` (its GPUs are node-major ranks),
  // carrying the full layout when `full_layout` or when no delta is sent.
  craft::v1::Prepare ForNode(int node, bool full_layout) const;

  // Whether ForNode(n, false) carries a delta (else the full layout).
  bool sends_delta() const { return delta_.has_value(); }
  size_t delta_bytes() const { return delta_.has_value() ? delta_->ByteSizeLong() : 0; }
  size_t full_layout_bytes() const { return full_bytes_; }
  int num_transfers() const { return static_cast<int>(transfers_.size()); }
  // Copies from one GPU to another (a copy within a GPU moves nothing).
  int transfers_between_gpus() const;

 private:
  PrepareFanout() = default;

  craft::v1::Prepare common_;
  craft::v1::Layout full_;
  size_t full_bytes_ = 0;
  std::optional<craft::v1::LayoutDelta> delta_;
  std::vector<craft::v1::Transfer> transfers_;
  std::vector<std::vector<int>> transfers_by_node_;  // indices into transfers_
  std::vector<std::string> endpoints_;
  std::vector<std::string> node_names_;
};

}  // namespace craft::server

#endif  // CRAFT_SERVER_PREPARE_FANOUT_H_
