// Time, injected: components take a Clock so tests run on a FakeClock (no
// sleeps, deterministic timeouts), as LevelDB injects its Env.
#ifndef CRAFT_COMMON_CLOCK_H_
#define CRAFT_COMMON_CLOCK_H_

#include <cstdint>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace craft {

// Thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
  // Blocks until Now() >= deadline (FakeClock: until a test advances it) or
  // `*cancelled` becomes true under `mu`; returns false when cancelled.
  // `mu` must be held by the caller.
  virtual bool SleepUntil(absl::Time deadline, absl::Mutex* mu, const bool* cancelled) = 0;

  // The process-wide real clock.
  static Clock* Real();
};

// A clock that only moves when told to. Thread-safe.
class FakeClock : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000)) : now_(start) {}

  absl::Time Now() const override;
  bool SleepUntil(absl::Time deadline, absl::Mutex* mu, const bool* cancelled) override;
  void Advance(absl::Duration d);

 private:
  mutable absl::Mutex now_mu_;
  absl::Time now_ ABSL_GUARDED_BY(now_mu_);
};

inline int64_t UnixMillis(absl::Time t) { return absl::ToUnixMillis(t); }

}  // namespace craft

#endif  // CRAFT_COMMON_CLOCK_H_
