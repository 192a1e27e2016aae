#include "gpu_worker/cuda/device_load_counter.h"

#include <cuda_runtime.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "gpu_worker/cuda/cuda_check.h"

namespace craft::gpu {

RoutingTable DeviceTableOf(const gpu_worker::RoutingTable& routing, int layer) {
  RoutingTable table;
  table.replica_begin.push_back(0);
  for (int e = 0; e < routing.num_experts(); ++e) {
    const absl::Span<const int> replicas = routing.Replicas(layer, e);
    table.replica_slots.insert(table.replica_slots.end(), replicas.begin(), replicas.end());
    table.replica_begin.push_back(static_cast<int32_t>(table.replica_slots.size()));
  }
  return table;
}

absl::StatusOr<std::unique_ptr<DeviceLoadCounter>> DeviceLoadCounter::Create(int device) {
  std::unique_ptr<DeviceLoadCounter> counter(new DeviceLoadCounter(device));
  CRAFT_CUDA_SCOPED_DEVICE(device);
  CRAFT_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&counter->stream_, cudaStreamNonBlocking));
  return counter;
}

DeviceLoadCounter::~DeviceLoadCounter() {
  internal::ScopedDevice device(device_);
  counter_.reset();
  if (stream_ != nullptr) {
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
  cudaFree(ids_);
}

absl::Status DeviceLoadCounter::UseTables(const std::string& version,
                                          const gpu_worker::RoutingTable& routing) {
  std::vector<RoutingTable> tables;
  bool fits = counter_ != nullptr && static_cast<int>(capacity_.size()) == routing.num_layers();
  for (int l = 0; l < routing.num_layers(); ++l) {
    tables.push_back(DeviceTableOf(routing, l));
    fits = fits && tables.back().num_slots() <= capacity_[l];
  }
  if (fits) {
    for (int l = 0; l < routing.num_layers(); ++l) {
      CRAFT_RETURN_IF_ERROR(counter_->SetRoutingTable(l, tables[l], stream_));
    }
  } else {
    // Room for the replicas of later layouts too, so that a replan that adds
    // a few does not rebuild the counter every time.
    LoadCounterOptions options;
    options.device = device_;
    options.num_experts = routing.num_experts();
    for (const RoutingTable& table : tables) {
      options.slot_capacity.push_back(table.num_slots() + options.num_experts);
    }
    CRAFT_ASSIGN_OR_RETURN(counter_, gpu::LoadCounter::Create(options, tables));
    capacity_ = options.slot_capacity;
  }
  tables_version_ = version;
  return absl::OkStatus();
}

absl::Status DeviceLoadCounter::BeginWindow(int64_t window_id, const gpu_worker::LocalLayout& mine,
                                            const gpu_worker::RoutingTable& routing) {
  CRAFT_RETURN_IF_ERROR(gpu_worker::CheckWindowLayouts(mine, routing));
  if (counter_ == nullptr || mine.version != tables_version_) {
    CRAFT_RETURN_IF_ERROR(UseTables(mine.version, routing));
  }
  window_id_ = window_id;
  first_slot_.clear();
  num_slots_.clear();
  for (const gpu_worker::LocalLayer& layer : mine.layers) {
    first_slot_.push_back(layer.first_slot);
    num_slots_.push_back(layer.num_slots());
  }
  open_ = true;
  return absl::OkStatus();
}

absl::StatusOr<int32_t*> DeviceLoadCounter::IdBuffer(int64_t entries) {
  if (entries > ids_capacity_) {
    CRAFT_CUDA_SCOPED_DEVICE(device_);
    CRAFT_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));  // the old buffer's readers
    const int64_t capacity = std::max<int64_t>(entries, 2 * ids_capacity_);
    CRAFT_CUDA_RETURN_IF_ERROR(cudaFree(ids_));
    ids_ = nullptr;
    ids_capacity_ = 0;
    CRAFT_CUDA_RETURN_IF_ERROR(cudaMalloc(&ids_, capacity * sizeof(int32_t)));
    ids_capacity_ = capacity;
  }
  return ids_;
}

absl::Status DeviceLoadCounter::Count(int layer, absl::Span<const int32_t> topk_ids, int top_k) {
  if (!open_) return absl::FailedPreconditionError("no window is open");
  CRAFT_RETURN_IF_ERROR(
      gpu_worker::CheckRouterChoices(layer, static_cast<int>(num_slots_.size()), topk_ids, top_k));
  if (topk_ids.empty()) return absl::OkStatus();
  CRAFT_ASSIGN_OR_RETURN(int32_t * ids, IdBuffer(static_cast<int64_t>(topk_ids.size())));
  CRAFT_CUDA_SCOPED_DEVICE(device_);
  // From pageable memory: returns once the ids are staged, so the caller may
  // free them; the kernel after it on the stream reads the device copy.
  CRAFT_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
      ids, topk_ids.data(), topk_ids.size() * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
  return counter_->Count(layer, window_id_, ids, static_cast<int64_t>(topk_ids.size()) / top_k,
                         top_k, /*phy_ids=*/nullptr, stream_);
}

absl::StatusOr<std::vector<std::vector<int64_t>>> DeviceLoadCounter::EndWindow() {
  if (!open_) return absl::FailedPreconditionError("no window is open");
  open_ = false;
  CRAFT_RETURN_IF_ERROR(counter_->CloseWindow(stream_).status());
  CRAFT_ASSIGN_OR_RETURN(WindowCounts window, counter_->Wait());
  std::vector<std::vector<int64_t>> counts(num_slots_.size());
  for (size_t l = 0; l < num_slots_.size(); ++l) {
    const std::vector<uint64_t>& all = window.counts[l];
    for (int s = 0; s < num_slots_[l]; ++s) {
      const size_t global = static_cast<size_t>(first_slot_[l] + s);
      counts[l].push_back(global < all.size() ? static_cast<int64_t>(all[global]) : 0);
    }
  }
  return counts;
}

}  // namespace craft::gpu
