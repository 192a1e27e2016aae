// Choosing how many replicas each logical expert of one layer gets.
#ifndef CRAFT_PLANNER_REPLICATE_H_
#define CRAFT_PLANNER_REPLICATE_H_

#include <cstdint>
#include <limits>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace craft::planner {

// Physical experts of one layer before they are placed on GPUs.
struct Replication {
  std::vector<int> phy2log;  // num_physical entries; the first E are 0..E-1
  std::vector<int> rank;     // replica index of each physical expert
  std::vector<int> logcnt;   // replicas per logical expert
};

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

// True when load a / count_a > load b / count_b, exactly.
inline bool PerReplicaLoadGreater(int64_t load_a, int64_t count_a, int64_t load_b,
                                  int64_t count_b) {
  return static_cast<__int128>(load_a) * count_b > static_cast<__int128>(load_b) * count_a;
}

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_REPLICATE_H_
