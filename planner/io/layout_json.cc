#include "planner/io/layout_json.h"

#include <array>
#include <cassert>
#include <climits>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "planner/io/json_util.h"

namespace craft::planner {
namespace {

using io_internal::Json;
using OrderedJson = nlohmann::ordered_json;

// The top-level keys LayoutToJson() writes itself; `extra` may not use them.
constexpr std::array<absl::string_view, 7> kReservedKeys = {
    "format", "num_layers", "num_experts", "num_gpus", "num_nodes", "algorithm", "layers"};

bool IsReserved(absl::string_view key) {
  for (absl::string_view reserved : kReservedKeys) {
    if (key == reserved) return true;
  }
  return false;
}

OrderedJson LayerToJson(const LayerPlacement& layer, int num_experts) {
  OrderedJson json;
  json["slots_per_gpu"] = layer.slots_per_gpu;
  json["phy2log"] = layer.phy2log;
  json["logcnt"] = layer.LogicalCounts(num_experts);
  return json;
}

// One layer of the craft format. `logcnt` is left empty when absent.
struct ParsedLayer {
  LayerPlacement placement;
  std::vector<int> logcnt;
};

absl::StatusOr<ParsedLayer> ParseLayer(const Json& node, int index, const Layout& layout) {
  const std::string path = absl::StrCat("layers[", index, "]");
  if (!node.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " must be an object, got ", io_internal::Describe(node)));
  }
  // Missing keys are reported with the layer they are missing from.
  auto member = [&](absl::string_view key) -> absl::StatusOr<const Json*> {
    absl::StatusOr<const Json*> found = io_internal::GetMember(node, key);
    if (!found.ok()) return io_internal::AtPath(absl::StrCat(path, ":"), found.status());
    return found;
  };
  ParsedLayer layer;
  CRAFT_ASSIGN_OR_RETURN(const Json* slots, member("slots_per_gpu"));
  CRAFT_ASSIGN_OR_RETURN(layer.placement.slots_per_gpu,
                         io_internal::ReadIntArray(*slots, absl::StrCat(path, ".slots_per_gpu"),
                                                   layout.cluster.num_gpus, 0, INT_MAX));
  CRAFT_ASSIGN_OR_RETURN(const Json* phy2log, member("phy2log"));
  CRAFT_ASSIGN_OR_RETURN(layer.placement.phy2log,
                         io_internal::ReadIntArray(*phy2log, absl::StrCat(path, ".phy2log"),
                                                   std::nullopt, 0, layout.num_experts - 1));
  if (const Json* logcnt = io_internal::FindMember(node, "logcnt")) {
    CRAFT_ASSIGN_OR_RETURN(layer.logcnt,
                           io_internal::ReadIntArray(*logcnt, absl::StrCat(path, ".logcnt"),
                                                     layout.num_experts, 0, INT_MAX));
  }
  return layer;
}

// Checks a layer's declared replica counts against its slots. Runs after
// Layout::Validate(), which guarantees phy2log's ids are in range.
absl::Status CheckLogcnt(const LayerPlacement& placement, const std::vector<int>& logcnt, int index,
                         int num_experts) {
  if (logcnt.empty()) return absl::OkStatus();
  const std::vector<int> actual = placement.LogicalCounts(num_experts);
  for (int e = 0; e < num_experts; ++e) {
    if (logcnt[e] != actual[e]) {
      return absl::InvalidArgumentError(absl::StrCat("layers[", index, "].logcnt[", e, "] is ",
                                                     logcnt[e], " but phy2log holds ", actual[e],
                                                     " replicas of expert ", e));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckLayoutFormat(const Json& root) {
  CRAFT_ASSIGN_OR_RETURN(const Json* format, io_internal::GetMember(root, "format"));
  CRAFT_ASSIGN_OR_RETURN(const std::string name, io_internal::ReadString(*format, "\"format\""));
  if (name != kLayoutFormatV1) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown layout format \"", name, "\"; expected \"", kLayoutFormatV1, "\""));
  }
  return absl::OkStatus();
}

// Why SGLang cannot load `layout` (which lacks uniform slots): the first slot
// count that differs from layer 0's GPU 0.
absl::Status NonUniformSlotsError(const Layout& layout) {
  const int expected = layout.layers[0].slots_per_gpu[0];
  std::string where;
  for (int l = 0; l < layout.num_layers() && where.empty(); ++l) {
    const std::vector<int>& slots = layout.layers[l].slots_per_gpu;
    for (int g = 0; g < static_cast<int>(slots.size()); ++g) {
      if (slots[g] != expected) {
        where = absl::StrCat("layer ", l, " puts ", slots[g], " slots on GPU ", g);
        break;
      }
    }
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "SGLang's --init-expert-location needs the same number of slots on every GPU in every "
      "layer, but ",
      where, " where layer 0 has ", expected,
      " per GPU. Per-layer replica counts need an engine that supports per-layer expert "
      "counts; use --algorithm eplb or none for stock SGLang."));
}

}  // namespace

std::string LayoutToJson(const Layout& layout, absl::string_view algorithm,
                         const nlohmann::json& extra) {
  assert(layout.Validate().ok());
  assert(extra.is_object());
  // ordered_json keeps the header and the caller's fields ahead of the long
  // per-layer arrays.
  OrderedJson json;
  json["format"] = kLayoutFormatV1;
  json["num_layers"] = layout.num_layers();
  json["num_experts"] = layout.num_experts;
  json["num_gpus"] = layout.cluster.num_gpus;
  json["num_nodes"] = layout.cluster.num_nodes;
  json["algorithm"] = std::string(algorithm);
  if (extra.is_object()) {
    for (const auto& [key, value] : extra.items()) {
      assert(!IsReserved(key));
      if (!IsReserved(key)) json[key] = OrderedJson(value);
    }
  }
  OrderedJson layers = OrderedJson::array();
  for (const LayerPlacement& layer : layout.layers) {
    layers.push_back(LayerToJson(layer, layout.num_experts));
  }
  json["layers"] = std::move(layers);
  return json.dump();
}

absl::StatusOr<Layout> ParseLayoutJson(absl::string_view text) {
  CRAFT_ASSIGN_OR_RETURN(const Json root, io_internal::ParseJsonObject(text));
  CRAFT_RETURN_IF_ERROR(CheckLayoutFormat(root));
  Layout layout;
  CRAFT_ASSIGN_OR_RETURN(const int num_layers,
                         io_internal::ReadIntMember(root, "num_layers", 1, kMaxLayoutDimension));
  CRAFT_ASSIGN_OR_RETURN(layout.num_experts,
                         io_internal::ReadIntMember(root, "num_experts", 1, kMaxLayoutDimension));
  CRAFT_ASSIGN_OR_RETURN(layout.cluster.num_gpus,
                         io_internal::ReadIntMember(root, "num_gpus", 1, kMaxLayoutDimension));
  CRAFT_ASSIGN_OR_RETURN(layout.cluster.num_nodes,
                         io_internal::ReadIntMember(root, "num_nodes", 1, kMaxLayoutDimension));
  CRAFT_ASSIGN_OR_RETURN(const Json* layers, io_internal::GetMember(root, "layers"));
  CRAFT_RETURN_IF_ERROR(io_internal::CheckArray(*layers, "\"layers\"", num_layers));
  std::vector<std::vector<int>> logcnts;
  for (int l = 0; l < num_layers; ++l) {
    CRAFT_ASSIGN_OR_RETURN(ParsedLayer layer, ParseLayer((*layers)[l], l, layout));
    layout.layers.push_back(std::move(layer.placement));
    logcnts.push_back(std::move(layer.logcnt));
  }
  CRAFT_RETURN_IF_ERROR(layout.Validate());
  for (int l = 0; l < num_layers; ++l) {
    CRAFT_RETURN_IF_ERROR(CheckLogcnt(layout.layers[l], logcnts[l], l, layout.num_experts));
  }
  return layout;
}

absl::StatusOr<std::string> LayoutToSglangJson(const Layout& layout) {
  CRAFT_RETURN_IF_ERROR(layout.Validate());
  if (!layout.HasUniformSlots()) return NonUniformSlotsError(layout);
  Json map = Json::array();
  for (const LayerPlacement& layer : layout.layers) map.push_back(layer.phy2log);
  Json json;
  json["physical_to_logical_map"] = std::move(map);
  return json.dump();
}

}  // namespace craft::planner
