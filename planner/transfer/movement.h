// "Moved", defined once (docs/design.md §6): what applying a new layout over the
// committed one costs in expert weights that must arrive on a GPU.
//
// A replica (layer, GPU, expert) of `next` is moved when the GPU does not
// already hold it in `previous`, counted as a multiset difference per layer
// and GPU: a GPU that held expert e once and now holds it twice receives one
// replica. Slot order within a GPU does not matter (the weights are already on
// the device), and slots a GPU gives up cost nothing. Every moved replica
// needs staging memory on its GPU until the flip, so the limit that matters
// per GPU is the bytes arriving there.
//
//   CRAFT_ASSIGN_OR_RETURN(Movement moved,
//                          CountMovement(committed, planned, bytes_per_expert));
//   if (moved.max_bytes_into_gpu > headroom) ...
//
// Relation to CountMoves (stabilize.h), which counts slots by index:
// moved_replicas >= MoveStats::remote_loads (a duplicate arriving on a GPU
// that already held one copy is a local copy there, but moved here), and
// moved_replicas <= MoveStats::slots_changed.
//
// Thread-safety: pure functions of their arguments; safe to call concurrently.
#ifndef CRAFT_PLANNER_TRANSFER_MOVEMENT_H_
#define CRAFT_PLANNER_TRANSFER_MOVEMENT_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "planner/layout.h"

namespace craft::planner {

struct Movement {
  int64_t moved_replicas = 0;              // (layer, GPU, expert) replicas of next not held before
  int64_t new_slots = 0;                   // slots of next, summed over layers and GPUs
  double moved_fraction = 0;               // moved_replicas / new_slots
  int64_t max_bytes_into_gpu = 0;          // max over GPUs of replicas_into_gpu x bytes_per_expert
  std::vector<int64_t> replicas_into_gpu;  // per GPU, summed over layers
};

// Counts what moves from `previous` to `next`. Fails with INVALID_ARGUMENT
// unless both layouts validate and share layers, experts and cluster, or when
// bytes_per_expert <= 0, or when the byte count would overflow int64_t.
absl::StatusOr<Movement> CountMovement(const Layout& previous, const Layout& next,
                                       int64_t bytes_per_expert);

// The replicas of `next_experts` not in `previous_experts` (multiset
// difference), for one GPU of one layer. The one place that defines "moved";
// CountMovement and the incremental planner both count through it.
int64_t ArrivingReplicas(absl::Span<const int> previous_experts,
                         absl::Span<const int> next_experts);

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_TRANSFER_MOVEMENT_H_
