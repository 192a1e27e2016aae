#include "server/job_pool.h"

#include <sched.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "common/logging.h"

namespace craft::server {

JobPool::JobPool(int threads, int max_queued, Priority priority)
    : max_pending_(threads + max_queued) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this, priority] { Work(priority); });
}

JobPool::~JobPool() {
  std::deque<Job> abandoned;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    abandoned.swap(jobs_);
  }
  for (Job& job : abandoned) job(false);
  for (std::thread& thread : threads_) thread.join();
}

bool JobPool::Post(Job job) {
  absl::MutexLock lock(&mu_);
  if (stopping_ || running_ + static_cast<int>(jobs_.size()) >= max_pending_) return false;
  jobs_.push_back(std::move(job));
  return true;
}

void JobPool::Work(Priority priority) {
  if (priority == Priority::kIdle) {
    // Lowering one's own policy needs no privilege; pid 0 is this thread.
    sched_param param{};
    param.sched_priority = 0;
    if (sched_setscheduler(0, SCHED_IDLE, &param) != 0) {
      CRAFT_LOG(WARNING) << "cannot run dry runs under SCHED_IDLE: " << std::strerror(errno);
    }
  }
  while (true) {
    Job job;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &JobPool::HasJobOrStopping));
      if (stopping_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
      ++running_;
    }
    job(true);
    absl::MutexLock lock(&mu_);
    --running_;
  }
}

}  // namespace craft::server
