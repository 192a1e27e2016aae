#include "planner/transfer/internal/layer_model.h"

#include <algorithm>

namespace craft::planner::transfer_internal {

LayerModel::LayerModel(const LoadTrace& trace, int layer, std::vector<int> windows, int num_gpus)
    : trace_(trace), layer_(layer), num_gpus_(num_gpus) {
  expert_total_.assign(trace.num_experts(), 0.0);
  for (int w : windows) {
    counts_.push_back(trace_.replay_window(w, layer_));
    double total = 0;
    for (int e = 0; e < trace.num_experts(); ++e) {
      expert_total_[e] += static_cast<double>(counts_.back()[e]);
      total += static_cast<double>(counts_.back()[e]);
    }
    window_mean_.push_back(total / num_gpus_);
  }
}

bool LayerModel::Holds(int gpu, int expert) const {
  const std::vector<int>& experts = gpu_experts_[gpu];
  return std::find(experts.begin(), experts.end(), expert) != experts.end();
}

void LayerModel::ReadPlacement(const LayerPlacement& placement) {
  gpu_experts_.assign(num_gpus_, {});
  replicas_.assign(trace_.num_experts(), 0);
  int slot = 0;
  for (int g = 0; g < num_gpus_; ++g) {
    for (int i = 0; i < placement.slots_per_gpu[g]; ++i, ++slot) {
      gpu_experts_[g].push_back(placement.phy2log[slot]);
      ++replicas_[placement.phy2log[slot]];
    }
  }
}

double LayerModel::GpuWindowLoad(int window, int gpu) const {
  double sum = 0;
  for (int e : gpu_experts_[gpu]) sum += Count(window, e) / replicas_[e];
  return sum;
}

void LayerModel::Reset(const LayerPlacement& placement) {
  ReadPlacement(placement);
  const int windows = static_cast<int>(counts_.size());
  load_.assign(static_cast<size_t>(windows) * num_gpus_, 0.0);
  for (int w = 0; w < windows; ++w) {
    for (int g = 0; g < num_gpus_; ++g) {
      load_[static_cast<size_t>(w) * num_gpus_ + g] = GpuWindowLoad(w, g);
    }
  }
  Summarise();
}

void LayerModel::Update(const LayerPlacement& placement, absl::Span<const int> gpus) {
  ReadPlacement(placement);
  const int windows = static_cast<int>(counts_.size());
  // Recomputed from the counts rather than adjusted, so rounding never drifts.
  for (int w = 0; w < windows; ++w) {
    for (int g : gpus) load_[static_cast<size_t>(w) * num_gpus_ + g] = GpuWindowLoad(w, g);
  }
  Summarise();
}

void LayerModel::Summarise() {
  const int windows = static_cast<int>(counts_.size());
  top_.assign(static_cast<size_t>(windows) * kTop, -1);
  gpu_total_.assign(num_gpus_, 0.0);
  times_busiest_.assign(num_gpus_, 0);
  balancedness_ = 0;
  max_gpu_load_ = 0;
  for (int w = 0; w < windows; ++w) {
    const double* load = &load_[static_cast<size_t>(w) * num_gpus_];
    for (int g = 0; g < num_gpus_; ++g) gpu_total_[g] += load[g];
    // The kTop busiest, ties to the lowest GPU (a stable order keeps the
    // planner deterministic).
    int* top = &top_[static_cast<size_t>(w) * kTop];
    const int keep = std::min(kTop, num_gpus_);
    for (int g = 0; g < num_gpus_; ++g) {
      if (top[keep - 1] >= 0 && load[g] <= load[top[keep - 1]]) continue;
      for (int k = 0; k < keep; ++k) {
        if (top[k] < 0 || load[g] > load[top[k]]) {
          for (int j = keep - 1; j > k; --j) top[j] = top[j - 1];
          top[k] = g;
          break;
        }
      }
    }
    const double max = load[top[0]];
    ++times_busiest_[top[0]];
    balancedness_ += max > 0 ? window_mean_[w] / max : 1.0;
    max_gpu_load_ += max;
  }
  balancedness_ /= windows;
  max_gpu_load_ /= windows;
}

LayerDelta LayerModel::Evaluate(absl::Span<const ReplicaChange> changes) const {
  LayerDelta delta;
  // The experts whose replica count changes, and their counts before/after.
  std::vector<int> experts;
  for (const ReplicaChange& c : changes) {
    if (std::find(experts.begin(), experts.end(), c.expert) == experts.end()) {
      experts.push_back(c.expert);
    }
  }
  std::vector<int> after(experts.size());
  for (size_t i = 0; i < experts.size(); ++i) {
    after[i] = replicas_[experts[i]];
    for (const ReplicaChange& c : changes) {
      if (c.expert == experts[i]) after[i] += c.delta;
    }
    if (after[i] < 1) return delta;
  }
  // Every GPU whose load changes, with (expert, coefficient) terms: the
  // expert's count times the coefficient is the GPU's load change.
  struct Term {
    int gpu;
    int expert;
    double coef;
  };
  std::vector<Term> terms;
  std::vector<int> gpus;
  for (int g = 0; g < num_gpus_; ++g) {
    bool touched = false;
    for (size_t i = 0; i < experts.size(); ++i) {
      const int e = experts[i];
      int before_here =
          static_cast<int>(std::count(gpu_experts_[g].begin(), gpu_experts_[g].end(), e));
      int after_here = before_here;
      for (const ReplicaChange& c : changes) {
        if (c.gpu == g && c.expert == e) after_here += c.delta;
      }
      if (after_here < 0) return delta;
      const double coef = static_cast<double>(after_here) / after[i] -
                          static_cast<double>(before_here) / replicas_[e];
      if (coef != 0) {
        terms.push_back({g, e, coef});
        touched = true;
      }
    }
    if (touched) gpus.push_back(g);
  }
  delta.valid = true;
  if (gpus.empty()) return delta;
  const int windows = static_cast<int>(counts_.size());
  std::vector<double> changed(gpus.size());
  for (int w = 0; w < windows; ++w) {
    const double* load = &load_[static_cast<size_t>(w) * num_gpus_];
    double new_max = 0;
    for (size_t i = 0; i < gpus.size(); ++i) changed[i] = load[gpus[i]];
    for (const Term& t : terms) {
      const size_t i = std::find(gpus.begin(), gpus.end(), t.gpu) - gpus.begin();
      changed[i] += t.coef * Count(w, t.expert);
    }
    for (double value : changed) new_max = std::max(new_max, value);
    // The busiest GPU that does not change: from the remembered top, or a
    // scan when all of them change.
    const int* top = &top_[static_cast<size_t>(w) * kTop];
    bool found = false;
    for (int k = 0; k < std::min(kTop, num_gpus_); ++k) {
      if (std::find(gpus.begin(), gpus.end(), top[k]) == gpus.end()) {
        new_max = std::max(new_max, load[top[k]]);
        found = true;
        break;
      }
    }
    if (!found) {
      for (int g = 0; g < num_gpus_; ++g) {
        if (std::find(gpus.begin(), gpus.end(), g) == gpus.end()) {
          new_max = std::max(new_max, load[g]);
        }
      }
    }
    const double old_max = load[top[0]];
    const double old_b = old_max > 0 ? window_mean_[w] / old_max : 1.0;
    const double new_b = new_max > 0 ? window_mean_[w] / new_max : 1.0;
    delta.balancedness += new_b - old_b;
    delta.max_gpu_load += new_max - old_max;
  }
  delta.balancedness /= windows;
  delta.max_gpu_load /= windows;
  return delta;
}

}  // namespace craft::planner::transfer_internal
