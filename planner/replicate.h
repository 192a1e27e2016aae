// Choosing how many replicas each logical expert of one layer gets.
#ifndef CRAFT_PLANNER_REPLICATE_H_
#define CRAFT_PLANNER_REPLICATE_H_

#include <cstdint>
#include <limits>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace craft::planner {

// Physical experts of one layer before they are placed on GPUs.
struct Replication {
  std::vector<int> phy2log;  // num_physical entries; the first E are 0..E-1
  std::vector<int> rank;     // replica index of each physical expert
  std::vector<int> logcnt;   // replicas per logical expert
  // Optional (empty when not kept): the experts by decreasing load per
  // replica, ties to the lower index; the order packing places them in, kept
  // by Replicator as it grows instead of sorted again for every count.
  std::vector<int> heaviest_first;
};

// The packing order: expert a before b when its load per replica is larger,
// or equal with a lower index. Exact.
bool HeavierPerReplica(absl::Span<const int64_t> weight, const std::vector<int>& count, int a,
                       int b);

// Every expert in that order (Replication::heaviest_first, sorted afresh).
std::vector<int> HeaviestFirstOrder(absl::Span<const int64_t> weight,
                                    const std::vector<int>& count);

// DeepSeek EPLB's `replicate_experts`: start with one replica per expert, then
// give each of the `num_physical - E` extra slots to the expert with the
// largest load per replica. Per-replica loads are compared exactly by
// cross-multiplying; ties go to the lowest expert index. Experts that already
// have `max_replicas_per_expert` replicas are skipped (CRAFT caps at D).
//
// Fails when num_physical < E or the cap makes num_physical unreachable.
absl::StatusOr<Replication> ReplicateExperts(
    absl::Span<const int64_t> weight, int num_physical,
    int max_replicas_per_expert = std::numeric_limits<int>::max());

// ReplicateExperts one replica at a time: the greedy choice never revisits
// earlier ones, so the replication of P + 1 physical experts is that of P plus
// one replica, and a layer's benefit curve over consecutive counts extends one
// replication instead of starting each count over.
//
//   Replicator replicator(weight, /*max_replicas_per_expert=*/D);
//   for (int p : {E, E + 1, E + 2}) {
//     CRAFT_RETURN_IF_ERROR(replicator.GrowTo(p));
//     Use(replicator.replication());
//   }
//
// Thread-compatible. `weight` must outlive it.
class Replicator {
 public:
  Replicator(absl::Span<const int64_t> weight, int max_replicas_per_expert);

  // Adds replicas until there are `num_physical` physical experts. Fails,
  // adding nothing, when that is fewer than now or the cap makes it
  // unreachable.
  absl::Status GrowTo(int num_physical);

  const Replication& replication() const { return replication_; }

 private:
  // Heap order: the top is the largest load per replica, among equal ones the
  // lowest index.
  bool LowerPriority(int a, int b) const;
  // Moves expert e, whose load per replica just fell, to its place in
  // replication_.heaviest_first.
  void Resort(int e);

  absl::Span<const int64_t> weight_;
  int max_replicas_per_expert_;
  Replication replication_;
  std::vector<int> heap_;      // experts that may take another replica
  std::vector<int> position_;  // of each expert in replication_.heaviest_first
};

// True when load a / count_a > load b / count_b, exactly.
inline bool PerReplicaLoadGreater(int64_t load_a, int64_t count_a, int64_t load_b,
                                  int64_t count_b) {
  return static_cast<__int128>(load_a) * count_b > static_cast<__int128>(load_b) * count_a;
}

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_REPLICATE_H_
