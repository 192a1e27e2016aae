#include "planner/replicate.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace craft::planner {

absl::StatusOr<Replication> ReplicateExperts(absl::Span<const int64_t> weight, int num_physical,
                                             int max_replicas_per_expert) {
  const int num_logical = static_cast<int>(weight.size());
  if (num_physical < num_logical) {
    return absl::InvalidArgumentError(absl::StrCat("cannot fit ", num_logical, " experts into ",
                                                   num_physical, " physical slots"));
  }
  if (max_replicas_per_expert < 1 ||
      static_cast<int64_t>(num_logical) * max_replicas_per_expert < num_physical) {
    return absl::InvalidArgumentError(
        absl::StrCat(num_physical, " physical slots need more than ", max_replicas_per_expert,
                     " replicas per expert for ", num_logical, " experts"));
  }
  Replication out;
  out.phy2log.reserve(num_physical);
  out.rank.reserve(num_physical);
  out.logcnt.assign(num_logical, 1);
  for (int e = 0; e < num_logical; ++e) {
    out.phy2log.push_back(e);
    out.rank.push_back(0);
  }
  // A max-heap on load per replica: O((P - E) log E). The comparator makes
  // the top the largest w / count, and among equal ones the lowest index.
  auto lower_priority = [&](int a, int b) {
    if (PerReplicaLoadGreater(weight[b], out.logcnt[b], weight[a], out.logcnt[a])) return true;
    if (PerReplicaLoadGreater(weight[a], out.logcnt[a], weight[b], out.logcnt[b])) return false;
    return a > b;
  };
  std::vector<int> heap(num_logical);
  std::iota(heap.begin(), heap.end(), 0);
  std::make_heap(heap.begin(), heap.end(), lower_priority);
  for (int p = num_logical; p < num_physical; ++p) {
    std::pop_heap(heap.begin(), heap.end(), lower_priority);
    const int best = heap.back();
    out.phy2log.push_back(best);
    out.rank.push_back(out.logcnt[best]);
    ++out.logcnt[best];
    if (out.logcnt[best] < max_replicas_per_expert) {
      std::push_heap(heap.begin(), heap.end(), lower_priority);
    } else {
      heap.pop_back();  // capped: no more replicas
    }
  }
  return out;
}

}  // namespace craft::planner
