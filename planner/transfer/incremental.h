// The incremental planner (docs/design.md §6): a re-plan that starts from the
// committed layout and changes only what pays, instead of planning afresh and
// moving most of the slots.
//
// It applies, one at a time, the move that gains the most predicted mean
// balancedness per replica moved (Movement's definition, movement.h):
//
//  - swap:    two experts of one layer trade GPUs (evens out two GPUs);
//  - replace: on one GPU of one layer, a replica of an expert that has others
//             gives its slot to an expert that needs one (drop cold, add hot);
//  - shift:   the same across layers on one GPU: a redundant replica of layer
//             l' gives its slot to layer l, so per-layer replica counts follow
//             the load;
//  - grow:    one slot on every GPU (see below).
//
// Every move keeps each GPU's total slot count, every expert placed and no
// expert twice on a GPU where it was not already, so every frontier point is a
// valid layout. It stops at the movement limit or when no move gains more than
// `min_gain_per_replica` per replica moved.
//
// Uniform layouts (IncrementalOptions::uniform_redundant_per_layer) keep every
// layer's per-GPU slot counts equal and every layer the same: swaps and
// replaces only, and growth in steps of one slot per GPU in every layer.
//
// Growing to R. CRAFT plans give every GPU ceil(L*E/D) + R slots. When the
// committed layout has fewer (e.g. the initial layout, R = 0), the planner
// first adds one slot on every GPU at a time (each GPU's best new replica over
// all layers), because the memory is reserved for replicas either way; each
// grow step costs D moved replicas and is one frontier point (the layouts in
// between have unequal totals). Growth stops where the limit would be
// exceeded. A committed layout with more slots than R keeps them: the planner
// never shrinks a GPU.
//
// Predictions replay the trace's windows (at most `max_replay_windows`, evenly
// spaced, so planning time does not grow with the trace) with replay.h's
// definitions: mean over layers of mean-over-windows balancedness, and the step
// time sum_l mean_w max_g load. With all windows replayed they equal
// EvaluateLayout's numbers.
//
//   IncrementalOptions options;
//   options.budget = 8;
//   options.limit.max_moved_fraction = 0.10;
//   CRAFT_ASSIGN_OR_RETURN(IncrementalPlan plan, PlanIncremental(committed, trace, options));
//   const int point = PickFrontierPoint(plan, options.limit);
//   CRAFT_ASSIGN_OR_RETURN(Layout next, LayoutAtPoint(committed, plan, point));
//
// Deterministic: the same inputs give the same moves. Thread-safety: pure
// functions of their arguments; safe to call concurrently.
#ifndef CRAFT_PLANNER_TRANSFER_INCREMENTAL_H_
#define CRAFT_PLANNER_TRANSFER_INCREMENTAL_H_

#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "planner/layout.h"
#include "planner/load_trace.h"

namespace craft::planner {

// How much a re-plan may move, both as Movement counts it.
struct MoveLimit {
  double max_moved_fraction = 1.0;  // of the new layout's slots, in [0, 1]
  int64_t max_bytes_into_gpu = std::numeric_limits<int64_t>::max();  // >= 0

  // INVALID_ARGUMENT when a field is out of range (or NaN).
  absl::Status Validate() const;
  // Whether a layout with `moved_replicas` of `new_slots` moved and at most
  // `max_bytes_into_gpu` arriving on one GPU fits.
  bool Admits(int64_t moved_replicas, int64_t new_slots, int64_t max_bytes_into_gpu) const;
};

struct IncrementalOptions {
  int budget = 8;  // R: the layout grows to ceil(L*E/D) + R slots per GPU
  int64_t bytes_per_expert = 3 * 7168LL * 2048 * 2;  // bf16 DeepSeek/Kimi expert
  MoveLimit limit;
  // A move must raise predicted mean balancedness by more than this per
  // replica it moves (at least one), so noise-sized gains do not move weights.
  double min_gain_per_replica = 1e-6;
  // Windows replayed for predictions (evenly spaced when the trace has more).
  int max_replay_windows = 64;
  // Threads that score the layers' candidate moves (0: every core). The
  // moves are the same on any count.
  int threads = 1;
  // Set: uniform layouts, as SGLang and vLLM need (every GPU holds the same
  // slots in every layer). No shifts; growth adds one slot on every GPU in
  // every layer per step (L x D replicas) until every layer holds E + this
  // many slots, and `budget` is unused. The committed layout must be
  // uniform with at most that many slots per layer.
  std::optional<int> uniform_redundant_per_layer;
};

// One change to one GPU's slots in one layer: a replica of `remove_expert`
// leaves (-1: none) and one of `add_expert` arrives (-1: none). Both set: the
// new expert takes the old one's slot.
struct SlotEdit {
  int layer = 0;
  int gpu = 0;
  int remove_expert = -1;
  int add_expert = -1;
};

enum class MoveKind { kGrow, kSwap, kReplace, kShift };

struct IncrementalMove {
  MoveKind kind = MoveKind::kSwap;
  std::vector<SlotEdit> edits;  // 1 (replace, grow) or 2 (swap, shift)
};

// The state after the first `num_moves` moves.
struct FrontierPoint {
  int num_moves = 0;
  int64_t moved_replicas = 0;  // vs the committed layout, as CountMovement
  int64_t new_slots = 0;
  double moved_fraction = 0;
  int64_t max_bytes_into_gpu = 0;
  double predicted_balancedness = 0;  // mean over layers
  double predicted_step_time = 0;     // sum over layers of the busiest GPU's load
};

struct IncrementalPlan {
  std::vector<IncrementalMove> moves;   // in the order applied
  std::vector<FrontierPoint> frontier;  // frontier[0] is the committed layout
  int slots_per_gpu = 0;                // every GPU's total at the frontier's end
};

// Plans the frontier from `committed` under options.limit. Fails with
// INVALID_ARGUMENT when the layout is invalid or has unequal per-GPU totals,
// when the trace's shape differs or a count it reads (the aggregate and the
// replayed windows) is negative, or when an option is out of range.
absl::StatusOr<IncrementalPlan> PlanIncremental(const Layout& committed, const LoadTrace& trace,
                                                const IncrementalOptions& options);

// Applies one move to `layout` in place (the new expert takes the leaving
// one's slot; a new slot goes after the GPU's others). INVALID_ARGUMENT when
// the move does not fit the layout (unknown layer or GPU, expert not held).
absl::Status ApplyMove(const IncrementalMove& move, Layout& layout);

// The layout at frontier point `point`: the committed layout with the first
// frontier[point].num_moves moves applied. INVALID_ARGUMENT for a point out
// of range or moves that do not fit `committed`.
absl::StatusOr<Layout> LayoutAtPoint(const Layout& committed, const IncrementalPlan& plan,
                                     int point);

// The last frontier point within `limit` (0, the committed layout, when no
// later one fits). Predicted balancedness rises along the frontier, so this is
// the best point the limit admits.
int PickFrontierPoint(const IncrementalPlan& plan, const MoveLimit& limit);

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_TRANSFER_INCREMENTAL_H_
