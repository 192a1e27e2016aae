#include "server/job_pool.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

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
  if (priority == Priority::kBackground) {
    // On Linux a nice value is per thread; lowering one's own needs no
    // privilege.
    const id_t thread = static_cast<id_t>(::syscall(SYS_gettid));
    if (::setpriority(PRIO_PROCESS, thread, 19) != 0) {
      CRAFT_LOG(WARNING) << "cannot lower the priority of a job thread: " << std::strerror(errno);
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
