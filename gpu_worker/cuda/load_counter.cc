#include "gpu_worker/cuda/load_counter.h"

#include <cuda_runtime.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "gpu_worker/cuda/count_kernel.cuh"
#include "gpu_worker/cuda/cuda_check.h"

namespace craft::gpu {

absl::StatusOr<std::unique_ptr<LoadCounter>> LoadCounter::Create(
    const LoadCounterOptions& options, absl::Span<const RoutingTable> tables) {
  if (options.num_experts <= 0 || options.pending_windows <= 0 ||
      tables.size() != options.slot_capacity.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("load counter needs experts > 0, pending_windows > 0 and one table per "
                     "layer; got ",
                     options.num_experts, ", ", options.pending_windows, ", ", tables.size(),
                     " tables for ", options.slot_capacity.size(), " layers"));
  }
  CRAFT_CUDA_SCOPED_DEVICE(options.device);
  int multiprocessors = 0;
  CRAFT_CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, options.device));
  std::unique_ptr<LoadCounter> counter(new LoadCounter(options, 4 * multiprocessors));
  CRAFT_RETURN_IF_ERROR(counter->Allocate());
  for (size_t layer = 0; layer < tables.size(); ++layer) {
    CRAFT_RETURN_IF_ERROR(
        counter->SetRoutingTable(static_cast<int>(layer), tables[layer], counter->side_stream_));
  }
  CRAFT_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(counter->side_stream_));
  return counter;
}

LoadCounter::LoadCounter(const LoadCounterOptions& options, int max_blocks)
    : options_(options), max_blocks_(max_blocks) {
  int64_t table_size = 0;
  for (int capacity : options_.slot_capacity) {
    counts_offset_.push_back(counts_size_);
    counts_size_ += capacity;
    table_offset_.push_back(table_size);
    table_size += options_.num_experts + 1 + capacity;
  }
  ++counts_size_;  // dropped
  table_offset_.push_back(table_size);
  num_slots_.assign(options_.slot_capacity.size(), 0);
}

absl::Status LoadCounter::Allocate() {
  const size_t counts_bytes = counts_size_ * sizeof(unsigned long long);
  CRAFT_CUDA_RETURN_IF_ERROR(cudaMalloc(&tables_, table_offset_.back() * sizeof(int32_t)));
  for (auto*& counts : counts_) {
    CRAFT_CUDA_RETURN_IF_ERROR(cudaMalloc(&counts, counts_bytes));
    CRAFT_CUDA_RETURN_IF_ERROR(cudaMemset(counts, 0, counts_bytes));
  }
  CRAFT_CUDA_RETURN_IF_ERROR(
      cudaHostAlloc(&host_ring_, counts_bytes * options_.pending_windows, cudaHostAllocDefault));
  CRAFT_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&side_stream_, cudaStreamNonBlocking));
  CRAFT_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&closed_, cudaEventDisableTiming));
  for (auto*& event : buffer_free_) {
    CRAFT_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  }
  copied_.assign(options_.pending_windows, nullptr);
  for (auto*& event : copied_) {
    CRAFT_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  }
  return absl::OkStatus();
}

LoadCounter::~LoadCounter() {
  internal::ScopedDevice device(options_.device);
  if (side_stream_ != nullptr) {
    cudaStreamSynchronize(side_stream_);
    cudaStreamDestroy(side_stream_);
  }
  for (CudaEvent event : copied_) {
    if (event != nullptr) cudaEventDestroy(event);
  }
  for (CudaEvent event : {closed_, buffer_free_[0], buffer_free_[1]}) {
    if (event != nullptr) cudaEventDestroy(event);
  }
  cudaFreeHost(host_ring_);
  for (auto* counts : counts_) cudaFree(counts);
  cudaFree(tables_);
}

absl::Status LoadCounter::SetRoutingTable(int layer, const RoutingTable& table, CudaStream stream) {
  if (layer < 0 || layer >= static_cast<int>(num_slots_.size())) {
    return absl::OutOfRangeError(absl::StrCat("no layer ", layer));
  }
  if (table.num_experts() != options_.num_experts ||
      table.num_slots() > options_.slot_capacity[layer]) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer ", layer, " table has ", table.num_experts(), " experts and ",
                     table.num_slots(), " slots; the counter has ", options_.num_experts,
                     " experts and room for ", options_.slot_capacity[layer], " slots"));
  }
  CRAFT_CUDA_SCOPED_DEVICE(options_.device);
  int32_t* begin = tables_ + table_offset_[layer];
  CRAFT_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(begin, table.replica_begin.data(),
                                             table.replica_begin.size() * sizeof(int32_t),
                                             cudaMemcpyHostToDevice, stream));
  CRAFT_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
      begin + options_.num_experts + 1, table.replica_slots.data(),
      table.replica_slots.size() * sizeof(int32_t), cudaMemcpyHostToDevice, stream));
  num_slots_[layer] = table.num_slots();
  return absl::OkStatus();
}

absl::Status LoadCounter::Count(int layer, int64_t window_id, const int32_t* topk_ids,
                                int64_t tokens, int top_k, int32_t* phy_ids, CudaStream stream) {
  if (layer < 0 || layer >= static_cast<int>(num_slots_.size()) || tokens < 0 || top_k <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Count(layer ", layer, ", tokens ", tokens, ", top_k ", top_k, ")"));
  }
  internal::CountArgs args;
  args.topk_ids = topk_ids;
  args.tokens = tokens;
  args.top_k = top_k;
  args.window_id = window_id;
  args.layer = layer;
  args.num_experts = options_.num_experts;
  args.replica_begin = tables_ + table_offset_[layer];
  args.replica_slots = args.replica_begin + options_.num_experts + 1;
  args.num_slots = num_slots_[layer];
  args.slot_counts = counts_[active_] + counts_offset_[layer];
  args.dropped = counts_[active_] + counts_size_ - 1;
  args.phy_ids = phy_ids;
  CRAFT_CUDA_SCOPED_DEVICE(options_.device);
  CRAFT_CUDA_RETURN_IF_ERROR(internal::LaunchCount(args, max_blocks_, stream));
  return absl::OkStatus();
}

absl::StatusOr<int64_t> LoadCounter::CloseWindow(CudaStream stream) {
  if (static_cast<int>(pending_.size()) == options_.pending_windows) {
    return absl::UnavailableError(
        absl::StrCat(options_.pending_windows, " closed windows wait for Poll; still counting"));
  }
  CRAFT_CUDA_SCOPED_DEVICE(options_.device);
  const int entry = next_ring_entry_;
  const size_t bytes = counts_size_ * sizeof(unsigned long long);
  unsigned long long* closed = counts_[active_];
  CRAFT_CUDA_RETURN_IF_ERROR(cudaEventRecord(closed_, stream));
  CRAFT_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(side_stream_, closed_, 0));
  CRAFT_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host_ring_ + entry * counts_size_, closed, bytes,
                                             cudaMemcpyDeviceToHost, side_stream_));
  CRAFT_CUDA_RETURN_IF_ERROR(cudaEventRecord(copied_[entry], side_stream_));
  CRAFT_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(closed, 0, bytes, side_stream_));
  CRAFT_CUDA_RETURN_IF_ERROR(cudaEventRecord(buffer_free_[active_], side_stream_));
  active_ ^= 1;
  // The buffer counting resumes in was reset after its last copy: a device-side
  // wait (a never-recorded event counts as complete).
  CRAFT_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream, buffer_free_[active_], 0));
  next_ring_entry_ = (next_ring_entry_ + 1) % options_.pending_windows;
  pending_.push_back(Pending{next_window_, entry, num_slots_});
  return next_window_++;
}

WindowCounts LoadCounter::Take() {
  Pending pending = std::move(pending_.front());
  pending_.pop_front();
  const unsigned long long* host = host_ring_ + pending.ring_entry * counts_size_;
  WindowCounts window;
  window.window = pending.window;
  window.num_slots = std::move(pending.num_slots);
  window.counts.resize(window.num_slots.size());
  for (size_t layer = 0; layer < window.counts.size(); ++layer) {
    const unsigned long long* first = host + counts_offset_[layer];
    window.counts[layer].assign(first, first + window.num_slots[layer]);
  }
  window.dropped = host[counts_size_ - 1];
  return window;
}

absl::StatusOr<std::optional<WindowCounts>> LoadCounter::Poll() {
  if (pending_.empty()) return std::nullopt;
  CRAFT_CUDA_SCOPED_DEVICE(options_.device);
  const cudaError_t state = cudaEventQuery(copied_[pending_.front().ring_entry]);
  if (state == cudaErrorNotReady) return std::nullopt;
  CRAFT_CUDA_RETURN_IF_ERROR(state);
  return Take();
}

absl::StatusOr<WindowCounts> LoadCounter::Wait() {
  if (pending_.empty()) return absl::FailedPreconditionError("no closed window");
  CRAFT_CUDA_SCOPED_DEVICE(options_.device);
  CRAFT_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(copied_[pending_.front().ring_entry]));
  return Take();
}

}  // namespace craft::gpu
