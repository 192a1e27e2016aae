// The worker's LoadCounter (gpu_worker/backend.h) on the GPU: the window's
// router choices go to the device, the counting kernel routes them through
// log2phy with craft's replica choice (gpu_worker/replica_choice.h) and
// counts per slot (load_counter.h), and the window's counts of this GPU's
// slots come back at EndWindow.
//
// The device tables follow the layout: BeginWindow uploads log2phy when the
// version differs from the last window's (and grows the counter when a layer
// has more slots than it has room for), so a window never mixes layouts.
//
// Thread-compatible, like the interface: the window loop calls it.
#ifndef CRAFT_GPU_WORKER_CUDA_DEVICE_LOAD_COUNTER_H_
#define CRAFT_GPU_WORKER_CUDA_DEVICE_LOAD_COUNTER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gpu_worker/backend.h"
#include "gpu_worker/cuda/cuda_types.h"
#include "gpu_worker/cuda/load_counter.h"
#include "gpu_worker/cuda/routing.h"

namespace craft::gpu {

// log2phy of one layer of a worker's routing table, in the device's form.
RoutingTable DeviceTableOf(const gpu_worker::RoutingTable& routing, int layer);

class DeviceLoadCounter : public gpu_worker::LoadCounter {
 public:
  // Allocates nothing until the first window. FAILED_PRECONDITION without a
  // usable device.
  static absl::StatusOr<std::unique_ptr<DeviceLoadCounter>> Create(int device);
  ~DeviceLoadCounter() override;

  absl::Status BeginWindow(int64_t window_id, const gpu_worker::LocalLayout& mine,
                           const gpu_worker::RoutingTable& routing) override;
  absl::Status Count(int layer, absl::Span<const int32_t> topk_ids, int top_k) override;
  absl::StatusOr<std::vector<std::vector<int64_t>>> EndWindow() override;

 private:
  explicit DeviceLoadCounter(int device) : device_(device) {}
  // Makes the device tables those of `routing` (version `version`).
  absl::Status UseTables(const std::string& version, const gpu_worker::RoutingTable& routing);
  // A device buffer for at least `entries` router ids.
  absl::StatusOr<int32_t*> IdBuffer(int64_t entries);

  const int device_;
  CudaStream stream_ = nullptr;
  std::unique_ptr<gpu::LoadCounter> counter_;  // not the base class's namesake
  std::vector<int> capacity_;                  // per layer, of counter_
  std::string tables_version_;
  int32_t* ids_ = nullptr;  // device
  int64_t ids_capacity_ = 0;

  // The open window.
  bool open_ = false;
  int64_t window_id_ = 0;
  std::vector<int> first_slot_;  // per layer, of this GPU
  std::vector<int> num_slots_;
};

}  // namespace craft::gpu

#endif  // CRAFT_GPU_WORKER_CUDA_DEVICE_LOAD_COUNTER_H_
