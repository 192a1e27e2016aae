#include "wire/layout_delta.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/fnv1a.h"
#include "common/status_macros.h"

namespace craft {
namespace {

// Little-endian on every host, so planner and agent agree byte for byte.
void AppendInts(absl::Span<const int> values, std::string* out) {
  for (int value : values) {
    const uint32_t v = static_cast<uint32_t>(value);
    const char bytes[4] = {static_cast<char>(v), static_cast<char>(v >> 8),
                           static_cast<char>(v >> 16), static_cast<char>(v >> 24)};
    out->append(bytes, sizeof(bytes));
  }
}

// Every layer has one slot count per GPU: what the slicing below relies on.
absl::Status CheckSlotCounts(const planner::Layout& layout, absl::string_view which) {
  for (int l = 0; l < layout.num_layers(); ++l) {
    if (static_cast<int>(layout.layers[l].slots_per_gpu.size()) != layout.cluster.num_gpus) {
      return absl::InvalidArgumentError(
          absl::StrCat(which, " layout's layer ", l, " has ", layout.layers[l].slots_per_gpu.size(),
                       " slot counts for ", layout.cluster.num_gpus, " GPUs"));
    }
  }
  return absl::OkStatus();
}

// GPU g's slots of `layer`, given its first slot's index.
absl::Span<const int> GpuSlots(const planner::LayerPlacement& layer, int g, int offset) {
  return absl::MakeConstSpan(layer.phy2log).subspan(offset, layer.slots_per_gpu[g]);
}

// Checks one changed list against the shape and the list before it (lists are
// ordered by (layer, GPU), each at most once).
absl::Status CheckChange(const craft::v1::GpuLayerSlots& change, int index,
                         const craft::v1::GpuLayerSlots* previous,
                         const planner::LayoutShape& shape) {
  const std::string where = absl::StrCat("layout delta entry ", index, ": ");
  if (change.layer() < 0 || change.layer() >= shape.num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "layer ", change.layer(), " outside [0, ", shape.num_layers, ")"));
  }
  if (change.gpu() < 0 || change.gpu() >= shape.num_gpus) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "gpu ", change.gpu(), " outside [0, ", shape.num_gpus, ")"));
  }
  if (previous != nullptr && std::make_pair(change.layer(), change.gpu()) <=
                                 std::make_pair(previous->layer(), previous->gpu())) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "(layer ", change.layer(), ", gpu ", change.gpu(),
                     ") is out of order or repeated; entries are ordered by (layer, gpu)"));
  }
  for (int expert : change.experts()) {
    if (expert < 0 || expert >= shape.num_experts) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "expert ", expert, " outside [0, ", shape.num_experts, ")"));
    }
  }
  return absl::OkStatus();
}

// `base` with the lists of `changes` (all of this layer) in place of its own.
planner::LayerPlacement RebuildLayer(const planner::LayerPlacement& base,
                                     absl::Span<const craft::v1::GpuLayerSlots* const> changes) {
  planner::LayerPlacement layer;
  layer.slots_per_gpu.reserve(base.slots_per_gpu.size());
  layer.phy2log.reserve(base.phy2log.size());
  size_t next = 0;
  int offset = 0;
  for (int g = 0; g < static_cast<int>(base.slots_per_gpu.size()); ++g) {
    if (next < changes.size() && changes[next]->gpu() == g) {
      const auto& experts = changes[next++]->experts();
      layer.slots_per_gpu.push_back(experts.size());
      layer.phy2log.insert(layer.phy2log.end(), experts.begin(), experts.end());
    } else {
      absl::Span<const int> kept = GpuSlots(base, g, offset);
      layer.slots_per_gpu.push_back(static_cast<int>(kept.size()));
      layer.phy2log.insert(layer.phy2log.end(), kept.begin(), kept.end());
    }
    offset += base.slots_per_gpu[g];
  }
  return layer;
}

}  // namespace

uint64_t LayoutFingerprint(const planner::Layout& layout) {
  std::string bytes;
  AppendInts(
      {layout.num_layers(), layout.num_experts, layout.cluster.num_gpus, layout.cluster.num_nodes},
      &bytes);
  uint64_t hash = Fnv1a64(bytes);
  for (const planner::LayerPlacement& layer : layout.layers) {
    bytes.clear();
    AppendInts({static_cast<int>(layer.slots_per_gpu.size()), layer.num_slots()}, &bytes);
    AppendInts(layer.slots_per_gpu, &bytes);
    AppendInts(layer.phy2log, &bytes);
    hash = Fnv1a64(bytes, hash);
  }
  return hash;
}

absl::StatusOr<craft::v1::LayoutDelta> MakeLayoutDelta(const planner::Layout& base,
                                                       const std::string& base_version,
                                                       const planner::Layout& target,
                                                       const std::string& version) {
  const planner::LayoutShape shape = target.shape();
  CRAFT_RETURN_IF_ERROR(planner::CheckLayoutShape(absl::StrCat("layout ", version), shape,
                                                  absl::StrCat("its base ", base_version, "'s"),
                                                  base.shape()));
  if (absl::Status s = CheckSlotCounts(base, "the base"); !s.ok()) return s;
  if (absl::Status s = CheckSlotCounts(target, "the target"); !s.ok()) return s;
  craft::v1::LayoutDelta delta;
  delta.set_base_version(base_version);
  delta.set_version(version);
  delta.set_num_layers(shape.num_layers);
  delta.set_num_experts(shape.num_experts);
  delta.set_num_gpus(shape.num_gpus);
  delta.set_num_nodes(shape.num_nodes);
  for (int l = 0; l < shape.num_layers; ++l) {
    const planner::LayerPlacement& from = base.layers[l];
    const planner::LayerPlacement& to = target.layers[l];
    int from_offset = 0, to_offset = 0;
    for (int g = 0; g < shape.num_gpus; ++g) {
      absl::Span<const int> now = GpuSlots(to, g, to_offset);
      if (now != GpuSlots(from, g, from_offset)) {
        craft::v1::GpuLayerSlots* change = delta.add_changed();
        change->set_layer(l);
        change->set_gpu(g);
        change->mutable_experts()->Add(now.begin(), now.end());
      }
      from_offset += from.slots_per_gpu[g];
      to_offset += to.slots_per_gpu[g];
    }
  }
  delta.set_fingerprint(LayoutFingerprint(target));
  return delta;
}

absl::StatusOr<planner::Layout> ApplyLayoutDelta(const planner::Layout& base,
                                                 const craft::v1::LayoutDelta& delta) {
  const planner::LayoutShape shape = base.shape();
  const planner::LayoutShape claimed{delta.num_layers(), delta.num_experts(), delta.num_gpus(),
                                     delta.num_nodes()};
  CRAFT_RETURN_IF_ERROR(planner::CheckLayoutShape(
      absl::StrCat("layout delta ", delta.base_version(), " -> ", delta.version()), claimed,
      "its base's", shape));
  if (absl::Status s = CheckSlotCounts(base, "the base"); !s.ok()) return s;
  // Every entry is checked before anything is built: a bad one changes nothing.
  std::vector<std::vector<const craft::v1::GpuLayerSlots*>> by_layer(shape.num_layers);
  for (int i = 0; i < delta.changed_size(); ++i) {
    const craft::v1::GpuLayerSlots& change = delta.changed(i);
    if (absl::Status s = CheckChange(change, i, i > 0 ? &delta.changed(i - 1) : nullptr, shape);
        !s.ok()) {
      return s;
    }
    by_layer[change.layer()].push_back(&change);
  }
  planner::Layout layout;
  layout.num_experts = base.num_experts;
  layout.cluster = base.cluster;
  layout.layers.reserve(shape.num_layers);
  for (int l = 0; l < shape.num_layers; ++l) {
    layout.layers.push_back(by_layer[l].empty() ? base.layers[l]
                                                : RebuildLayer(base.layers[l], by_layer[l]));
  }
  if (absl::Status s = layout.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("layout delta ", delta.base_version(), " -> ",
                                                   delta.version(),
                                                   " makes an invalid layout: ", s.message()));
  }
  if (LayoutFingerprint(layout) != delta.fingerprint()) {
    return absl::FailedPreconditionError(
        absl::StrCat("layout delta ", delta.base_version(), " -> ", delta.version(),
                     ": the rebuilt layout's fingerprint differs from the planner's (this node's ",
                     delta.base_version(), " is not the planner's); the full layout is needed"));
  }
  return layout;
}

const std::string& PrepareVersion(const craft::v1::Prepare& prepare) {
  return prepare.has_layout_delta() ? prepare.layout_delta().version() : prepare.layout().version();
}

}  // namespace craft
