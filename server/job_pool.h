// A fixed set of threads running posted jobs, with a bounded queue: work that
// must not run on a gRPC thread and must not wait behind the replan loop
// (PlacementService.Plan dry runs).
//
//   JobPool pool(/*threads=*/2, /*max_queued=*/0);
//   if (!pool.Post([](bool run) { ... })) { /* busy: RESOURCE_EXHAUSTED */ }
//
// A job gets run = false when the pool stops before running it: it must then
// only release what it holds (finish its RPC with UNAVAILABLE, say).
//
// Thread-safety: Post is thread-safe; the destructor stops the pool, runs
// the queued jobs with run = false and joins the threads.
#ifndef CRAFT_SERVER_JOB_POOL_H_
#define CRAFT_SERVER_JOB_POOL_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace craft::server {

class JobPool {
 public:
  using Job = std::function<void(bool run)>;

  // kBackground threads run at nice 19: when the server's own threads (a
  // Replan, a GetLayout, the load streams) want a core they get nearly all of
  // it, and jobs still progress on a busy host (SCHED_IDLE would starve them
  // there, holding their slots for good).
  enum class Priority { kNormal, kBackground };
  // `threads` >= 1 run jobs; at most `max_queued` more wait for one.
  JobPool(int threads, int max_queued, Priority priority = Priority::kNormal);
  ~JobPool();

  JobPool(const JobPool&) = delete;
  JobPool& operator=(const JobPool&) = delete;

  // False (the job is dropped, not run) when every thread is busy and the
  // queue is full, or the pool is stopping.
  bool Post(Job job);

 private:
  void Work(Priority priority);
  bool HasJobOrStopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || !jobs_.empty();
  }

  const int max_pending_;  // running plus queued
  absl::Mutex mu_;
  std::deque<Job> jobs_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace craft::server

#endif  // CRAFT_SERVER_JOB_POOL_H_
