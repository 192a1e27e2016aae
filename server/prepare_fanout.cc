#include "server/prepare_fanout.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "wire/layout_delta.h"
#include "wire/layout_proto.h"

namespace craft::server {

absl::StatusOr<PrepareFanout> PrepareFanout::Create(Inputs inputs) {
  const int num_gpus = inputs.cluster.num_gpus;
  if (static_cast<int>(inputs.endpoints.size()) != num_gpus ||
      static_cast<int>(inputs.node_names.size()) != num_gpus) {
    return absl::InvalidArgumentError(
        absl::StrCat("endpoints and node names need one entry per GPU (", num_gpus, ")"));
  }
  PrepareFanout fanout;
  absl::StatusOr<craft::v1::LayoutDelta> delta =
      MakeLayoutDelta(*inputs.base, inputs.base_version, *inputs.target, inputs.version);
  if (!delta.ok()) return delta.status();
  fanout.full_ = LayoutToProto(*inputs.target, inputs.version);
  fanout.full_bytes_ = fanout.full_.ByteSizeLong();
  // A re-plan that rewrites most lists gains nothing from a delta; the full
  // layout is then no bigger and needs no base.
  if (delta->ByteSizeLong() < fanout.full_bytes_) fanout.delta_ = *std::move(delta);
  fanout.common_ = std::move(inputs.common);
  fanout.transfers_ = std::move(inputs.transfers);
  fanout.transfers_by_node_.resize(inputs.cluster.num_nodes);
  for (int i = 0; i < static_cast<int>(fanout.transfers_.size()); ++i) {
    const craft::v1::Transfer& t = fanout.transfers_[i];
    const int src = inputs.cluster.NodeOf(t.src_gpu()), dst = inputs.cluster.NodeOf(t.dst_gpu());
    fanout.transfers_by_node_[src].push_back(i);
    if (dst != src) fanout.transfers_by_node_[dst].push_back(i);
  }
  fanout.endpoints_ = std::move(inputs.endpoints);
  fanout.node_names_ = std::move(inputs.node_names);
  return fanout;
}

craft::v1::Prepare PrepareFanout::ForNode(int node, bool full_layout) const {
  craft::v1::Prepare prepare = common_;
  if (full_layout || !delta_.has_value()) {
    *prepare.mutable_layout() = full_;
  } else {
    *prepare.mutable_layout_delta() = *delta_;
  }
  std::vector<int> peers;  // the GPUs this node's transfers name, its own included
  if (node >= 0 && node < static_cast<int>(transfers_by_node_.size())) {
    const std::vector<int>& mine = transfers_by_node_[node];
    prepare.mutable_transfers()->Reserve(static_cast<int>(mine.size()));
    for (int i : mine) {
      const craft::v1::Transfer& t = transfers_[i];
      *prepare.add_transfers() = t;
      peers.push_back(t.src_gpu());
      peers.push_back(t.dst_gpu());
    }
  }
  std::sort(peers.begin(), peers.end());
  peers.erase(std::unique(peers.begin(), peers.end()), peers.end());
  for (int gpu : peers) {
    if (node_names_[gpu].empty()) continue;  // no connected node: no source either
    (*prepare.mutable_gpu_endpoints())[gpu] = endpoints_[gpu];
    (*prepare.mutable_gpu_nodes())[gpu] = node_names_[gpu];
  }
  return prepare;
}

int PrepareFanout::transfers_between_gpus() const {
  return static_cast<int>(
      std::count_if(transfers_.begin(), transfers_.end(),
                    [](const craft::v1::Transfer& t) { return t.src_gpu() != t.dst_gpu(); }));
}

}  // namespace craft::server
