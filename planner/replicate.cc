#include "planner/replicate.h"

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
  // A linear argmax per extra slot: O((P - E) * E), a few microseconds for
  // real shapes, and its tie rule is obvious.
  for (int p = num_logical; p < num_physical; ++p) {
    int best = -1;
    for (int e = 0; e < num_logical; ++e) {
      if (out.logcnt[e] >= max_replicas_per_expert) continue;
      if (best < 0 ||
          PerReplicaLoadGreater(weight[e], out.logcnt[e], weight[best], out.logcnt[best])) {
        best = e;
      }
    }
    out.phy2log.push_back(best);
    out.rank.push_back(out.logcnt[best]);
    ++out.logcnt[best];
  }
  return out;
}

}  // namespace craft::planner
