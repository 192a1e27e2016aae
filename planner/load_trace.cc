#include "planner/load_trace.h"

#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace craft::planner {
namespace {

// `num_layers`, once the whole shape is known not to be negative: checked
// before the constructor allocates by it.
int CheckedLayers(int num_layers, int num_experts, int num_windows) {
  CRAFT_CHECK(num_layers >= 0 && num_experts >= 0 && num_windows >= 0)
      << num_layers << " layers, " << num_experts << " experts, " << num_windows << " windows";
  return num_layers;
}

}  // namespace

LoadTrace::LoadTrace(int num_layers, int num_experts, int num_windows)
    : num_layers_(CheckedLayers(num_layers, num_experts, num_windows)),
      num_experts_(num_experts),
      num_windows_(num_windows),
      aggregate_(static_cast<size_t>(num_layers) * num_experts, 0),
      windows_(static_cast<size_t>(num_windows) * num_layers * num_experts, 0) {}

absl::Span<const int64_t> LoadTrace::aggregate(int layer) const {
  return absl::MakeConstSpan(aggregate_)
      .subspan(static_cast<size_t>(layer) * num_experts_, num_experts_);
}

absl::Span<int64_t> LoadTrace::mutable_aggregate(int layer) {
  return absl::MakeSpan(aggregate_)
      .subspan(static_cast<size_t>(layer) * num_experts_, num_experts_);
}

absl::Span<const int64_t> LoadTrace::window(int window, int layer) const {
  const size_t offset = (static_cast<size_t>(window) * num_layers_ + layer) * num_experts_;
  return absl::MakeConstSpan(windows_).subspan(offset, num_experts_);
}

absl::Span<int64_t> LoadTrace::mutable_window(int window, int layer) {
  const size_t offset = (static_cast<size_t>(window) * num_layers_ + layer) * num_experts_;
  return absl::MakeSpan(windows_).subspan(offset, num_experts_);
}

absl::Span<const int64_t> LoadTrace::replay_window(int window, int layer) const {
  return num_windows_ > 0 ? this->window(window, layer) : aggregate(layer);
}

void LoadTrace::SetAggregateFromWindows() {
  if (num_windows_ == 0) return;
  std::fill(aggregate_.begin(), aggregate_.end(), 0);
  const size_t stride = aggregate_.size();
  for (int b = 0; b < num_windows_; ++b) {
    for (size_t i = 0; i < stride; ++i) aggregate_[i] += windows_[b * stride + i];
  }
}

LoadTrace LoadTrace::SliceWindows(int begin, int end) const {
  CRAFT_CHECK(0 <= begin && begin <= end && end <= num_windows_)
      << "windows [" << begin << ", " << end << ") of " << num_windows_;
  LoadTrace slice(num_layers_, num_experts_, end - begin);
  const size_t stride = aggregate_.size();
  std::copy(windows_.begin() + begin * stride, windows_.begin() + end * stride,
            slice.windows_.begin());
  slice.SetAggregateFromWindows();
  return slice;
}

int64_t LoadTrace::LayerTotal(int layer) const {
  const auto row = aggregate(layer);
  return std::accumulate(row.begin(), row.end(), int64_t{0});
}

absl::Status LoadTrace::ValidateAggregate() const {
  if (num_layers_ <= 0 || num_experts_ <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a trace needs at least one layer and expert, got ", num_layers_, " x ", num_experts_));
  }
  for (size_t i = 0; i < aggregate_.size(); ++i) {
    if (aggregate_[i] < 0) {
      return absl::InvalidArgumentError(absl::StrCat("negative count ", aggregate_[i], " at layer ",
                                                     i / num_experts_, " expert ",
                                                     i % num_experts_));
    }
  }
  return absl::OkStatus();
}

absl::Status LoadTrace::Validate() const {
  if (absl::Status s = ValidateAggregate(); !s.ok()) return s;
  for (size_t i = 0; i < windows_.size(); ++i) {
    if (windows_[i] < 0) {
      const size_t per_window = aggregate_.size();
      return absl::InvalidArgumentError(
          absl::StrCat("negative count ", windows_[i], " in window ", i / per_window, " layer ",
                       (i % per_window) / num_experts_, " expert ", i % num_experts_));
    }
  }
  return absl::OkStatus();
}

}  // namespace craft::planner
