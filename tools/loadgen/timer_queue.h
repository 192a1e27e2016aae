// One thread that runs tasks at given times: the fake agents' delayed
// answers (--stage_delay_ms) without a thread or an alarm per agent.
//
//   TimerQueue timers;
//   timers.RunAfter(absl::Milliseconds(50), [] { ... });
//   timers.Stop();  // pending tasks are dropped
//
// Thread-safety: thread-safe. Tasks run one at a time on the queue's thread
// and must not block.
#ifndef CRAFT_TOOLS_LOADGEN_TIMER_QUEUE_H_
#define CRAFT_TOOLS_LOADGEN_TIMER_QUEUE_H_

#include <functional>
#include <map>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace craft::loadgen {

class TimerQueue {
 public:
  TimerQueue();
  ~TimerQueue();  // Stop()
  TimerQueue(const TimerQueue&) = delete;
  TimerQueue& operator=(const TimerQueue&) = delete;

  // Runs `task` once `delay` has passed. Ignored after Stop().
  void RunAfter(absl::Duration delay, std::function<void()> task) ABSL_LOCKS_EXCLUDED(mu_);
  // Drops pending tasks and joins the thread once a running task returns.
  // Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Run();

  absl::Mutex mu_;
  absl::CondVar changed_;
  std::multimap<absl::Time, std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace craft::loadgen

#endif  // CRAFT_TOOLS_LOADGEN_TIMER_QUEUE_H_
