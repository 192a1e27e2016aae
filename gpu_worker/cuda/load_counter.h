// Per-slot token counts on the GPU: the routing table (log2phy) of every
// layer lives on the device, a kernel maps each router top-k id to a physical
// slot with a deterministic replica choice (routing.h) and counts it, and a
// window's counts reach the host through an asynchronous copy, so the serving
// path never waits for the device.
//
//   LoadCounterOptions options;
//   options.device = 0;
//   options.num_experts = 256;
//   options.slot_capacity = std::vector<int>(58, 320);  // max slots per layer, all GPUs
//   CRAFT_ASSIGN_OR_RETURN(auto counter, LoadCounter::Create(options, tables));
//   // Serving loop, on the serving stream:
//   CRAFT_RETURN_IF_ERROR(counter->Count(layer, window_id, topk_ids, tokens, 8, phy_ids, stream));
//   ...
//   if (window_elapsed) counter->CloseWindow(stream).IgnoreError();  // Unavailable: keeps counting
//   CRAFT_ASSIGN_OR_RETURN(std::optional<WindowCounts> w, counter->Poll());
//   if (w) SendToAgent(*w);
//
// Windows. Counts accumulate in one of two device buffers. CloseWindow makes
// later Count calls use the other buffer and enqueues, on a side stream after
// the work already on the serving stream, a copy of the closed buffer into
// pinned host memory and its reset; the serving stream waits for that reset
// (on the device, not the host) before it reuses the buffer. Up to
// `pending_windows` closed windows wait in pinned memory for Poll.
//
// Routing changes. SetRoutingTable writes a layer's table in stream order, so
// Count calls enqueued after it on the same stream use the new table. Counts
// are per slot of the table they were made with: close the window before a
// change of layout, so that no window mixes two layouts.
//
// Thread-compatibility: not synchronised; the serving thread calls every
// method (Poll and Wait never block the device). Count, SetRoutingTable and
// CloseWindow must all use the same stream.
#ifndef CRAFT_GPU_WORKER_CUDA_LOAD_COUNTER_H_
#define CRAFT_GPU_WORKER_CUDA_LOAD_COUNTER_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "gpu_worker/cuda/cuda_types.h"
#include "gpu_worker/cuda/routing.h"

namespace craft::gpu {

struct LoadCounterOptions {
  int device = 0;
  int num_experts = 0;
  // The most physical slots (over all GPUs) each layer's table may have.
  std::vector<int> slot_capacity;
  // Closed windows that may wait for Poll before CloseWindow refuses.
  int pending_windows = 4;
};

// One closed window's counts.
struct WindowCounts {
  int64_t window = 0;                         // 0, 1, 2, ... in closing order
  std::vector<int> num_slots;                 // per layer: slots of the table in force
  std::vector<std::vector<uint64_t>> counts;  // [layer][slot]
  uint64_t dropped = 0;                       // invalid expert ids (padding, out of range)
};

class LoadCounter {
 public:
  // `tables` holds the initial table of every layer (one per slot_capacity
  // entry). Allocates device and pinned host memory and zeroes the counts.
  static absl::StatusOr<std::unique_ptr<LoadCounter>> Create(const LoadCounterOptions& options,
                                                             absl::Span<const RoutingTable> tables);
  ~LoadCounter();
  LoadCounter(const LoadCounter&) = delete;
  LoadCounter& operator=(const LoadCounter&) = delete;

  // Replaces layer `layer`'s table for Count calls enqueued after this on
  // `stream`. INVALID_ARGUMENT when the table's expert count differs or its
  // slots exceed the layer's capacity.
  absl::Status SetRoutingTable(int layer, const RoutingTable& table, CudaStream stream);

  // Enqueues the count of `tokens` x `top_k` router ids at `topk_ids`
  // (device memory, row-major int32) of `layer` on `stream`, and writes each
  // entry's physical slot (-1 for an invalid id) to `phy_ids` when not null.
  // `window_id` keys the replica choice (the serving window's id, not the
  // counter's own window number). Never blocks.
  absl::Status Count(int layer, int64_t window_id, const int32_t* topk_ids, int64_t tokens,
                     int top_k, int32_t* phy_ids, CudaStream stream);

  // Closes the current window after the work enqueued so far on `stream` and
  // returns its number. Never blocks. UNAVAILABLE when `pending_windows`
  // windows still wait for Poll: nothing changes and the current window goes
  // on counting.
  absl::StatusOr<int64_t> CloseWindow(CudaStream stream);

  // The oldest closed window if its copy has landed; nullopt if there is none
  // or it is still in flight. Never blocks.
  absl::StatusOr<std::optional<WindowCounts>> Poll();

  // The oldest closed window, waiting for its copy (tests and shutdown).
  // FAILED_PRECONDITION when no window is closed.
  absl::StatusOr<WindowCounts> Wait();

 private:
  struct Pending {
    int64_t window;
    int ring_entry;
    std::vector<int> num_slots;
  };

  LoadCounter(const LoadCounterOptions& options, int max_blocks);
  absl::Status Allocate();
  WindowCounts Take();

  const LoadCounterOptions options_;
  const int max_blocks_;
  std::vector<int64_t> counts_offset_;  // per layer, into a counts buffer
  int64_t counts_size_ = 0;             // entries of a counts buffer, the last one `dropped`
  std::vector<int64_t> table_offset_;   // per layer, into tables_
  std::vector<int> num_slots_;          // per layer: slots of the current table

  // Device memory.
  int32_t* tables_ = nullptr;  // per layer: replica_begin (E + 1), replica_slots (capacity)
  unsigned long long* counts_[2] = {nullptr, nullptr};
  int active_ = 0;

  // Pinned host ring of pending_windows closed windows.
  unsigned long long* host_ring_ = nullptr;
  std::vector<CudaEvent> copied_;  // per ring entry
  int next_ring_entry_ = 0;
  std::deque<Pending> pending_;
  int64_t next_window_ = 0;

  CudaStream side_stream_ = nullptr;
  CudaEvent closed_ = nullptr;
  CudaEvent buffer_free_[2] = {nullptr, nullptr};
};

}  // namespace craft::gpu

#endif  // CRAFT_GPU_WORKER_CUDA_LOAD_COUNTER_H_
