#include "planner/transfer/internal/layer_model.h"

#include <algorithm>

#include "absl/container/inlined_vector.h"

namespace craft::planner::transfer_internal {

LayerModel::LayerModel(const LoadTrace& trace, int layer, std::vector<int> windows, int num_gpus)
    : num_gpus_(num_gpus),
      num_experts_(trace.num_experts()),
      num_windows_(static_cast<int>(windows.size())) {
  counts_.assign(static_cast<size_t>(num_experts_) * num_windows_, 0.0);
  expert_total_.assign(num_experts_, 0.0);
  for (int i = 0; i < num_windows_; ++i) {
    const absl::Span<const int64_t> counts = trace.replay_window(windows[i], layer);
    double total = 0;
    for (int e = 0; e < num_experts_; ++e) {
      const auto count = static_cast<double>(counts[e]);
      counts_[static_cast<size_t>(e) * num_windows_ + i] = count;
      expert_total_[e] += count;
      total += count;
    }
    window_mean_.push_back(total / num_gpus_);
  }
}

bool LayerModel::Holds(int gpu, int expert) const {
  const std::vector<int>& experts = gpu_experts_[gpu];
  return std::find(experts.begin(), experts.end(), expert) != experts.end();
}

void LayerModel::ReadPlacement(const LayerPlacement& placement) {
  // Cleared rather than reassigned: the inner vectors keep their capacity
  // across the thousands of updates of a search.
  gpu_experts_.resize(num_gpus_);
  for (std::vector<int>& experts : gpu_experts_) experts.clear();
  holders_.resize(num_experts_);
  for (std::vector<int>& gpus : holders_) gpus.clear();
  replicas_.assign(num_experts_, 0);
  int slot = 0;
  for (int g = 0; g < num_gpus_; ++g) {
    for (int i = 0; i < placement.slots_per_gpu[g]; ++i, ++slot) {
      const int e = placement.phy2log[slot];
      gpu_experts_[g].push_back(e);
      holders_[e].push_back(g);
      ++replicas_[e];
    }
  }
}

void LayerModel::Reset(const LayerPlacement& placement) {
  ReadPlacement(placement);
  load_.assign(static_cast<size_t>(num_windows_) * num_gpus_, 0.0);
  gpu_total_.assign(num_gpus_, 0.0);
  for (int g = 0; g < num_gpus_; ++g) LoadGpu(g);
  top_.assign(static_cast<size_t>(num_windows_) * kTop, -1);
  top_load_.assign(static_cast<size_t>(num_windows_) * kTop, -1.0);
  const int keep = std::min(kTop, num_gpus_);
  for (int g = 0; g < num_gpus_; ++g) {
    for (int w = 0; w < num_windows_; ++w) {
      // In ascending order a tie never ranks above: skip what cannot enter.
      if (LoadAt(g, w) > top_load_[static_cast<size_t>(w) * kTop + keep - 1]) Rank(w, g);
    }
  }
  Summarise();
}

void LayerModel::Update(const LayerPlacement& placement, absl::Span<const int> gpus) {
  ReadPlacement(placement);
  absl::InlinedVector<bool, 128> changed(num_gpus_, false);
  for (int g : gpus) {
    LoadGpu(g);
    changed[g] = true;
  }
  const int keep = std::min(kTop, num_gpus_);
  for (int w = 0; w < num_windows_; ++w) {
    int* top = &top_[static_cast<size_t>(w) * kTop];
    double* loads = &top_load_[static_cast<size_t>(w) * kTop];
    bool rescan = false;
    for (int k = 0; k < keep; ++k) rescan = rescan || changed[top[k]];
    if (rescan) {
      // A remembered GPU changed: the next one is not remembered.
      std::fill(top, top + kTop, -1);
      std::fill(loads, loads + kTop, -1.0);
      for (int g = 0; g < num_gpus_; ++g) {
        // In ascending order a tie never ranks above: skip what cannot enter.
        if (LoadAt(g, w) > loads[keep - 1]) Rank(w, g);
      }
    } else {
      // The top of the unchanged GPUs is the remembered one: merge the
      // changed GPUs into it, in the same order a full scan ranks them.
      for (int g : gpus) Rank(w, g);
    }
  }
  Summarise();
}

void LayerModel::LoadGpu(int gpu) {
  double* load = &load_[static_cast<size_t>(gpu) * num_windows_];
  std::fill(load, load + num_windows_, 0.0);
  // Summed in slot order per window, recomputed from the counts rather than
  // adjusted, so rounding never drifts.
  for (int e : gpu_experts_[gpu]) {
    const double* count = &counts_[static_cast<size_t>(e) * num_windows_];
    const double replicas = replicas_[e];
    for (int w = 0; w < num_windows_; ++w) load[w] += count[w] / replicas;
  }
  double total = 0;
  for (int w = 0; w < num_windows_; ++w) total += load[w];
  gpu_total_[gpu] = total;
}

void LayerModel::Rank(int window, int gpu) {
  // Busiest first, ties to the lowest GPU (a stable order keeps the planner
  // deterministic); the same as scanning GPUs in ascending order and
  // inserting each before the first strictly less busy one. Loads are >= 0,
  // so empty entries (-1) rank last.
  const int keep = std::min(kTop, num_gpus_);
  int* top = &top_[static_cast<size_t>(window) * kTop];
  double* loads = &top_load_[static_cast<size_t>(window) * kTop];
  const double load = LoadAt(gpu, window);
  auto above = [&](int k) { return load > loads[k] || (load == loads[k] && gpu < top[k]); };
  if (!above(keep - 1)) return;
  int k = keep - 1;
  while (k > 0 && above(k - 1)) {
    top[k] = top[k - 1];
    loads[k] = loads[k - 1];
    --k;
  }
  top[k] = gpu;
  loads[k] = load;
}

void LayerModel::Summarise() {
  times_busiest_.assign(num_gpus_, 0);
  window_max_.assign(num_windows_, 0.0);
  window_balance_.assign(num_windows_, 1.0);
  balancedness_ = 0;
  max_gpu_load_ = 0;
  for (int w = 0; w < num_windows_; ++w) {
    const int busiest = top_[static_cast<size_t>(w) * kTop];
    const double max = LoadAt(busiest, w);
    ++times_busiest_[busiest];
    window_max_[w] = max;
    window_balance_[w] = max > 0 ? window_mean_[w] / max : 1.0;
    balancedness_ += window_balance_[w];
    max_gpu_load_ += max;
  }
  balancedness_ /= num_windows_;
  max_gpu_load_ /= num_windows_;
}

LayerDelta LayerModel::Evaluate(absl::Span<const ReplicaChange> changes) const {
  LayerDelta delta;
  // The experts whose replica count changes, and their counts after.
  absl::InlinedVector<int, 4> experts;
  for (const ReplicaChange& c : changes) {
    if (std::find(experts.begin(), experts.end(), c.expert) == experts.end()) {
      experts.push_back(c.expert);
    }
  }
  absl::InlinedVector<int, 4> after(experts.size());
  for (size_t i = 0; i < experts.size(); ++i) {
    after[i] = replicas_[experts[i]];
    for (const ReplicaChange& c : changes) {
      if (c.expert == experts[i]) after[i] += c.delta;
    }
    if (after[i] < 1) return delta;
  }
  // Only the holders of those experts and the GPUs changed can change load.
  absl::InlinedVector<int, 16> candidates;
  for (int e : experts) candidates.insert(candidates.end(), holders_[e].begin(), holders_[e].end());
  for (const ReplicaChange& c : changes) candidates.push_back(c.gpu);
  std::sort(candidates.begin(), candidates.end());
  candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
  // Every GPU whose load changes, with (expert, coefficient) terms: the
  // expert's count times the coefficient is the GPU's load change. In GPU
  // order, then expert order, so the sums are the same whatever the layout.
  struct Term {
    int gpu_index;  // into `gpus`
    int expert;
    double coef;
  };
  absl::InlinedVector<Term, 16> terms;
  absl::InlinedVector<int, 16> gpus;
  for (int g : candidates) {
    bool touched = false;
    for (size_t i = 0; i < experts.size(); ++i) {
      const int e = experts[i];
      // Holders ascend: a hot expert has hundreds of them at thousands of GPUs.
      const auto [first, last] = std::equal_range(holders_[e].begin(), holders_[e].end(), g);
      const int before_here = static_cast<int>(last - first);
      int after_here = before_here;
      for (const ReplicaChange& c : changes) {
        if (c.gpu == g && c.expert == e) after_here += c.delta;
      }
      if (after_here < 0) return delta;
      const double coef = static_cast<double>(after_here) / after[i] -
                          static_cast<double>(before_here) / replicas_[e];
      if (coef != 0) {
        terms.push_back({static_cast<int>(gpus.size()), e, coef});
        touched = true;
      }
    }
    if (touched) gpus.push_back(g);
  }
  delta.valid = true;
  if (gpus.empty()) return delta;

  // The changed GPUs' loads in every window.
  const int windows = num_windows_;
  // On the stack for the usual few GPUs: this runs thousands of times a plan.
  absl::InlinedVector<double, 1024> changed(gpus.size() * windows);
  for (size_t i = 0; i < gpus.size(); ++i) {
    std::copy_n(&load_[static_cast<size_t>(gpus[i]) * windows], windows, &changed[i * windows]);
  }
  for (const Term& t : terms) {
    double* load = &changed[static_cast<size_t>(t.gpu_index) * windows];
    const double* count = &counts_[static_cast<size_t>(t.expert) * windows];
    for (int w = 0; w < windows; ++w) load[w] += t.coef * count[w];
  }
  // A table of the changed GPUs, kept per thread and cleared after use: a
  // table of every GPU made per call cost more than the rest at thousands of
  // GPUs, and Evaluate runs concurrently on one model.
  thread_local std::vector<char> marks;
  if (marks.size() < static_cast<size_t>(num_gpus_)) marks.resize(num_gpus_, 0);
  for (int g : gpus) marks[g] = 1;
  auto is_changed = [](int g) { return marks[g] != 0; };
  // Per window, the busiest GPU that does not change: the first of the
  // remembered top that does not, or a scan when all of them do (dropping a
  // replica of the hottest expert changes every GPU of the top). The scans
  // run GPU by GPU over those windows, along each GPU's contiguous loads.
  const int keep = std::min(kTop, num_gpus_);
  absl::InlinedVector<double, 128> new_max(windows, 0.0);
  absl::InlinedVector<int, 128> scan;
  for (int w = 0; w < windows; ++w) {
    for (size_t i = 0; i < gpus.size(); ++i) {
      new_max[w] = std::max(new_max[w], changed[i * windows + w]);
    }
    const int* top = &top_[static_cast<size_t>(w) * kTop];
    bool found = false;
    for (int k = 0; k < keep; ++k) {
      if (!is_changed(top[k])) {
        new_max[w] = std::max(new_max[w], LoadAt(top[k], w));
        found = true;
        break;
      }
    }
    if (!found) scan.push_back(w);
  }
  if (!scan.empty()) {
    for (int g = 0; g < num_gpus_; ++g) {
      if (is_changed(g)) continue;
      const double* load = &load_[static_cast<size_t>(g) * windows];
      for (int w : scan) new_max[w] = std::max(new_max[w], load[w]);
    }
  }
  for (int w = 0; w < windows; ++w) {
    const double new_b = new_max[w] > 0 ? window_mean_[w] / new_max[w] : 1.0;
    delta.balancedness += new_b - window_balance_[w];
    delta.max_gpu_load += new_max[w] - window_max_[w];
  }
  for (int g : gpus) marks[g] = 0;
  delta.balancedness /= windows;
  delta.max_gpu_load /= windows;
  return delta;
}

std::vector<std::pair<int, LayerDelta>> LayerModel::EvaluateDrops(int expert) const {
  std::vector<std::pair<int, LayerDelta>> out;
  const std::vector<int>& holders = holders_[expert];  // ascending, once per replica
  const int k = replicas_[expert];
  const int windows = num_windows_;
  // Distinct holders and their copies.
  std::vector<int> gpus;
  std::vector<int> copies;
  for (int g : holders) {
    if (!gpus.empty() && gpus.back() == g) {
      ++copies.back();
    } else {
      gpus.push_back(g);
      copies.push_back(1);
    }
  }
  if (k < 2) {  // dropping the last replica: invalid, as Evaluate says
    for (int g : gpus) out.push_back({g, LayerDelta{}});
    return out;
  }
  const double* count = &counts_[static_cast<size_t>(expert) * windows];
  // Per window, the busiest load among the GPUs that are not holders.
  std::vector<double> outside(windows, 0.0);
  std::vector<int> scan;
  const int keep = std::min(kTop, num_gpus_);
  auto is_holder = [&gpus](int g) { return std::binary_search(gpus.begin(), gpus.end(), g); };
  for (int w = 0; w < windows; ++w) {
    const int* top = &top_[static_cast<size_t>(w) * kTop];
    bool found = false;
    for (int t = 0; t < keep; ++t) {
      if (!is_holder(top[t])) {
        outside[w] = LoadAt(top[t], w);
        found = true;
        break;
      }
    }
    if (!found) scan.push_back(w);
  }
  if (!scan.empty()) {
    std::vector<char> holder(num_gpus_, 0);
    for (int g : gpus) holder[g] = 1;
    for (int g = 0; g < num_gpus_; ++g) {
      if (holder[g]) continue;
      const double* load = &load_[static_cast<size_t>(g) * windows];
      for (int w : scan) outside[w] = std::max(outside[w], load[w]);
    }
  }
  // A holder's load when another holder drops the replica, and when it drops
  // one itself; the same expressions as Evaluate's terms.
  const auto coef = [&](int after_here, int before_here) {
    return static_cast<double>(after_here) / (k - 1) - static_cast<double>(before_here) / k;
  };
  const size_t n = gpus.size();
  std::vector<double> other(n * windows), own(n * windows);
  for (size_t i = 0; i < n; ++i) {
    const double* load = &load_[static_cast<size_t>(gpus[i]) * windows];
    const double c_other = coef(copies[i], copies[i]);
    const double c_own = coef(copies[i] - 1, copies[i]);
    for (int w = 0; w < windows; ++w) {
      other[i * windows + w] = load[w] + c_other * count[w];
      own[i * windows + w] = load[w] + c_own * count[w];
    }
  }
  // Per window, the two holders with the highest `other` load, so each
  // holder finds the busiest of the others without a scan.
  std::vector<int> first(windows, -1), second(windows, -1);
  for (size_t i = 0; i < n; ++i) {
    for (int w = 0; w < windows; ++w) {
      const double v = other[i * windows + w];
      int& a = first[w];
      int& b = second[w];
      if (a < 0 || v > other[a * windows + w]) {
        b = a;
        a = static_cast<int>(i);
      } else if (b < 0 || v > other[b * windows + w]) {
        b = static_cast<int>(i);
      }
    }
  }
  for (size_t i = 0; i < n; ++i) {
    LayerDelta delta;
    delta.valid = true;
    for (int w = 0; w < windows; ++w) {
      double new_max = std::max(outside[w], own[i * windows + w]);
      const int best_other = first[w] == static_cast<int>(i) ? second[w] : first[w];
      if (best_other >= 0) new_max = std::max(new_max, other[best_other * windows + w]);
      const double new_b = new_max > 0 ? window_mean_[w] / new_max : 1.0;
      delta.balancedness += new_b - window_balance_[w];
      delta.max_gpu_load += new_max - window_max_[w];
    }
    delta.balancedness /= windows;
    delta.max_gpu_load /= windows;
    out.push_back({gpus[i], delta});
  }
  return out;
}

}  // namespace craft::planner::transfer_internal
