#include "planner/transfer/incremental.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "common/status_macros.h"
#include "planner/parallel.h"
#include "planner/transfer/internal/layer_model.h"
#include "planner/transfer/internal/slot_diff.h"
#include "planner/transfer/movement.h"

namespace craft::planner {
namespace {

using transfer_internal::LayerDelta;
using transfer_internal::LayerModel;
using transfer_internal::ReplicaChange;

// How many candidates of each kind a layer keeps after ranking by its cheap
// aggregate proxy; only these are replayed on the windows.
constexpr int kSources = 3;        // busiest GPUs, by total load and by windows as the busiest
constexpr int kDestinations = 16;  // least loaded GPUs
constexpr int kShortlist = 8;
// A move that moves nothing (or brings a committed replica back) is charged
// this much, so it ranks first without dividing by zero.
constexpr double kFreeMoveCost = 0.25;

// A move with its predicted effect.
struct Candidate {
  IncrementalMove move;
  double gain = 0;        // predicted mean balancedness (model level)
  double step_delta = 0;  // predicted step time change
  // Its change in moved replicas, in total and per edited GPU. Cached when
  // the candidate is made: they depend only on its layers' slots, and a
  // layer's candidates are remade whenever its slots change.
  int64_t cost = 0;
  std::vector<std::pair<int, int>> into;
};

// One redundant replica a GPU could give up in some layer, for shifts.
struct Donor {
  int expert = -1;
  double gain = 0;  // usually negative: the layer loses balance
  double step_delta = 0;
  int cost = 0;  // 0, or -1 when the replica had arrived since the committed layout
};

std::vector<ReplicaChange> ChangesOf(const std::vector<SlotEdit>& edits, int layer) {
  std::vector<ReplicaChange> changes;
  for (const SlotEdit& e : edits) {
    if (e.layer != layer) continue;
    if (e.remove_expert >= 0) changes.push_back({e.gpu, e.remove_expert, -1});
    if (e.add_expert >= 0) changes.push_back({e.gpu, e.add_expert, +1});
  }
  return changes;
}

absl::Status ApplyEdit(const SlotEdit& edit, Layout& layout) {
  if (edit.layer < 0 || edit.layer >= layout.num_layers() || edit.gpu < 0 ||
      edit.gpu >= layout.cluster.num_gpus || (edit.remove_expert < 0 && edit.add_expert < 0) ||
      edit.add_expert >= layout.num_experts) {
    return absl::InvalidArgumentError(
        absl::StrCat("move does not fit the layout: layer ", edit.layer, " GPU ", edit.gpu));
  }
  LayerPlacement& layer = layout.layers[edit.layer];
  const int begin = layer.SlotOffset(edit.gpu);
  const int end = begin + layer.slots_per_gpu[edit.gpu];
  if (edit.remove_expert < 0) {
    layer.phy2log.insert(layer.phy2log.begin() + end, edit.add_expert);
    ++layer.slots_per_gpu[edit.gpu];
    return absl::OkStatus();
  }
  // The last replica of the leaving expert on this GPU.
  int slot = -1;
  for (int p = end - 1; p >= begin; --p) {
    if (layer.phy2log[p] == edit.remove_expert) {
      slot = p;
      break;
    }
  }
  if (slot < 0) {
    return absl::InvalidArgumentError(absl::StrCat("move does not fit the layout: GPU ", edit.gpu,
                                                   " holds no expert ", edit.remove_expert,
                                                   " in layer ", edit.layer));
  }
  if (edit.add_expert >= 0) {
    layer.phy2log[slot] = edit.add_expert;
  } else {
    layer.phy2log.erase(layer.phy2log.begin() + slot);
    --layer.slots_per_gpu[edit.gpu];
  }
  return absl::OkStatus();
}

// The replay windows predictions use: at most `max_windows`, evenly spaced.
std::vector<int> ReplaySample(const LoadTrace& trace, int max_windows) {
  const int windows = trace.num_replay_windows();
  const int keep = std::min(windows, std::max(1, max_windows));
  std::vector<int> sample;
  for (int i = 0; i < keep; ++i) {
    sample.push_back(static_cast<int>(static_cast<int64_t>(i) * windows / keep));
  }
  return sample;
}

// The greedy search: the working layout, a model per layer, what has arrived
// on every GPU so far, and every layer's shortlisted candidates.
class Search {
 public:
  Search(const Layout& committed, const LoadTrace& trace, const IncrementalOptions& options)
      : committed_(committed), current_(committed), options_(options) {
    const std::vector<int> sample = ReplaySample(trace, options.max_replay_windows);
    const int gpus = committed.cluster.num_gpus;
    for (int l = 0; l < committed.num_layers(); ++l) {
      models_.push_back(std::make_unique<LayerModel>(trace, l, sample, gpus));
      models_.back()->Reset(current_.layers[l]);
      committed_layers_.emplace_back(committed_.layers[l]);
    }
    arrivals_.assign(committed.num_layers(), std::vector<int>(gpus, 0));
    into_gpu_.assign(gpus, 0);
    slots_per_gpu_ = committed.SlotsOnGpu(0);
    local_.resize(committed.num_layers());
    adds_.resize(committed.num_layers());
    donors_.resize(committed.num_layers());
  }

  int slots_per_gpu() const { return slots_per_gpu_; }

  FrontierPoint Point(int num_moves) const {
    FrontierPoint point;
    point.num_moves = num_moves;
    point.moved_replicas = moved_;
    point.new_slots = static_cast<int64_t>(slots_per_gpu_) * current_.cluster.num_gpus;
    point.moved_fraction = static_cast<double>(moved_) / point.new_slots;
    point.max_bytes_into_gpu =
        static_cast<int64_t>(*std::max_element(into_gpu_.begin(), into_gpu_.end())) *
        options_.bytes_per_expert;
    double sum = 0;
    for (const auto& model : models_) {
      sum += model->balancedness();
      point.predicted_step_time += model->max_gpu_load();
    }
    point.predicted_balancedness = sum / models_.size();
    return point;
  }

  // One grow step: a new slot on every GPU, each holding the GPU's best new
  // replica over all layers. False when the step would exceed the limit.
  bool Grow(std::vector<IncrementalMove>& moves) {
    const int gpus = current_.cluster.num_gpus;
    const int64_t new_slots = static_cast<int64_t>(slots_per_gpu_ + 1) * gpus;
    const int64_t max_into = *std::max_element(into_gpu_.begin(), into_gpu_.end());
    if (!options_.limit.Admits(moved_ + gpus, new_slots,
                               (max_into + 1) * options_.bytes_per_expert)) {
      return false;
    }
    for (int g = 0; g < gpus; ++g) {
      Candidate best;
      bool found = false;
      for (int l = 0; l < current_.num_layers(); ++l) {
        for (int e : HottestNotOn(l, g, 3)) {
          IncrementalMove move{MoveKind::kGrow, {{l, g, -1, e}}};
          const LayerDelta d = models_[l]->Evaluate(ChangesOf(move.edits, l));
          const double gain = d.balancedness / models_.size();
          if (d.valid && (!found || gain > best.gain)) {
            best = {move, gain, d.max_gpu_load};
            found = true;
          }
        }
      }
      Apply(best.move);
      moves.push_back(best.move);
    }
    ++slots_per_gpu_;
    return true;
  }

  // One uniform grow step: a new slot on every GPU in every layer, each
  // holding the GPU's best new replica of that layer (a uniform layout's
  // layers all hold the same slots, so they grow together). False when the
  // step would exceed the limit or a GPU already holds every expert of a layer.
  bool GrowUniform(std::vector<IncrementalMove>& moves) {
    const int gpus = current_.cluster.num_gpus;
    const int layers = current_.num_layers();
    const int64_t new_slots = static_cast<int64_t>(slots_per_gpu_ + layers) * gpus;
    const int64_t max_into = *std::max_element(into_gpu_.begin(), into_gpu_.end());
    if (!options_.limit.Admits(moved_ + static_cast<int64_t>(layers) * gpus, new_slots,
                               (max_into + layers) * options_.bytes_per_expert)) {
      return false;
    }
    for (int l = 0; l < layers; ++l) {
      for (int g = 0; g < gpus; ++g) {
        if (HottestNotOn(l, g, 1).empty()) return false;
      }
    }
    for (int l = 0; l < layers; ++l) {
      for (int g = 0; g < gpus; ++g) {
        // The hottest candidate, unless another gains more.
        IncrementalMove best;
        double best_gain = 0;
        for (int e : HottestNotOn(l, g, 3)) {
          IncrementalMove move{MoveKind::kGrow, {{l, g, -1, e}}};
          const LayerDelta d = models_[l]->Evaluate(ChangesOf(move.edits, l));
          if (best.edits.empty() || (d.valid && d.balancedness > best_gain)) {
            best_gain = d.valid ? d.balancedness : -1;
            best = std::move(move);
          }
        }
        Apply(best);
        moves.push_back(std::move(best));
      }
    }
    slots_per_gpu_ += layers;
    return true;
  }

  // Shortlists candidates in every layer (after growth, before the loop).
  // Refresh(l) writes only layer l's shortlists and reads what no refresh
  // writes, so layers refresh in parallel.
  void RefreshLayers(const std::vector<int>& layers) {
    const absl::Status done =
        ParallelFor(static_cast<int>(layers.size()), options_.threads, [&](int i) {
          Refresh(layers[i]);
          return absl::OkStatus();
        });
    (void)done;  // Refresh cannot fail
  }

  void RefreshAll() {
    std::vector<int> every(current_.num_layers());
    std::iota(every.begin(), every.end(), 0);
    RefreshLayers(every);
    touched_.clear();
    best_donors_.assign(current_.cluster.num_gpus, {-1, -1});
    for (int g = 0; g < current_.cluster.num_gpus; ++g) {
      for (int l = 0; l < current_.num_layers(); ++l) RankDonor(l, g);
    }
  }

  // The best move by gain per replica moved that fits the byte limit, or
  // none. `cost` receives its change in moved replicas.
  std::optional<Candidate> Best(int64_t& cost) const {
    // Scored without copying candidates; the winner is built at the end.
    bool found = false;
    double best_score = 0;
    const Candidate* best_local = nullptr;
    int best_layer = -1;  // a shift: adds_[best_layer][best_add] paid by best_other
    int best_add = -1;
    int best_other = -1;
    auto admits = [&](double gain, int64_t delta, int gpu, int change, double& score) {
      if (change > 0 && !FitsBytes(into_gpu_[gpu] + change)) return false;
      if (gain <= options_.min_gain_per_replica * std::max<int64_t>(delta, 1)) return false;
      score = gain / std::max(static_cast<double>(delta), kFreeMoveCost);
      return !found || score > best_score;
    };
    for (int l = 0; l < current_.num_layers(); ++l) {
      for (const Candidate& c : local_[l]) {
        bool fits = true;
        for (const auto& [gpu, change] : c.into) {
          if (change > 0 && !FitsBytes(into_gpu_[gpu] + change)) fits = false;
        }
        double score = 0;
        if (fits && admits(c.gain, c.cost, 0, 0, score)) {
          found = true;
          best_score = score;
          best_local = &c;
          cost = c.cost;
        }
      }
      // Shifts: a layer's best additions, each paid by the GPU's cheapest
      // redundant replica in another layer (never in uniform layouts).
      if (options_.uniform_redundant_per_layer.has_value()) continue;
      for (size_t i = 0; i < adds_[l].size(); ++i) {
        const Candidate& add = adds_[l][i];
        const SlotEdit& edit = add.move.edits[0];
        const auto& [first, second] = best_donors_[edit.gpu];
        const int other = first >= 0 && first != l ? first : second;
        if (other < 0) continue;
        const Donor& donor = donors_[other][edit.gpu];
        const int64_t delta = add.cost + donor.cost;
        double score = 0;
        if (admits(add.gain + donor.gain, delta, edit.gpu, static_cast<int>(add.cost) + donor.cost,
                   score)) {
          found = true;
          best_score = score;
          best_local = nullptr;
          best_layer = l;
          best_add = static_cast<int>(i);
          best_other = other;
          cost = delta;
        }
      }
    }
    if (!found) return std::nullopt;
    if (best_local != nullptr) return *best_local;
    const Candidate& add = adds_[best_layer][best_add];
    const SlotEdit& edit = add.move.edits[0];
    const Donor& donor = donors_[best_other][edit.gpu];
    return Candidate{{MoveKind::kShift, {{best_other, edit.gpu, donor.expert, -1}, edit}},
                     add.gain + donor.gain,
                     add.step_delta + donor.step_delta,
                     add.cost + donor.cost,
                     {{edit.gpu, static_cast<int>(add.cost) + donor.cost}}};
  }

  void Apply(const IncrementalMove& move) {
    std::vector<std::pair<int, int>> into;
    moved_ += MovedDelta(move, &into);
    for (const auto& [gpu, delta] : into) into_gpu_[gpu] += delta;
    // Per layer, the GPUs whose loads change: the edited ones and every holder
    // of an expert whose replica count changes (before the edit; after it
    // they are the same GPUs plus the edited ones).
    std::vector<std::pair<int, std::vector<int>>> layers;
    for (const SlotEdit& edit : move.edits) {
      auto it = std::find_if(layers.begin(), layers.end(),
                             [&](const auto& entry) { return entry.first == edit.layer; });
      if (it == layers.end()) it = layers.insert(layers.end(), {edit.layer, {}});
      std::vector<int>& gpus = it->second;
      gpus.push_back(edit.gpu);
      const LayerModel& model = *models_[edit.layer];
      for (int expert : {edit.remove_expert, edit.add_expert}) {
        if (expert < 0) continue;
        gpus.insert(gpus.end(), model.Holders(expert).begin(), model.Holders(expert).end());
      }
    }
    for (const SlotEdit& edit : move.edits) {
      // Checked by construction: the search only builds moves that fit.
      ApplyEdit(edit, current_).IgnoreError();
      arrivals_[edit.layer][edit.gpu] = Arrivals(edit.layer, edit.gpu);
    }
    for (auto& [l, gpus] : layers) {
      std::sort(gpus.begin(), gpus.end());
      gpus.erase(std::unique(gpus.begin(), gpus.end()), gpus.end());
      models_[l]->Update(current_.layers[l], gpus);
      touched_.push_back(l);
    }
  }

  // Re-shortlists the layers changed since the last call.
  void RefreshTouched() {
    std::sort(touched_.begin(), touched_.end());
    touched_.erase(std::unique(touched_.begin(), touched_.end()), touched_.end());
    RefreshLayers(touched_);
    // Per GPU, the two best donor layers change only through the refreshed
    // layers: rescan when one of them was ranked, else rank them in.
    for (int g = 0; g < current_.cluster.num_gpus; ++g) {
      auto& [first, second] = best_donors_[g];
      const bool ranked = std::binary_search(touched_.begin(), touched_.end(), first) ||
                          std::binary_search(touched_.begin(), touched_.end(), second);
      if (ranked) {
        best_donors_[g] = {-1, -1};
        for (int l = 0; l < current_.num_layers(); ++l) RankDonor(l, g);
      } else {
        for (int l : touched_) RankDonor(l, g);
      }
    }
    touched_.clear();
  }

  int64_t moved() const { return moved_; }

 private:
  // Ranks layer l's donor on GPU g into best_donors_[g]: by gain, ties to
  // the lower layer (what a scan over ascending layers keeps).
  void RankDonor(int l, int g) {
    const Donor& donor = donors_[l][g];
    if (donor.expert < 0) return;
    auto above = [&](int other) {
      const double gain = donors_[other][g].gain;
      return donor.gain > gain || (donor.gain == gain && l < other);
    };
    auto& [first, second] = best_donors_[g];
    if (first < 0 || above(first)) {
      second = first;
      first = l;
    } else if (second < 0 || above(second)) {
      second = l;
    }
  }

  bool FitsBytes(int64_t replicas) const {
    return replicas <= options_.limit.max_bytes_into_gpu / options_.bytes_per_expert;
  }

  int Arrivals(int layer, int gpu) const {
    return static_cast<int>(
        ArrivingReplicas(committed_layers_[layer].Experts(gpu),
                         transfer_internal::GpuExperts(current_.layers[layer], gpu)));
  }

  // The change in moved replicas `move` would make, and per (GPU, change) in
  // `into` (one entry per edited GPU and layer).
  int64_t MovedDelta(const IncrementalMove& move, std::vector<std::pair<int, int>>* into) const {
    into->clear();
    int64_t total = 0;
    absl::InlinedVector<std::pair<int, int>, 4> seen;
    for (const SlotEdit& edit : move.edits) {
      const std::pair<int, int> key{edit.layer, edit.gpu};
      if (std::find(seen.begin(), seen.end(), key) != seen.end()) continue;
      seen.push_back(key);
      const std::vector<int>& held = models_[edit.layer]->GpuExperts(edit.gpu);
      absl::InlinedVector<int, 16> after(held.begin(), held.end());
      for (const SlotEdit& e : move.edits) {
        if (e.layer != edit.layer || e.gpu != edit.gpu) continue;
        if (e.remove_expert >= 0) {
          after.erase(std::find(after.begin(), after.end(), e.remove_expert));
        }
        if (e.add_expert >= 0) after.push_back(e.add_expert);
      }
      const int delta = static_cast<int>(ArrivingReplicas(
                            committed_layers_[edit.layer].Experts(edit.gpu), after)) -
                        arrivals_[edit.layer][edit.gpu];
      into->push_back({edit.gpu, delta});
      total += delta;
    }
    return total;
  }

  // Up to `n` experts of layer l with the largest load per replica that GPU
  // g does not hold.
  std::vector<int> HottestNotOn(int l, int g, int n) const {
    const LayerModel& m = *models_[l];
    std::vector<int> best;
    for (int e = 0; e < current_.num_experts; ++e) {
      if (m.Holds(g, e)) continue;
      best.push_back(e);
      std::sort(best.begin(), best.end(), [&](int a, int b) {
        return m.ReplicaLoad(a) != m.ReplicaLoad(b) ? m.ReplicaLoad(a) > m.ReplicaLoad(b) : a < b;
      });
      if (static_cast<int>(best.size()) > n) best.pop_back();
    }
    return best;
  }

  Candidate Scored(int l, IncrementalMove move) const {
    const LayerDelta d = models_[l]->Evaluate(ChangesOf(move.edits, l));
    Candidate c{std::move(move), d.valid ? d.balancedness / models_.size() : -1, d.max_gpu_load};
    if (d.valid) c.cost = MovedDelta(c.move, &c.into);
    return c;
  }

  // The cheap proxy moves are ranked by before replaying them: how much the
  // pair (source, destination) max of total load drops.
  // Kept as plain numbers: thousands are ranked per refresh, a few become
  // moves. kSwap: x on g <-> y on h; kReplace: x replaces y on h (y = -1: x
  // is added on h, for a shift).
  struct Proxy {
    double value;
    MoveKind kind;
    int g, x, h, y;
  };
  static IncrementalMove MoveOf(int l, const Proxy& p) {
    if (p.kind == MoveKind::kSwap)
      return {MoveKind::kSwap, {{l, p.g, p.x, p.y}, {l, p.h, p.y, p.x}}};
    return {MoveKind::kReplace, {{l, p.h, p.y, p.x}}};
  }
  // The kShortlist proxies that promise the most (value > 0), by value and
  // then generation order, kept as they are generated rather than sorted
  // from all of them afterwards.
  class Shortlist {
   public:
    void Add(const Proxy& p) {
      if (!(p.value > 0)) return;
      // A later proxy ranks after every earlier one of the same value.
      if (size_ == kShortlist && !(p.value > proxies_[size_ - 1].value)) return;
      int k = size_ < kShortlist ? size_++ : size_ - 1;
      while (k > 0 && p.value > proxies_[k - 1].value) {
        proxies_[k] = proxies_[k - 1];
        --k;
      }
      proxies_[k] = p;
    }
    const Proxy* begin() const { return proxies_; }
    const Proxy* end() const { return proxies_ + size_; }

   private:
    Proxy proxies_[kShortlist];
    int size_ = 0;
  };

  void Refresh(int l) {
    const LayerModel& m = *models_[l];
    const int gpus = m.num_gpus();
    std::vector<int> order(gpus);
    std::iota(order.begin(), order.end(), 0);
    // Sources: the busiest GPUs by total load and by windows as the busiest.
    std::vector<int> sources;
    auto add_sources = [&](auto key) {
      // The first of a stable sort by key, descending: ties to the lower GPU.
      std::vector<int> ranked = order;
      const int n = std::min(kSources, gpus);
      std::partial_sort(ranked.begin(), ranked.begin() + n, ranked.end(), [&](int a, int b) {
        const double ka = key(a);
        const double kb = key(b);
        return ka > kb || (ka == kb && a < b);
      });
      for (int i = 0; i < n; ++i) {
        if (std::find(sources.begin(), sources.end(), ranked[i]) == sources.end()) {
          sources.push_back(ranked[i]);
        }
      }
    };
    add_sources([&](int g) { return m.GpuLoad(g); });
    add_sources([&](int g) { return static_cast<double>(m.TimesBusiest(g)); });
    // The least loaded (a stable sort's first, ties to the lower GPU) that
    // are not sources: they are among the first kDestinations + sources.
    std::vector<int> destinations = order;
    const size_t ranked = std::min(destinations.size(), kDestinations + sources.size());
    std::partial_sort(destinations.begin(), destinations.begin() + ranked, destinations.end(),
                      [&](int a, int b) {
                        const double la = m.GpuLoad(a);
                        const double lb = m.GpuLoad(b);
                        return la < lb || (la == lb && a < b);
                      });
    destinations.resize(ranked);
    destinations.erase(
        std::remove_if(
            destinations.begin(), destinations.end(),
            [&](int g) { return std::find(sources.begin(), sources.end(), g) != sources.end(); }),
        destinations.end());
    if (static_cast<int>(destinations.size()) > kDestinations) {
      destinations.resize(kDestinations);
    }

    std::vector<std::vector<int>> distinct(gpus);
    for (int g : sources) distinct[g] = Distinct(m.GpuExperts(g));
    for (int h : destinations) distinct[h] = Distinct(m.GpuExperts(h));
    Shortlist swaps, replaces, adds;
    for (int g : sources) {
      const double load_g = m.GpuLoad(g);
      for (int x : distinct[g]) {
        const double a = m.ReplicaLoad(x);
        const int k = m.Replicas(x);
        const double relief = a - a * k / (k + 1);  // what each holder of x sheds
        for (int h : destinations) {
          if (m.Holds(h, x)) continue;
          const double load_h = m.GpuLoad(h);
          const double pair_max = std::max(load_g, load_h);
          adds.Add({pair_max - std::max(load_g - relief, load_h + a * k / (k + 1)),
                    MoveKind::kReplace, g, x, h, -1});
          for (int y : distinct[h]) {
            const double b = m.ReplicaLoad(y);
            if (!m.Holds(g, y) && a > b) {
              swaps.Add({pair_max - std::max(load_g - a + b, load_h + a - b), MoveKind::kSwap, g, x,
                         h, y});
            }
            if (y != x && m.Replicas(y) >= 2) {
              replaces.Add({pair_max - std::max(load_g - relief, load_h + a * k / (k + 1) - b),
                            MoveKind::kReplace, g, x, h, y});
            }
          }
        }
      }
    }
    local_[l].clear();
    for (const Shortlist* list : {&swaps, &replaces}) {
      for (const Proxy& p : *list) {
        Candidate c = Scored(l, MoveOf(l, p));
        if (c.gain > 0) local_[l].push_back(std::move(c));
      }
    }
    adds_[l].clear();
    for (const Proxy& p : adds) {
      Candidate c = Scored(l, MoveOf(l, p));
      if (c.gain > 0) adds_[l].push_back(std::move(c));
    }
    // Donors: every GPU's cheapest redundant replica to give up. The drops of
    // one expert are scored together (LayerModel::EvaluateDrops).
    donors_[l].assign(gpus, Donor{});
    absl::flat_hash_map<int, std::vector<std::pair<int, LayerDelta>>> drops;
    for (int h = 0; h < gpus; ++h) {
      for (int y : Distinct(m.GpuExperts(h))) {
        if (m.Replicas(y) < 2) continue;
        auto [it, inserted] = drops.try_emplace(y);
        if (inserted) it->second = m.EvaluateDrops(y);
        const LayerDelta& d =
            std::lower_bound(it->second.begin(), it->second.end(), h,
                             [](const std::pair<int, LayerDelta>& a, int g) { return a.first < g; })
                ->second;
        const double gain = d.balancedness / models_.size();
        if (d.valid && (donors_[l][h].expert < 0 || gain > donors_[l][h].gain)) {
          std::vector<std::pair<int, int>> into;
          const IncrementalMove move{MoveKind::kShift, {{l, h, y, -1}}};
          donors_[l][h] = {y, gain, d.max_gpu_load, static_cast<int>(MovedDelta(move, &into))};
        }
      }
    }
  }

  static std::vector<int> Distinct(std::vector<int> experts) {
    std::sort(experts.begin(), experts.end());
    experts.erase(std::unique(experts.begin(), experts.end()), experts.end());
    return experts;
  }

  const Layout& committed_;
  // Per layer, the committed placement indexed by GPU: a GPU's committed
  // experts without summing the slots of every GPU before it.
  std::vector<transfer_internal::PreviousLayer> committed_layers_;
  Layout current_;
  const IncrementalOptions& options_;
  std::vector<std::unique_ptr<LayerModel>> models_;
  std::vector<std::vector<int>> arrivals_;  // [layer][gpu]: ArrivingReplicas vs committed
  std::vector<int64_t> into_gpu_;           // per GPU: arrivals over layers
  int64_t moved_ = 0;
  int slots_per_gpu_ = 0;
  std::vector<std::vector<Candidate>> local_;  // per layer: swaps and replaces
  std::vector<std::vector<Candidate>> adds_;   // per layer: additions, paid by a shift
  std::vector<std::vector<Donor>> donors_;     // [layer][gpu]
  // Per GPU, the two layers with its best donors (-1: none).
  std::vector<std::pair<int, int>> best_donors_;
  std::vector<int> touched_;
};

// A uniform re-plan starts from a uniform layout it can grow to E + redundant
// slots per layer.
absl::Status CheckUniform(const Layout& committed, int redundant) {
  const int gpus = committed.cluster.num_gpus;
  const int target = committed.num_experts + redundant;
  if (redundant < 0 || target % gpus != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("uniform layouts need E + redundant slots per layer divisible by the GPUs: ",
                     committed.num_experts, " + ", redundant, " over ", gpus));
  }
  if (!committed.HasUniformSlots()) {
    return absl::InvalidArgumentError(
        "the committed layout is not uniform (GPUs hold different slots in a layer); a uniform "
        "re-plan must start from a uniform layout: plan it fresh");
  }
  for (int l = 0; l < committed.num_layers(); ++l) {
    if (committed.layers[l].num_slots() > target) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the committed layout holds ", committed.layers[l].num_slots(), " slots in layer ", l,
          ", more than the ", target, " a uniform plan with ", redundant,
          " redundant slots per layer has; the planner never shrinks a GPU"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckInputs(const Layout& committed, const LoadTrace& trace,
                         const IncrementalOptions& options) {
  CRAFT_RETURN_IF_ERROR(committed.Validate());
  CRAFT_RETURN_IF_ERROR(options.limit.Validate());
  if (options.budget < 0) {
    return absl::InvalidArgumentError(absl::StrCat("budget must be >= 0, got ", options.budget));
  }
  if (options.bytes_per_expert <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("bytes_per_expert must be positive, got ", options.bytes_per_expert));
  }
  if (!(options.min_gain_per_replica >= 0)) {
    return absl::InvalidArgumentError("min_gain_per_replica must be >= 0");
  }
  if (options.threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("threads must be >= 0 (0: every core), got ", options.threads));
  }
  if (options.max_replay_windows < 1) {
    return absl::InvalidArgumentError("max_replay_windows must be >= 1");
  }
  if (trace.num_layers() != committed.num_layers() ||
      trace.num_experts() != committed.num_experts) {
    return absl::InvalidArgumentError(absl::StrCat(
        "committed layout is ", committed.num_layers(), " layers x ", committed.num_experts,
        " experts but the loads are ", trace.num_layers(), " x ", trace.num_experts()));
  }
  // Only what the planner reads: the aggregate and the replayed windows
  // (scanning every window of a long trace would cost a large part of a plan).
  CRAFT_RETURN_IF_ERROR(trace.ValidateAggregate());
  for (int w : ReplaySample(trace, options.max_replay_windows)) {
    for (int l = 0; l < trace.num_layers(); ++l) {
      for (int64_t count : trace.replay_window(w, l)) {
        if (count < 0) {
          return absl::InvalidArgumentError(
              absl::StrCat("negative count ", count, " in window ", w, " layer ", l));
        }
      }
    }
  }
  if (options.uniform_redundant_per_layer.has_value()) {
    CRAFT_RETURN_IF_ERROR(CheckUniform(committed, *options.uniform_redundant_per_layer));
  }
  for (int g = 1; g < committed.cluster.num_gpus; ++g) {
    if (committed.SlotsOnGpu(g) != committed.SlotsOnGpu(0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "committed layout has unequal per-GPU totals: GPU 0 holds ", committed.SlotsOnGpu(0),
          " slots, GPU ", g, " holds ", committed.SlotsOnGpu(g)));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status MoveLimit::Validate() const {
  if (!(max_moved_fraction >= 0 && max_moved_fraction <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("max moved fraction must be in [0, 1], got ", max_moved_fraction));
  }
  if (max_bytes_into_gpu < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max bytes into a GPU must be >= 0, got ", max_bytes_into_gpu));
  }
  return absl::OkStatus();
}

bool MoveLimit::Admits(int64_t moved_replicas, int64_t new_slots,
                       int64_t max_bytes_into_gpu_value) const {
  // Compared in replicas, so a fraction like 0.1 of 15360 admits exactly 1536.
  const auto allowed = static_cast<int64_t>(std::floor(max_moved_fraction * new_slots + 1e-9));
  return moved_replicas <= allowed && max_bytes_into_gpu_value <= max_bytes_into_gpu;
}

absl::Status ApplyMove(const IncrementalMove& move, Layout& layout) {
  for (const SlotEdit& edit : move.edits) CRAFT_RETURN_IF_ERROR(ApplyEdit(edit, layout));
  return absl::OkStatus();
}

absl::StatusOr<IncrementalPlan> PlanIncremental(const Layout& committed, const LoadTrace& trace,
                                                const IncrementalOptions& options) {
  CRAFT_RETURN_IF_ERROR(CheckInputs(committed, trace, options));
  Search search(committed, trace, options);
  IncrementalPlan plan;
  plan.frontier.push_back(search.Point(0));

  const int gpus = committed.cluster.num_gpus;
  if (options.uniform_redundant_per_layer.has_value()) {
    const int target = committed.num_experts + *options.uniform_redundant_per_layer;
    for (int slots = committed.layers.empty() ? target : committed.layers[0].num_slots();
         slots < target; slots += gpus) {
      if (!search.GrowUniform(plan.moves)) break;
      plan.frontier.push_back(search.Point(static_cast<int>(plan.moves.size())));
    }
  } else {
    const int64_t base = static_cast<int64_t>(committed.num_layers()) * committed.num_experts;
    const int64_t target = (base + gpus - 1) / gpus + options.budget;
    for (int64_t step = search.slots_per_gpu(); step < target; ++step) {
      if (!search.Grow(plan.moves)) break;
      plan.frontier.push_back(search.Point(static_cast<int>(plan.moves.size())));
    }
  }

  search.RefreshAll();
  // Every accepted move raises the prediction by more than min_gain, so the
  // loop ends; the cap only guards against a broken invariant.
  const int64_t cap = 4 * static_cast<int64_t>(search.slots_per_gpu()) * gpus;
  while (static_cast<int64_t>(plan.moves.size()) < cap) {
    int64_t cost = 0;
    std::optional<Candidate> best = search.Best(cost);
    if (!best.has_value()) break;
    const int64_t new_slots = static_cast<int64_t>(search.slots_per_gpu()) * gpus;
    if (!options.limit.Admits(search.moved() + cost, new_slots, 0)) break;
    search.Apply(best->move);
    plan.moves.push_back(std::move(best->move));
    plan.frontier.push_back(search.Point(static_cast<int>(plan.moves.size())));
    search.RefreshTouched();
  }
  plan.slots_per_gpu = search.slots_per_gpu();
  return plan;
}

absl::StatusOr<Layout> LayoutAtPoint(const Layout& committed, const IncrementalPlan& plan,
                                     int point) {
  if (point < 0 || point >= static_cast<int>(plan.frontier.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("frontier point ", point, " out of range [0, ", plan.frontier.size(), ")"));
  }
  const int num_moves = plan.frontier[point].num_moves;
  if (num_moves < 0 || num_moves > static_cast<int>(plan.moves.size())) {
    return absl::InvalidArgumentError("frontier point refers to moves the plan does not have");
  }
  Layout layout = committed;
  for (int i = 0; i < num_moves; ++i) CRAFT_RETURN_IF_ERROR(ApplyMove(plan.moves[i], layout));
  return layout;
}

int PickFrontierPoint(const IncrementalPlan& plan, const MoveLimit& limit) {
  for (int i = static_cast<int>(plan.frontier.size()) - 1; i > 0; --i) {
    const FrontierPoint& p = plan.frontier[i];
    if (limit.Admits(p.moved_replicas, p.new_slots, p.max_bytes_into_gpu)) return i;
  }
  return 0;
}

}  // namespace craft::planner
