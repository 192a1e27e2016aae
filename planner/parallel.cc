#include "planner/parallel.h"

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

namespace craft::planner {

int ResolveThreads(int threads) {
  if (threads > 0) return threads;
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

absl::Status ParallelFor(int n, int threads, const std::function<absl::Status(int)>& fn) {
  if (n <= 0) return absl::OkStatus();
  std::vector<absl::Status> errors(n);
  std::atomic<int> next{0};
  // Indices are handed out one at a time: layers differ in cost (a layer with
  // many replicas packs and replays more), so static blocks would idle cores.
  auto work = [&] {
    for (int i = next.fetch_add(1); i < n; i = next.fetch_add(1)) errors[i] = fn(i);
  };
  const int helpers = std::min(ResolveThreads(threads), n) - 1;
  std::vector<std::thread> pool;
  pool.reserve(helpers);
  for (int t = 0; t < helpers; ++t) pool.emplace_back(work);
  work();
  for (std::thread& thread : pool) thread.join();
  for (absl::Status& status : errors) {
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

}  // namespace craft::planner
