// The one check that a layout has the shape it must have before anyone
// indexes it: the configured model's layers and experts on the cluster's GPUs
// and nodes (the planner, a worker), or the shape of the layout it is
// compared with slot by slot (a delta's base, the layouts transfers come
// from). A layout of another shape is refused with both shapes named: its
// slots would mean other layers, experts or GPUs.
//
//   CRAFT_RETURN_IF_ERROR(
//       CheckLayoutShape("layout", layout.shape(), "this worker's", worker_shape));
//
// Pure; thread-safe.
#ifndef CRAFT_WIRE_LAYOUT_SHAPE_H_
#define CRAFT_WIRE_LAYOUT_SHAPE_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "planner/layout.h"

namespace craft {

// OK when `actual` is `expected`. Else INVALID_ARGUMENT "<what> has shape
// <actual>; <expected_what> is <expected>", e.g. "layout 1.4 has shape 12
// layers x 64 experts on 8 GPUs / 2 nodes; this worker's is 12 layers x 64
// experts on 16 GPUs / 2 nodes".
absl::Status CheckLayoutShape(absl::string_view what, const planner::LayoutShape& actual,
                              absl::string_view expected_what,
                              const planner::LayoutShape& expected);

}  // namespace craft

#endif  // CRAFT_WIRE_LAYOUT_SHAPE_H_
