// The median of a sample (timings), for benchmarks and the step emulator.
// Pure function: thread-safe.
#ifndef CRAFT_GPU_WORKER_CUDA_MEDIAN_H_
#define CRAFT_GPU_WORKER_CUDA_MEDIAN_H_

#include <algorithm>
#include <vector>

namespace craft::gpu {

// The middle value, or the mean of the two middle values; 0 when empty.
inline double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

}  // namespace craft::gpu

#endif  // CRAFT_GPU_WORKER_CUDA_MEDIAN_H_
