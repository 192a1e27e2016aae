#include "tools/loadgen/timer_queue.h"

#include <utility>

#include "absl/time/clock.h"

namespace craft::loadgen {

TimerQueue::TimerQueue() : thread_([this] { Run(); }) {}

TimerQueue::~TimerQueue() { Stop(); }

void TimerQueue::RunAfter(absl::Duration delay, std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return;
  tasks_.emplace(absl::Now() + delay, std::move(task));
  changed_.Signal();
}

void TimerQueue::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    tasks_.clear();
    changed_.Signal();
  }
  if (thread_.joinable()) thread_.join();
}

void TimerQueue::Run() {
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    if (tasks_.empty()) {
      changed_.Wait(&mu_);
      continue;
    }
    auto next = tasks_.begin();
    if (absl::Now() < next->first) {
      changed_.WaitWithDeadline(&mu_, next->first);
      continue;  // a new, earlier task or Stop may have come
    }
    std::function<void()> task = std::move(next->second);
    tasks_.erase(next);
    mu_.Unlock();
    task();
    mu_.Lock();
  }
}

}  // namespace craft::loadgen
