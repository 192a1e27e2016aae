// What the load generator's fake agents report: per GPU, layer and local slot,
// the tokens a window routes there under a layout, from a skewed popularity
// drawn once with planner::SynthesizeTrace. Everything expensive is done once
// per layout version; a window only jitters precomputed numbers.
//
//   ExpertLoads loads = *ExpertLoads::Synthesize(options);
//   SlotLoadCache cache(&loads);
//   std::shared_ptr<const SlotLoads> slots = *cache.Get("0.0", initial_layout);
//   FastRng rng(seed);
//   AppendJittered(slots->Counts(gpu, layer), 0.05, &rng, counts_proto);
#ifndef CRAFT_TOOLS_LOADGEN_SLOT_LOADS_H_
#define CRAFT_TOOLS_LOADGEN_SLOT_LOADS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "craft/v1/layout.pb.h"
#include "google/protobuf/repeated_field.h"
#include "planner/layout.h"

namespace craft::loadgen {

struct PopularityOptions {
  int num_layers = 58;
  int num_experts = 256;
  int top_k = 8;
  int num_gpus = 64;
  // Tokens each GPU sends through every MoE layer per window; a layer's
  // counts sum to num_gpus x tokens_per_gpu x top_k over the cluster.
  int64_t tokens_per_gpu = 4096;
  // A skewed layer's hottest expert expects this many times the mean load
  // (SynthOptions::max_hot_ratio), capped at num_experts / top_k.
  double hot_ratio = 30;
  uint64_t seed = 1;
};

// Expected tokens per window of every logical expert, L x E. Immutable.
class ExpertLoads {
 public:
  // INVALID_ARGUMENT for shapes SynthesizeTrace refuses or non-positive sizes.
  static absl::StatusOr<ExpertLoads> Synthesize(const PopularityOptions& options);

  int num_layers() const { return num_layers_; }
  int num_experts() const { return num_experts_; }
  double Expected(int layer, int expert) const {
    return expected_[static_cast<size_t>(layer) * num_experts_ + expert];
  }

 private:
  ExpertLoads(int num_layers, int num_experts, std::vector<double> expected)
      : num_layers_(num_layers), num_experts_(num_experts), expected_(std::move(expected)) {}

  int num_layers_;
  int num_experts_;
  std::vector<double> expected_;  // [layer][expert]
};

// Expected tokens of every slot of one layout, each expert's load split evenly
// over its replicas (the planner's replay model). Immutable.
class SlotLoads {
 public:
  // INVALID_ARGUMENT when the layout's shape differs from `loads`'.
  static absl::StatusOr<std::shared_ptr<const SlotLoads>> Compute(const ExpertLoads& loads,
                                                                  const planner::Layout& layout);

  // GPU `gpu`'s slots in `layer`, in the GPU's local slot order.
  absl::Span<const double> Counts(int gpu, int layer) const;

 private:
  SlotLoads() = default;

  int num_gpus_ = 0;
  std::vector<std::vector<double>> counts_;  // [layer][global slot]
  std::vector<std::vector<int>> offsets_;    // [layer][gpu], D + 1 entries
};

// SlotLoads by layout version, computed on first use. Agents that receive the
// same Prepare share one computation. Thread-safe.
class SlotLoadCache {
 public:
  // `loads` (and any given to SetLoads) must outlive the cache.
  explicit SlotLoadCache(const ExpertLoads* loads) : loads_(loads) {}

  // The traffic drifts: every version's SlotLoads are computed anew from
  // `loads` when next asked for.
  void SetLoads(const ExpertLoads* loads) ABSL_LOCKS_EXCLUDED(mu_);
  // The SlotLoads of a version this cache has seen (NOT_FOUND otherwise),
  // under the current loads.
  absl::StatusOr<std::shared_ptr<const SlotLoads>> Get(const std::string& version)
      ABSL_LOCKS_EXCLUDED(mu_);

  absl::StatusOr<std::shared_ptr<const SlotLoads>> Get(const std::string& version,
                                                       const planner::Layout& layout);
  // The same for a layout off the wire (validated; parsed only on a miss).
  absl::StatusOr<std::shared_ptr<const SlotLoads>> Get(const craft::v1::Layout& layout);
  // The same for a layout delta against a version this cache has seen
  // (FAILED_PRECONDITION otherwise); rebuilt and fingerprint-checked once per
  // version, as one real agent does for its node.
  absl::StatusOr<std::shared_ptr<const SlotLoads>> Get(const craft::v1::LayoutDelta& delta);

 private:
  absl::StatusOr<std::shared_ptr<const SlotLoads>> ComputeLocked(const std::string& version,
                                                                 const planner::Layout& layout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  const ExpertLoads* loads_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<const SlotLoads>> by_version_ ABSL_GUARDED_BY(mu_);
  // The layouts of by_version_, the bases of later deltas.
  std::map<std::string, std::shared_ptr<const planner::Layout>> layouts_ ABSL_GUARDED_BY(mu_);
};

// xorshift64*: a few nanoseconds per draw, enough for jitter. Not thread-safe.
class FastRng {
 public:
  explicit FastRng(uint64_t seed) : state_(seed * 0x9e3779b97f4a7c15ULL | 1) {}
  // Uniform in [0, 1).
  double Uniform() {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return static_cast<double>((state_ * 0x2545f4914f6cdd1dULL) >> 11) * 0x1p-53;
  }

 private:
  uint64_t state_;
};

// Appends every `base` count scaled by a factor uniform in
// [1 - jitter, 1 + jitter], rounded to a non-negative integer.
void AppendJittered(absl::Span<const double> base, double jitter, FastRng* rng,
                    google::protobuf::RepeatedField<int64_t>* out);

}  // namespace craft::loadgen

#endif  // CRAFT_TOOLS_LOADGEN_SLOT_LOADS_H_
