// Stabilising a freshly planned layout against the committed one (docs/design.md
// §3, step 8), so that a re-plan moves as few expert weights as possible.
//
// A planner decides, per layer, which multiset of experts each GPU serves
// (a "bin"); which of several GPUs with the same slot count gets which bin
// does not matter for load balance, and neither does the order of a GPU's
// slots. Stabilize uses both freedoms to keep weights where they already are:
//
//   CRAFT_ASSIGN_OR_RETURN(Layout planned, Plan(...));
//   CRAFT_ASSIGN_OR_RETURN(Layout stable, Stabilize(committed, planned));
//   CRAFT_ASSIGN_OR_RETURN(MoveStats moves, CountMoves(committed, stable));
//
// Thread-safety: pure functions of their arguments; safe to call concurrently.
#ifndef CRAFT_PLANNER_TRANSFER_STABILIZE_H_
#define CRAFT_PLANNER_TRANSFER_STABILIZE_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "planner/layout.h"

namespace craft::planner {

// What applying a layout over the committed one costs, in slots. A slot is
// identified by (layer, GPU, index within that GPU's slots); a slot that
// needs new weights is "changed". Always slots_changed = remote_loads +
// local_copies. Slots a GPU gives up are freed and cost nothing.
struct MoveStats {
  int64_t slots_changed = 0;  // slots whose expert differs from before, or that are new
  int64_t remote_loads = 0;   // changed slots whose expert the GPU did not hold anywhere
                              // before (need bytes from another GPU)
  int64_t local_copies = 0;   // changed slots whose expert the same GPU already held in
                              // another slot (a device-local copy)

  MoveStats& operator+=(const MoveStats& other);
  bool operator==(const MoveStats& other) const {
    return slots_changed == other.slots_changed && remote_loads == other.remote_loads &&
           local_copies == other.local_copies;
  }
};

// Counts the slots of `next` that need weights, given `previous` is loaded.
// Fails with INVALID_ARGUMENT unless both layouts validate and share the
// number of layers, the number of experts and the cluster.
absl::StatusOr<MoveStats> CountMoves(const Layout& previous, const Layout& next);

// Returns a layout equivalent to `next` for load balance that moves as few
// weights as possible from `previous`. Every GPU's multiset of experts per
// layer is taken from `next` whole; only which GPU holds which multiset is
// permuted, and only among GPUs with the same slot count in that layer, so
// per-GPU memory, per-GPU load and "no duplicate on a GPU" are unchanged.
//
// Per layer and per group of GPUs with equal slot count in `next`:
//  a) the bins are relabelled by a min-cost assignment, cost(bin -> GPU g) =
//     the experts of the bin (with multiplicity) that g did not hold in
//     `previous` (its remote loads), ties broken by slots changed;
//  b) within each GPU an expert that stays keeps its old index where that
//     index still exists; new experts fill the remaining indices in
//     ascending expert order.
// Guarantee: CountMoves(previous, result) has remote_loads and slots_changed
// each no larger than CountMoves(previous, next). Where the cheapest
// assignment in remote loads would change more slots than `next` does, a
// cheaper-in-slots assignment or `next`'s own labelling is kept instead.
// When `next` has `previous`'s slot counts and its bins are a permutation of
// `previous`'s, the result is `previous` itself: nothing moves.
//
// Fails with INVALID_ARGUMENT as CountMoves does.
absl::StatusOr<Layout> Stabilize(const Layout& previous, const Layout& next);

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_TRANSFER_STABILIZE_H_
