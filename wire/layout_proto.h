// Conversions between the planner library's Layout and craft.v1.Layout.
#ifndef CRAFT_WIRE_LAYOUT_PROTO_H_
#define CRAFT_WIRE_LAYOUT_PROTO_H_

#include <string>

#include "absl/status/statusor.h"
#include "craft/v1/layout.pb.h"
#include "planner/layout.h"

namespace craft {

craft::v1::Layout LayoutToProto(const planner::Layout& layout, const std::string& version);

// Validates (Layout::Validate) what came off the wire: INVALID_ARGUMENT with
// the reason on any inconsistency.
absl::StatusOr<planner::Layout> LayoutFromProto(const craft::v1::Layout& proto);

}  // namespace craft

#endif  // CRAFT_WIRE_LAYOUT_PROTO_H_
