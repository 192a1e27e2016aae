#include "wire/layout_proto.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace craft {

craft::v1::Layout LayoutToProto(const planner::Layout& layout, const std::string& version) {
  craft::v1::Layout proto;
  proto.set_version(version);
  proto.set_num_experts(layout.num_experts);
  proto.set_num_gpus(layout.cluster.num_gpus);
  proto.set_num_nodes(layout.cluster.num_nodes);
  for (const planner::LayerPlacement& layer : layout.layers) {
    craft::v1::LayerLayout* out = proto.add_layers();
    out->mutable_slots_per_gpu()->Add(layer.slots_per_gpu.begin(), layer.slots_per_gpu.end());
    out->mutable_phy2log()->Add(layer.phy2log.begin(), layer.phy2log.end());
  }
  return proto;
}

absl::StatusOr<planner::Layout> LayoutFromProto(const craft::v1::Layout& proto) {
  planner::Layout layout;
  layout.num_experts = proto.num_experts();
  layout.cluster = {proto.num_gpus(), proto.num_nodes()};
  for (const craft::v1::LayerLayout& layer : proto.layers()) {
    layout.layers.push_back({{layer.slots_per_gpu().begin(), layer.slots_per_gpu().end()},
                             {layer.phy2log().begin(), layer.phy2log().end()}});
  }
  if (absl::Status s = layout.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("layout ", proto.version(), " is invalid: ", s.message()));
  }
  return layout;
}

}  // namespace craft
