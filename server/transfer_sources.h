// Transfer plans when GPUs serve different layout versions (a node that
// missed a commit, or restarted with an old layout): each GPU's current
// weights are read from the layout of the version it serves, and every copy
// names that version as Transfer.src_version.
//
//   std::vector<ServingGpu> serving = ...;  // per GPU: version and its layout
//   CRAFT_ASSIGN_OR_RETURN(SourcedTransfers plan,
//                          PlanSourcedTransfers(target, serving, bytes_per_expert));
//
// A GPU whose version's layout is unknown (layout == nullptr) is treated as
// holding nothing: all its slots are loaded from other GPUs, and it is never
// a source.
//
// Thread-safety: a pure function of its arguments.
#ifndef CRAFT_SERVER_TRANSFER_SOURCES_H_
#define CRAFT_SERVER_TRANSFER_SOURCES_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "craft/v1/layout.pb.h"
#include "planner/layout.h"

namespace craft::server {

struct ServingGpu {
  std::string version;
  std::shared_ptr<const planner::Layout> layout;  // nullptr: unknown version
};

struct SourcedTransfers {
  std::vector<craft::v1::Transfer> transfers;  // by (layer, dst_gpu, dst_slot)
  int64_t max_bytes_received_by_a_gpu = 0;     // over links, local copies excluded
};

// Copies that bring every GPU from what it serves to `target`. `serving` has
// one entry per GPU of `target`. FAILED_PRECONDITION when some expert of
// `target` has no holder among the GPUs with a known layout;
// INVALID_ARGUMENT when shapes differ.
absl::StatusOr<SourcedTransfers> PlanSourcedTransfers(const planner::Layout& target,
                                                      const std::vector<ServingGpu>& serving,
                                                      int64_t bytes_per_expert);

}  // namespace craft::server

#endif  // CRAFT_SERVER_TRANSFER_SOURCES_H_
