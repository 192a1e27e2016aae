// A MoE layer step on one GPU, for measurement: the expert FFNs of a GPU's
// slots computed as real cuBLAS GEMMs on the tokens a layout dispatches to
// them, so a layout's balance turns into measured time.
//
// Per slot with n > 0 tokens (rows of a [tokens x hidden] bf16 input in
// dispatch order), in bf16 with fp32 accumulation:
//   [gate | up] = x . [w1 | w3]      one strided-batched GEMM (n x hidden x inter, twice)
//   h = silu(gate) * up              element-wise kernel
//   y = h . w2                       one GEMM (n x inter x hidden)
// Slots with no tokens cost nothing, as in serving engines.
//
// A group is the work of one GPU of the emulated deployment: some of this
// emulator's slots with their tokens. Groups run one at a time, each captured
// once as a CUDA graph (no launch gaps) and timed with CUDA events around its
// replay. One physical GPU can so stand in for several GPUs of a larger
// deployment, each measured alone on real hardware; they share the input,
// output and intermediate buffers.
//
//   EmulatorOptions options;
//   options.device = g;
//   options.shape.hidden = 4096;
//   options.shape.inter = 1536;
//   options.slot_experts = {3, 17, 17, 40};  // logical expert of each slot
//   options.max_tokens = 65536;
//   CRAFT_ASSIGN_OR_RETURN(auto gpu, MoeEmulator::Create(options));
//   CRAFT_ASSIGN_OR_RETURN(int group, gpu->AddGroup({{0, 512}, {1, 300}, {2, 301}, {3, 2000}}));
//   CRAFT_ASSIGN_OR_RETURN(double ms, gpu->Run(group));
//
// Thread-compatibility: one thread per emulator; emulators of different GPUs
// run concurrently (MeasureSteps does that).
#ifndef CRAFT_GPU_WORKER_CUDA_MOE_EMULATOR_H_
#define CRAFT_GPU_WORKER_CUDA_MOE_EMULATOR_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "gpu_worker/cuda/cuda_types.h"
#include "gpu_worker/cuda/device_slots.h"
#include "gpu_worker/cuda/expert_shape.h"

struct cublasContext;

namespace craft::gpu {

struct EmulatorOptions {
  int device = 0;
  ExpertShape shape;
  int layer = 0;                  // the layer whose experts fill the slots
  std::vector<int> slot_experts;  // logical expert of every slot
  int64_t max_tokens = 0;         // most token rows one group may take
  bool use_graph = true;          // capture each group as a CUDA graph
};

// A slot and the tokens dispatched to it.
struct SlotWork {
  int slot = 0;
  int64_t tokens = 0;
};

class MoeEmulator {
 public:
  // Allocates the slots (filled with their experts' deterministic weights),
  // the input (filled with non-zero bf16 values), output and intermediates.
  static absl::StatusOr<std::unique_ptr<MoeEmulator>> Create(const EmulatorOptions& options);
  ~MoeEmulator();
  MoeEmulator(const MoeEmulator&) = delete;
  MoeEmulator& operator=(const MoeEmulator&) = delete;

  int device() const { return options_.device; }
  DeviceSlots& slots() { return *slots_; }

  // Adds a group: each listed slot takes the next `tokens` input rows (at
  // most max_tokens in all). Returns the group's id.
  absl::StatusOr<int> AddGroup(absl::Span<const SlotWork> work);
  int num_groups() const { return static_cast<int>(groups_.size()); }

  // Runs group `group` once and returns its device time in ms (waits).
  absl::StatusOr<double> Run(int group);

  // Test access to the input and output rows (bf16 bits, row-major).
  absl::Status WriteInput(int64_t first_row, absl::Span<const uint16_t> values);
  absl::StatusOr<std::vector<uint16_t>> ReadOutput(int64_t first_row, int64_t rows);

 private:
  struct Group {
    std::vector<SlotWork> work;
    CudaGraphExec graph = nullptr;  // when use_graph
  };

  explicit MoeEmulator(const EmulatorOptions& options);
  absl::Status Allocate();
  absl::Status Enqueue(const std::vector<SlotWork>& work);  // kernels on stream_

  const EmulatorOptions options_;
  std::unique_ptr<DeviceSlots> slots_;
  std::vector<Group> groups_;
  cublasContext* cublas_ = nullptr;
  CudaStream stream_ = nullptr;
  CudaEvent start_ = nullptr;
  CudaEvent stop_ = nullptr;
  // Device memory.
  void* input_ = nullptr;       // [max_tokens x hidden]
  void* output_ = nullptr;      // [max_tokens x hidden]
  void* gate_up_ = nullptr;     // [2 x max_tokens x inter]
  void* activation_ = nullptr;  // [max_tokens x inter]
  void* workspace_ = nullptr;   // cuBLAS's, so graph capture allocates nothing
};

// One GPU of an emulated deployment: a group of an emulator.
struct EmulatedGpu {
  MoeEmulator* emulator = nullptr;
  int group = 0;
};

// Step times of the GPUs of an emulated deployment.
struct StepTimes {
  std::vector<std::vector<double>> gpu_ms;  // [gpu][iteration]
  std::vector<double> step_ms;              // [iteration]: the slowest GPU
  double median_step_ms = 0;
  std::vector<double> median_gpu_ms;  // [gpu]
};

// Runs `warmup` untimed and then `iterations` timed steps. In each step every
// emulator (physical GPU) runs the groups of `gpus` it holds one after
// another, all emulators at once (one host thread each, a barrier before each
// step so they start together); a step takes as long as its slowest GPU.
absl::StatusOr<StepTimes> MeasureSteps(absl::Span<const EmulatedGpu> gpus, int warmup,
                                       int iterations);

}  // namespace craft::gpu

#endif  // CRAFT_GPU_WORKER_CUDA_MOE_EMULATOR_H_
