// Reading and writing replica layouts as JSON: craft's own format, which
// round-trips every Layout, and SGLang's --init-expert-location file (formats
// in FORMATS.md).
//
//   std::string json = LayoutToJson(plan.layout, "craft", {{"budget", plan.budget}});
//   absl::StatusOr<Layout> layout = ParseLayoutJson(json);
//   absl::StatusOr<std::string> sglang = LayoutToSglangJson(plan.layout);
//   // DeepSeek-V3: 61 decoder layers, MoE in 3..60.
//   absl::StatusOr<std::vector<int>> moe = ParseLayerSpec("3-60", 61);
//   absl::StatusOr<SglangExport> file = LayoutToSglang(plan.layout, {61, *moe});
//
// Pure string in, string out: callers do the file I/O. All functions are
// thread-compatible (no shared state).
#ifndef CRAFT_PLANNER_IO_LAYOUT_JSON_H_
#define CRAFT_PLANNER_IO_LAYOUT_JSON_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "planner/layout.h"

namespace craft::planner {

// The format name LayoutToJson() writes.
inline constexpr char kLayoutFormatV1[] = "craft.layout.v1";

// Limit on num_layers, num_experts, num_gpus and num_nodes when parsing.
inline constexpr int kMaxLayoutDimension = 1 << 16;

// Writes `layout` in craft's format, with `algorithm` (the name it was planned
// with) and every member of `extra` (e.g. replicas_per_layer, budget) as
// further top-level fields, for tools that report on a plan. Each layer also
// carries "logcnt", the replicas of every expert, so readers need not derive
// it.
// Preconditions (CRAFT_CHECK): layout.Validate() is OK; `extra` is an object
// whose keys are not the format's own.
std::string LayoutToJson(const Layout& layout, absl::string_view algorithm,
                         const nlohmann::json& extra = nlohmann::json::object());

// Parses craft's layout format. Fields other than the format's own are
// ignored. "logcnt", where present, must agree with "phy2log" (it is a
// checksum a hand-edited file may break), and the result passes
// Layout::Validate(). Every failure is INVALID_ARGUMENT naming the element.
absl::StatusOr<Layout> ParseLayoutJson(absl::string_view text);

// SGLang's --init-expert-location file: {"physical_to_logical_map": [[P ints]
// x L]}, slots GPU-major as in Layout. SGLang gives every GPU the same number
// of slots in every layer, so a layout without Layout::HasUniformSlots() (as
// CRAFT's per-layer replica counts produce) is FAILED_PRECONDITION; an
// invalid layout is INVALID_ARGUMENT.
absl::StatusOr<std::string> LayoutToSglangJson(const Layout& layout);

// A set of decoder-layer ids, "3-60" or "1,3,5" or "0-2,7" (inclusive
// ranges), ascending without repeats, each in [0, num_layers). Failures are
// INVALID_ARGUMENT saying what is wrong with `spec`.
absl::StatusOr<std::vector<int>> ParseLayerSpec(absl::string_view spec, int num_layers);

// Where a plan's layers go in SGLang's file. SGLang indexes the map's rows by
// the model's absolute decoder layer id (num_hidden_layers rows, dense layers
// included), so plan layer i goes into row moe_layers[i].
struct SglangModel {
  int num_hidden_layers = 0;    // 0: the layout's layer count
  std::vector<int> moe_layers;  // ascending; empty: every layer is MoE
};

struct SglangExport {
  std::string json;  // {"physical_to_logical_map": [[P ints] x N]}, nothing else
  // What SGLang must be started with: --ep-num-redundant-experts P - E and
  // --ep-size num_gpus (SGLang never checks the map's width against them).
  int num_redundant_experts = 0;
  int ep_size = 0;
};

// SGLang's --init-expert-location file for a model shaped `model`: the plan's
// layers in the MoE rows and, in every dense row, the map SGLang's own
// "trivial" placement uses (slot p holds expert p % E). FAILED_PRECONDITION
// when SGLang could not load it (slot counts that differ between GPUs or
// layers, which also covers a width not divisible by the GPUs) or when the
// layout's layer count is not the number of MoE layers; INVALID_ARGUMENT for
// an invalid layout or model shape.
absl::StatusOr<SglangExport> LayoutToSglang(const Layout& layout, const SglangModel& model);

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_IO_LAYOUT_JSON_H_
