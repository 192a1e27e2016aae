// A reusable barrier for a fixed number of threads (C++17 has none), used to
// start the per-GPU threads of a measurement together.
//
//   Barrier barrier(num_gpus);
//   // in each GPU's thread, before each timed step:
//   barrier.Wait();
//
// Thread-safe.
#ifndef CRAFT_GPU_WORKER_CUDA_BARRIER_H_
#define CRAFT_GPU_WORKER_CUDA_BARRIER_H_

#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace craft::gpu {

class Barrier {
 public:
  explicit Barrier(int threads) : threads_(threads) {}
  Barrier(const Barrier&) = delete;
  Barrier& operator=(const Barrier&) = delete;

  // Blocks until `threads` threads have called Wait in this round.
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    const int64_t generation = generation_;
    if (++arrived_ == threads_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != generation; });
    }
  }

 private:
  const int threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;         // guarded by mu_
  int64_t generation_ = 0;  // guarded by mu_
};

}  // namespace craft::gpu

#endif  // CRAFT_GPU_WORKER_CUDA_BARRIER_H_
