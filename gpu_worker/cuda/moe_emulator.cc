#include "gpu_worker/cuda/moe_emulator.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <numeric>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gpu_worker/cuda/barrier.h"
#include "gpu_worker/cuda/cuda_check.h"
#include "gpu_worker/cuda/expert_hash.h"
#include "gpu_worker/cuda/median.h"
#include "gpu_worker/cuda/moe_kernels.cuh"
#include "gpu_worker/cuda/slot_kernels.cuh"

namespace craft::gpu {
namespace {

constexpr size_t kCublasWorkspaceBytes = size_t{32} << 20;
constexpr int kInputKeyLayer = -1;  // the input's fill key: no real layer

absl::Status CublasStatus(cublasStatus_t status, absl::string_view what) {
  if (status == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", cublasGetStatusName(status), " (",
                                          cublasGetStatusString(status), ")"));
}

#define CRAFT_CUBLAS_RETURN_IF_ERROR(expr) CRAFT_RETURN_IF_ERROR(CublasStatus((expr), #expr))

}  // namespace

MoeEmulator::MoeEmulator(const EmulatorOptions& options) : options_(options) {}

absl::StatusOr<std::unique_ptr<MoeEmulator>> MoeEmulator::Create(const EmulatorOptions& options) {
  CRAFT_RETURN_IF_ERROR(options.shape.Validate());
  if (options.max_tokens <= 0 || options.slot_experts.empty() || options.layer < 0) {
    return absl::InvalidArgumentError("emulator needs slots, max_tokens > 0 and a layer >= 0");
  }
  std::unique_ptr<MoeEmulator> emulator(new MoeEmulator(options));
  CRAFT_RETURN_IF_ERROR(emulator->Allocate());
  return emulator;
}

absl::Status MoeEmulator::Allocate() {
  SlotsConfig config;
  config.device = options_.device;
  config.shape = options_.shape;
  config.slots_per_layer.assign(options_.layer + 1, 0);
  config.slots_per_layer[options_.layer] = static_cast<int>(options_.slot_experts.size());
  CRAFT_ASSIGN_OR_RETURN(slots_, DeviceSlots::Create(config));
  for (size_t s = 0; s < options_.slot_experts.size(); ++s) {
    CRAFT_RETURN_IF_ERROR(
        slots_->FillSlot(options_.layer, static_cast<int>(s), options_.slot_experts[s]));
  }
  CRAFT_RETURN_IF_ERROR(slots_->Synchronize());

  CRAFT_CUDA_SCOPED_DEVICE(options_.device);
  const int64_t hidden = options_.shape.hidden;
  const int64_t inter = options_.shape.inter;
  const int64_t rows = options_.max_tokens;
  const size_t bf16 = ExpertShape::kElementBytes;
  CRAFT_CUDA_RETURN_IF_ERROR(cudaMalloc(&input_, rows * hidden * bf16));
  CRAFT_CUDA_RETURN_IF_ERROR(cudaMalloc(&output_, rows * hidden * bf16));
  CRAFT_CUDA_RETURN_IF_ERROR(cudaMalloc(&gate_up_, 2 * rows * inter * bf16));
  CRAFT_CUDA_RETURN_IF_ERROR(cudaMalloc(&activation_, rows * inter * bf16));
  CRAFT_CUDA_RETURN_IF_ERROR(cudaMalloc(&workspace_, kCublasWorkspaceBytes));
  CRAFT_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  CRAFT_CUDA_RETURN_IF_ERROR(cudaEventCreate(&start_));
  CRAFT_CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop_));
  // Never time or test on zeros: the input gets the same kind of values as the weights.
  CRAFT_CUDA_RETURN_IF_ERROR(internal::LaunchFillExpert(
      input_, ExpertKey(kInputKeyLayer, options_.device), rows * hidden, stream_));
  CRAFT_CUBLAS_RETURN_IF_ERROR(cublasCreate(&cublas_));
  CRAFT_CUBLAS_RETURN_IF_ERROR(cublasSetStream(cublas_, stream_));
  CRAFT_CUBLAS_RETURN_IF_ERROR(cublasSetWorkspace(cublas_, workspace_, kCublasWorkspaceBytes));
  CRAFT_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

MoeEmulator::~MoeEmulator() {
  internal::ScopedDevice device(options_.device);
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  for (Group& group : groups_) {
    if (group.graph != nullptr) cudaGraphExecDestroy(group.graph);
  }
  if (cublas_ != nullptr) cublasDestroy(cublas_);
  for (CudaEvent event : {start_, stop_}) {
    if (event != nullptr) cudaEventDestroy(event);
  }
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
  for (void* p : {input_, output_, gate_up_, activation_, workspace_}) cudaFree(p);
}

absl::StatusOr<int> MoeEmulator::AddGroup(absl::Span<const SlotWork> work) {
  int64_t rows = 0;
  for (const SlotWork& w : work) {
    if (w.slot < 0 || w.slot >= static_cast<int>(options_.slot_experts.size()) || w.tokens < 0) {
      return absl::InvalidArgumentError(absl::StrCat("slot ", w.slot, " with ", w.tokens,
                                                     " tokens; the emulator has ",
                                                     options_.slot_experts.size(), " slots"));
    }
    rows += w.tokens;
  }
  if (rows > options_.max_tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat(rows, " token rows in a group; max_tokens is ", options_.max_tokens));
  }
  Group group;
  group.work.assign(work.begin(), work.end());
  if (options_.use_graph) {
    CRAFT_CUDA_SCOPED_DEVICE(options_.device);
    CRAFT_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    const absl::Status enqueued = Enqueue(group.work);
    cudaGraph_t graph = nullptr;
    const cudaError_t ended = cudaStreamEndCapture(stream_, &graph);
    CRAFT_RETURN_IF_ERROR(enqueued);
    CRAFT_CUDA_RETURN_IF_ERROR(ended);
    const cudaError_t instantiated = cudaGraphInstantiate(&group.graph, graph, 0);
    cudaGraphDestroy(graph);
    CRAFT_CUDA_RETURN_IF_ERROR(instantiated);
  }
  groups_.push_back(std::move(group));
  return static_cast<int>(groups_.size()) - 1;
}

absl::Status MoeEmulator::Enqueue(const std::vector<SlotWork>& work) {
  const int64_t hidden = options_.shape.hidden;
  const int64_t inter = options_.shape.inter;
  const int64_t matrix = options_.shape.matrix_elements();
  const float one = 1.0f;
  const float zero = 0.0f;
  // bf16 buffers, addressed as 16-bit words.
  const auto* input = static_cast<const uint16_t*>(input_);
  auto* output = static_cast<uint16_t*>(output_);
  auto* gate = static_cast<uint16_t*>(gate_up_);
  int64_t row = 0;
  for (const SlotWork& w : work) {
    const int64_t n = w.tokens;
    if (n == 0) continue;
    const auto* weights = static_cast<const uint16_t*>(slots_->slot_data(options_.layer, w.slot));
    const uint16_t* x = input + row * hidden;
    uint16_t* up = gate + n * inter;
    // Row-major A[m x k] is column-major A^T, so row-major C = A B is computed
    // as column-major C^T = B^T A^T: cuBLAS's "A" is the weight.
    // gate and up: [n x inter] = x [n x hidden] . w1|w3 [hidden x inter].
    CRAFT_CUBLAS_RETURN_IF_ERROR(cublasGemmStridedBatchedEx(
        cublas_, CUBLAS_OP_N, CUBLAS_OP_N, inter, n, hidden, &one, weights, CUDA_R_16BF, inter,
        matrix, x, CUDA_R_16BF, hidden, 0, &zero, gate, CUDA_R_16BF, inter, n * inter, 2,
        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    CRAFT_CUDA_RETURN_IF_ERROR(internal::LaunchSiluMul(gate, up, activation_, n * inter, stream_));
    // down: [n x hidden] = h [n x inter] . w2 [inter x hidden].
    CRAFT_CUBLAS_RETURN_IF_ERROR(cublasGemmEx(
        cublas_, CUBLAS_OP_N, CUBLAS_OP_N, hidden, n, inter, &one, weights + 2 * matrix,
        CUDA_R_16BF, hidden, activation_, CUDA_R_16BF, inter, &zero, output + row * hidden,
        CUDA_R_16BF, hidden, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    row += n;
  }
  return absl::OkStatus();
}

absl::StatusOr<double> MoeEmulator::Run(int group) {
  if (group < 0 || group >= num_groups()) {
    return absl::OutOfRangeError(absl::StrCat("no group ", group));
  }
  CRAFT_CUDA_SCOPED_DEVICE(options_.device);
  CRAFT_CUDA_RETURN_IF_ERROR(cudaEventRecord(start_, stream_));
  if (groups_[group].graph != nullptr) {
    CRAFT_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(groups_[group].graph, stream_));
  } else {
    CRAFT_RETURN_IF_ERROR(Enqueue(groups_[group].work));
  }
  CRAFT_CUDA_RETURN_IF_ERROR(cudaEventRecord(stop_, stream_));
  CRAFT_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(stop_));
  float ms = 0;
  CRAFT_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, start_, stop_));
  return static_cast<double>(ms);
}

absl::Status MoeEmulator::WriteInput(int64_t first_row, absl::Span<const uint16_t> values) {
  const int64_t hidden = options_.shape.hidden;
  if (first_row < 0 || values.size() % hidden != 0 ||
      first_row + static_cast<int64_t>(values.size()) / hidden > options_.max_tokens) {
    return absl::OutOfRangeError("input rows out of range");
  }
  CRAFT_CUDA_SCOPED_DEVICE(options_.device);
  CRAFT_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(static_cast<uint16_t*>(input_) + first_row * hidden,
                                             values.data(), values.size() * sizeof(uint16_t),
                                             cudaMemcpyHostToDevice, stream_));
  CRAFT_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint16_t>> MoeEmulator::ReadOutput(int64_t first_row, int64_t rows) {
  const int64_t hidden = options_.shape.hidden;
  if (first_row < 0 || rows < 0 || first_row + rows > options_.max_tokens) {
    return absl::OutOfRangeError("output rows out of range");
  }
  CRAFT_CUDA_SCOPED_DEVICE(options_.device);
  std::vector<uint16_t> values(rows * hidden);
  CRAFT_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(values.data(), static_cast<const uint16_t*>(output_) + first_row * hidden,
                      values.size() * sizeof(uint16_t), cudaMemcpyDeviceToHost, stream_));
  CRAFT_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return values;
}

absl::StatusOr<StepTimes> MeasureSteps(absl::Span<const EmulatedGpu> gpus, int warmup,
                                       int iterations) {
  if (gpus.empty() || warmup < 0 || iterations <= 0) {
    return absl::InvalidArgumentError("MeasureSteps needs GPUs and iterations > 0");
  }
  // One host thread per emulator, running its GPUs in order.
  std::vector<MoeEmulator*> emulators;
  std::vector<std::vector<int>> members;  // [emulator] -> indices into gpus
  for (size_t g = 0; g < gpus.size(); ++g) {
    if (gpus[g].emulator == nullptr) return absl::InvalidArgumentError("null emulator");
    const auto it = std::find(emulators.begin(), emulators.end(), gpus[g].emulator);
    if (it == emulators.end()) {
      emulators.push_back(gpus[g].emulator);
      members.push_back({static_cast<int>(g)});
    } else {
      members[it - emulators.begin()].push_back(static_cast<int>(g));
    }
  }
  const int n = static_cast<int>(gpus.size());
  StepTimes times;
  times.gpu_ms.assign(n, std::vector<double>(iterations, 0.0));
  std::vector<absl::Status> status(emulators.size());
  Barrier barrier(static_cast<int>(emulators.size()));
  std::vector<std::thread> threads;
  for (size_t e = 0; e < emulators.size(); ++e) {
    threads.emplace_back([&, e] {
      for (int i = 0; i < warmup + iterations; ++i) {
        barrier.Wait();  // every thread reaches every barrier, even after an error
        for (int g : members[e]) {
          if (!status[e].ok()) break;
          absl::StatusOr<double> ms = emulators[e]->Run(gpus[g].group);
          if (!ms.ok()) {
            status[e] = ms.status();
          } else if (i >= warmup) {
            times.gpu_ms[g][i - warmup] = *ms;
          }
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const absl::Status& s : status) CRAFT_RETURN_IF_ERROR(s);
  for (int i = 0; i < iterations; ++i) {
    double slowest = 0;
    for (int g = 0; g < n; ++g) slowest = std::max(slowest, times.gpu_ms[g][i]);
    times.step_ms.push_back(slowest);
  }
  times.median_step_ms = Median(times.step_ms);
  for (int g = 0; g < n; ++g) times.median_gpu_ms.push_back(Median(times.gpu_ms[g]));
  return times;
}

}  // namespace craft::gpu
