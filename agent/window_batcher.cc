#include "agent/window_batcher.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "wire/limits.h"

namespace craft::agent {
absl::Status ValidateWindowContent(const craft::v1::GpuWindow& window, int num_layers) {
  if (num_layers > 0 && window.layers_size() != num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("gpu ", window.gpu(), " window ",
                                                   window.window_id(), ": ", window.layers_size(),
                                                   " layers, the model has ", num_layers));
  }
  if (window.layout_version().size() > kMaxVersionBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("gpu ", window.gpu(), " window ", window.window_id(),
                     ": layout_version longer than ", kMaxVersionBytes, " bytes"));
  }
  if (window.duration_ms() < 0) {
    return absl::InvalidArgumentError(absl::StrCat("gpu ", window.gpu(), " window ",
                                                   window.window_id(), ": negative duration_ms"));
  }
  for (int layer = 0; layer < window.layers_size(); ++layer) {
    for (int64_t count : window.layers(layer).counts()) {
      if (count < 0) {
        return absl::InvalidArgumentError(absl::StrCat("gpu ", window.gpu(), " window ",
                                                       window.window_id(), " layer ", layer,
                                                       ": negative count ", count));
      }
    }
  }
  return absl::OkStatus();
}

WindowBatcher::WindowBatcher(absl::Duration flush_delay, size_t max_open)
    : flush_delay_(flush_delay), max_open_(std::max<size_t>(max_open, 1)) {}

std::vector<craft::v1::NodeLoad> WindowBatcher::Add(craft::v1::GpuWindow window, absl::Time now,
                                                    const std::vector<int>& attached) {
  std::vector<craft::v1::NodeLoad> ready;
  const int64_t id = window.window_id();
  auto [it, inserted] = open_.try_emplace(id);
  Batch& batch = it->second;
  if (inserted) batch.first_arrival = now;
  batch.gpus.insert(window.gpu());
  *batch.load.add_gpus() = std::move(window);
  const bool complete = std::all_of(attached.begin(), attached.end(),
                                    [&](int gpu) { return batch.gpus.count(gpu) > 0; });
  if (complete) {
    ready.push_back(std::move(batch.load));
    open_.erase(it);
  }
  while (open_.size() > max_open_) {
    // Evict the batch that started first (ids from different workers need
    // not be aligned, so the smallest id is not necessarily the oldest).
    auto oldest = std::min_element(open_.begin(), open_.end(), [](const auto& a, const auto& b) {
      return a.second.first_arrival < b.second.first_arrival;
    });
    ready.push_back(std::move(oldest->second.load));
    open_.erase(oldest);
  }
  return ready;
}

std::vector<craft::v1::NodeLoad> WindowBatcher::TakeDue(absl::Time now) {
  std::vector<std::pair<absl::Time, int64_t>> due;
  for (const auto& [id, batch] : open_) {
    if (batch.first_arrival + flush_delay_ <= now) due.emplace_back(batch.first_arrival, id);
  }
  std::sort(due.begin(), due.end());
  std::vector<craft::v1::NodeLoad> ready;
  for (const auto& [arrival, id] : due) {
    ready.push_back(std::move(open_[id].load));
    open_.erase(id);
  }
  return ready;
}

}  // namespace craft::agent
