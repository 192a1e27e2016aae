// Reconnect delays, the one rule for every reconnect loop (the agent's link
// to the planner, the worker's link to its agent): capped exponential backoff
// with full jitter, each delay uniform in
// [0, min(max, initial * multiplier^attempt)], so that many clients that lost
// the same server do not come back in lockstep. The owner resets it once a
// stream proved healthy; what "healthy" means is the owner's (the agent: the
// planner answered, Envoy's rule, not merely the stream opened, so a server
// that accepts and drops at once cannot cause a hot loop; the worker: the
// stream stayed open a while).
//
//   Backoff backoff(Backoff::Options{}, /*seed=*/absl::ToUnixNanos(absl::Now()));
//   absl::Duration wait = backoff.NextDelay();  // before each reconnect
//   backoff.Reset();                            // once a stream proved healthy
//
// Not thread-safe: one owner.
#ifndef CRAFT_COMMON_BACKOFF_H_
#define CRAFT_COMMON_BACKOFF_H_

#include <cstdint>
#include <random>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace craft {

class Backoff {
 public:
  struct Options {
    absl::Duration initial = absl::Milliseconds(100);
    absl::Duration max = absl::Seconds(5);
    double multiplier = 2.0;

    // initial > 0, max >= initial, multiplier >= 1.
    absl::Status Validate() const;
  };

  // `options` must be valid (Validate()); `seed` makes the jitter reproducible.
  Backoff(const Options& options, uint64_t seed);

  // The delay before the next attempt; grows the cap for the one after.
  absl::Duration NextDelay();
  // Back to the initial cap.
  void Reset();

  // The upper bound the next NextDelay() draws under.
  absl::Duration cap() const { return cap_; }
  // NextDelay() calls since construction or the last Reset().
  int attempts() const { return attempts_; }

 private:
  Options options_;
  std::mt19937_64 rng_;
  absl::Duration cap_;
  int attempts_ = 0;
};

}  // namespace craft

#endif  // CRAFT_COMMON_BACKOFF_H_
