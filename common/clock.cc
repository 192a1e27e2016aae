#include "common/clock.h"

namespace craft {
namespace {

class RealClock : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  bool SleepUntil(absl::Time deadline, absl::Mutex* mu, const bool* cancelled) override {
    while (!*cancelled) {
      if (absl::Now() >= deadline) return true;
      mu->AwaitWithDeadline(absl::Condition(cancelled), deadline);
    }
    return false;
  }
};

}  // namespace

Clock* Clock::Real() {
  static RealClock* clock = new RealClock();
  return clock;
}

absl::Time FakeClock::Now() const {
  absl::MutexLock lock(&now_mu_);
  return now_;
}

bool FakeClock::SleepUntil(absl::Time deadline, absl::Mutex* mu, const bool* cancelled) {
  // Poll in short real-time slices: a test advancing the clock from another
  // thread cannot signal `mu`'s condition, so wake up to re-check.
  while (!*cancelled) {
    if (Now() >= deadline) return true;
    mu->AwaitWithTimeout(absl::Condition(cancelled), absl::Milliseconds(1));
  }
  return false;
}

void FakeClock::Advance(absl::Duration d) {
  absl::MutexLock lock(&now_mu_);
  now_ += d;
}

}  // namespace craft
