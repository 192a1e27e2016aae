// Layout deltas (proto/README.md, "Layout deltas"): a new layout sent as the
// (layer, GPU) slot lists that differ from a base layout the receiver already
// holds, with a fingerprint of the whole result. A re-plan that moves a few
// percent of the slots changes a few percent of the lists, so every agent's
// Prepare carries kilobytes instead of the full layout, and the planner builds
// the delta once per version for all agents.
//
//   // planner, once per version
//   CRAFT_ASSIGN_OR_RETURN(craft::v1::LayoutDelta delta,
//                          MakeLayoutDelta(committed, "1.4", target, "1.5"));
//   // agent, holding "1.4"
//   CRAFT_ASSIGN_OR_RETURN(planner::Layout next, ApplyLayoutDelta(held, delta));
//
// A receiver whose base is not the sender's (another version, or the same
// version with other content) gets a fingerprint mismatch and must ask for
// the full layout rather than stage what it computed.
//
// Pure functions; thread-safe.
#ifndef CRAFT_WIRE_LAYOUT_DELTA_H_
#define CRAFT_WIRE_LAYOUT_DELTA_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "craft/v1/agent.pb.h"
#include "craft/v1/layout.pb.h"
#include "planner/layout.h"

namespace craft {

// FNV-1a (64 bit) of a layout's content: the shape, then every layer's
// slots_per_gpu and phy2log as little-endian int32s. The version is not part
// of it: it names the layout, the fingerprint checks what was rebuilt.
uint64_t LayoutFingerprint(const planner::Layout& layout);

// The delta that turns `base` (version `base_version`) into `target`
// (version `version`). INVALID_ARGUMENT when their shapes differ (layers,
// experts, GPUs, nodes): a delta never changes the shape.
absl::StatusOr<craft::v1::LayoutDelta> MakeLayoutDelta(const planner::Layout& base,
                                                       const std::string& base_version,
                                                       const planner::Layout& target,
                                                       const std::string& version);

// `base` with `delta` applied. The caller checks that `base` is the layout of
// delta.base_version(). INVALID_ARGUMENT for a malformed delta (a shape that
// is not the base's, a layer, GPU or expert out of range, lists out of order
// or repeated, a result Layout::Validate refuses); FAILED_PRECONDITION when
// the result's fingerprint is not the delta's (the base was not the one the
// delta was made from). Nothing is returned but the status then.
absl::StatusOr<planner::Layout> ApplyLayoutDelta(const planner::Layout& base,
                                                 const craft::v1::LayoutDelta& delta);

// The version a Prepare stages: its delta's when it carries one, else its
// layout's.
const std::string& PrepareVersion(const craft::v1::Prepare& prepare);

}  // namespace craft

#endif  // CRAFT_WIRE_LAYOUT_DELTA_H_
