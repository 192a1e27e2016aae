#include "planner/io/layout_json.h"

#include <array>
#include <climits>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/check.h"
#include "common/status_macros.h"
#include "planner/io/internal/json_util.h"

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
      "counts; plan with --uniform (craft) or --algorithm eplb for stock SGLang."));
}

}  // namespace

std::string LayoutToJson(const Layout& layout, absl::string_view algorithm,
                         const nlohmann::json& extra) {
  const absl::Status valid = layout.Validate();
  CRAFT_CHECK(valid.ok()) << valid;
  CRAFT_CHECK(extra.is_object()) << "extra is a JSON " << extra.type_name();
  // ordered_json keeps the header and the caller's fields ahead of the long
  // per-layer arrays.
  OrderedJson json;
  json["format"] = kLayoutFormatV1;
  json["num_layers"] = layout.num_layers();
  json["num_experts"] = layout.num_experts;
  json["num_gpus"] = layout.cluster.num_gpus;
  json["num_nodes"] = layout.cluster.num_nodes;
  json["algorithm"] = std::string(algorithm);
  for (const auto& [key, value] : extra.items()) {
    CRAFT_CHECK(!IsReserved(key)) << "extra field \"" << key << "\" is the format's own";
    json[key] = OrderedJson(value);
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
  CRAFT_ASSIGN_OR_RETURN(SglangExport file, LayoutToSglang(layout, SglangModel{}));
  return std::move(file.json);
}

absl::StatusOr<std::vector<int>> ParseLayerSpec(absl::string_view spec, int num_layers) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("layer spec '", spec, "': ", why));
  };
  auto read = [&](absl::string_view text, int* id) -> absl::Status {
    text = absl::StripAsciiWhitespace(text);
    if (text.empty() || text[0] == '+' || text[0] == '-' || !absl::SimpleAtoi(text, id)) {
      return bad(absl::StrCat("'", text, "' is not a layer id"));
    }
    if (*id >= num_layers) {
      return bad(absl::StrCat("layer ", *id, " is out of range; the model has ", num_layers,
                              " layers (0-", num_layers - 1, ")"));
    }
    return absl::OkStatus();
  };
  std::vector<int> layers;
  for (absl::string_view item : absl::StrSplit(spec, ',')) {
    int first = 0;
    int last = 0;
    const size_t dash = item.find('-', item.find_first_not_of(' ') + 1);
    if (dash == absl::string_view::npos) {
      CRAFT_RETURN_IF_ERROR(read(item, &first));
      last = first;
    } else {
      CRAFT_RETURN_IF_ERROR(read(item.substr(0, dash), &first));
      CRAFT_RETURN_IF_ERROR(read(item.substr(dash + 1), &last));
      if (last < first) return bad(absl::StrCat("range ", first, "-", last, " is backwards"));
    }
    if (!layers.empty() && first <= layers.back()) {
      return bad(absl::StrCat("layer ", first, " comes after ", layers.back(),
                              "; list layers ascending, each once"));
    }
    for (int l = first; l <= last; ++l) layers.push_back(l);
  }
  return layers;
}

absl::StatusOr<SglangExport> LayoutToSglang(const Layout& layout, const SglangModel& model) {
  CRAFT_RETURN_IF_ERROR(layout.Validate());
  if (!layout.HasUniformSlots()) return NonUniformSlotsError(layout);
  const int planned = layout.num_layers();
  const int num_rows = model.num_hidden_layers > 0 ? model.num_hidden_layers : planned;
  if (model.num_hidden_layers < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_hidden_layers must be positive, got ", model.num_hidden_layers));
  }
  std::vector<int> moe_layers = model.moe_layers;
  if (moe_layers.empty()) {
    for (int l = 0; l < num_rows; ++l) moe_layers.push_back(l);
  }
  for (size_t i = 0; i < moe_layers.size(); ++i) {
    if (moe_layers[i] < 0 || moe_layers[i] >= num_rows ||
        (i > 0 && moe_layers[i] <= moe_layers[i - 1])) {
      return absl::InvalidArgumentError(absl::StrCat("MoE layer ids must ascend within [0, ",
                                                     num_rows, "); entry ", i, " is ",
                                                     moe_layers[i]));
    }
  }
  if (static_cast<int>(moe_layers.size()) != planned) {
    return absl::FailedPreconditionError(
        absl::StrCat("the plan has ", planned, " MoE layers but the model has ", moe_layers.size(),
                     " (layers ", moe_layers.front(), "-", moe_layers.back(), " of ", num_rows,
                     "); plan from a trace of exactly the model's MoE layers"));
  }
  const int width = layout.layers[0].num_slots();
  // SGLang's "trivial" placement: slot p holds expert p % E. It covers every
  // expert (width >= E), so SGLang's per-expert dispatch tables stay valid.
  std::vector<int> trivial(width);
  for (int p = 0; p < width; ++p) trivial[p] = p % layout.num_experts;
  Json map = Json::array();
  size_t next = 0;  // the plan layer that goes into the next MoE row
  for (int row = 0; row < num_rows; ++row) {
    if (next < moe_layers.size() && moe_layers[next] == row) {
      map.push_back(layout.layers[next].phy2log);
      ++next;
    } else {
      map.push_back(trivial);
    }
  }
  Json json;
  json["physical_to_logical_map"] = std::move(map);
  SglangExport file;
  file.json = json.dump();
  file.num_redundant_experts = width - layout.num_experts;
  file.ep_size = layout.cluster.num_gpus;
  return file;
}

}  // namespace craft::planner
