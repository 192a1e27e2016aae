#include "server/job_pool.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace craft::server {
namespace {

TEST(JobPoolTest, RunsJobsAndRefusesWhatDoesNotFit) {
  absl::Notification release;
  std::atomic<int> ran{0};
  {
    JobPool pool(/*threads=*/1, /*max_queued=*/1);
    absl::Notification started;
    ASSERT_TRUE(pool.Post([&](bool run) {
      started.Notify();
      release.WaitForNotification();
      if (run) ++ran;
    }));
    started.WaitForNotification();
    ASSERT_TRUE(pool.Post([&](bool run) {
      if (run) ++ran;
    }));  // queued
    EXPECT_FALSE(pool.Post([&](bool) { ADD_FAILURE() << "a refused job must not run"; }));
    release.Notify();
  }  // the destructor runs or abandons the queued job, then joins
  EXPECT_GE(ran.load(), 1);
}

TEST(JobPoolTest, QueuedJobsAreAbandonedWhenThePoolStops) {
  absl::Notification release;
  std::atomic<int> abandoned{0};
  auto pool = std::make_unique<JobPool>(/*threads=*/1, /*max_queued=*/2);
  absl::Notification started;
  ASSERT_TRUE(pool->Post([&](bool) {
    started.Notify();
    release.WaitForNotification();
  }));
  started.WaitForNotification();
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(pool->Post([&](bool run) {
      if (!run) ++abandoned;
    }));
  }
  std::thread stopper([&] { pool.reset(); });
  absl::SleepFor(absl::Milliseconds(50));
  release.Notify();
  stopper.join();
  EXPECT_EQ(abandoned.load(), 2);
}

TEST(JobPoolTest, BackgroundJobsRunAtTheLowestPriority) {
  JobPool pool(1, 0, JobPool::Priority::kBackground);
  std::atomic<int> nice{0};
  absl::Notification done;
  ASSERT_TRUE(pool.Post([&](bool) {
    errno = 0;
    nice = ::getpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)));
    done.Notify();
  }));
  done.WaitForNotification();
  EXPECT_EQ(nice.load(), 19);
}

}  // namespace
}  // namespace craft::server
