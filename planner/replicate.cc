#include "planner/replicate.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

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
  Replicator replicator(weight, max_replicas_per_expert);
  CRAFT_RETURN_IF_ERROR(replicator.GrowTo(num_physical));
  return replicator.replication();
}

Replicator::Replicator(absl::Span<const int64_t> weight, int max_replicas_per_expert)
    : weight_(weight), max_replicas_per_expert_(max_replicas_per_expert) {
  const int num_logical = static_cast<int>(weight.size());
  replication_.logcnt.assign(num_logical, 1);
  replication_.phy2log.resize(num_logical);
  std::iota(replication_.phy2log.begin(), replication_.phy2log.end(), 0);
  replication_.rank.assign(num_logical, 0);
  replication_.heaviest_first = HeaviestFirstOrder(weight_, replication_.logcnt);
  position_.resize(num_logical);
  for (int i = 0; i < num_logical; ++i) position_[replication_.heaviest_first[i]] = i;
  // A max-heap on load per replica: O(log E) per replica.
  if (max_replicas_per_expert > 1) {
    heap_.resize(num_logical);
    std::iota(heap_.begin(), heap_.end(), 0);
    std::make_heap(heap_.begin(), heap_.end(),
                   [this](int a, int b) { return LowerPriority(a, b); });
  }
}

bool HeavierPerReplica(absl::Span<const int64_t> weight, const std::vector<int>& count, int a,
                       int b) {
  if (PerReplicaLoadGreater(weight[a], count[a], weight[b], count[b])) return true;
  if (PerReplicaLoadGreater(weight[b], count[b], weight[a], count[a])) return false;
  return a < b;
}

bool Replicator::LowerPriority(int a, int b) const {
  return HeavierPerReplica(weight_, replication_.logcnt, b, a);
}

std::vector<int> HeaviestFirstOrder(absl::Span<const int64_t> weight,
                                    const std::vector<int>& count) {
  std::vector<int> experts(weight.size());
  std::iota(experts.begin(), experts.end(), 0);
  // Division rounds monotonically, so the rounded loads order all but the
  // near-equal ones, which the exact comparison settles.
  std::vector<double> share(weight.size());
  for (size_t e = 0; e < share.size(); ++e) {
    share[e] = static_cast<double>(weight[e]) / count[e];
  }
  std::sort(experts.begin(), experts.end(), [&](int a, int b) {
    if (share[a] != share[b]) return share[a] > share[b];
    return HeavierPerReplica(weight, count, a, b);
  });
  return experts;
}

void Replicator::Resort(int e) {
  std::vector<int>& order = replication_.heaviest_first;
  // e only got lighter, so it moves towards the end, past every expert now
  // heavier than it.
  for (int at = position_[e]; at + 1 < static_cast<int>(order.size()); ++at) {
    const int next = order[at + 1];
    if (!HeavierPerReplica(weight_, replication_.logcnt, next, e)) break;
    order[at] = next;
    position_[next] = at;
    order[at + 1] = e;
    position_[e] = at + 1;
  }
}

absl::Status Replicator::GrowTo(int num_physical) {
  const int current = static_cast<int>(replication_.phy2log.size());
  if (num_physical < current) {
    return absl::InvalidArgumentError(absl::StrCat("cannot shrink a replication of ", current,
                                                   " physical experts to ", num_physical));
  }
  if (num_physical > static_cast<int64_t>(weight_.size()) * max_replicas_per_expert_) {
    return absl::InvalidArgumentError(
        absl::StrCat(num_physical, " physical slots need more than ", max_replicas_per_expert_,
                     " replicas per expert for ", weight_.size(), " experts"));
  }
  auto lower_priority = [this](int a, int b) { return LowerPriority(a, b); };
  for (int p = current; p < num_physical; ++p) {
    std::pop_heap(heap_.begin(), heap_.end(), lower_priority);
    const int best = heap_.back();
    replication_.phy2log.push_back(best);
    replication_.rank.push_back(replication_.logcnt[best]);
    ++replication_.logcnt[best];
    Resort(best);
    if (replication_.logcnt[best] < max_replicas_per_expert_) {
      std::push_heap(heap_.begin(), heap_.end(), lower_priority);
    } else {
      heap_.pop_back();  // capped: no more replicas
    }
  }
  return absl::OkStatus();
}

}  // namespace craft::planner
