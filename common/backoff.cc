#include "common/backoff.h"

#include <algorithm>

namespace craft {

absl::Status Backoff::Options::Validate() const {
  if (initial <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("backoff: initial delay must be positive");
  }
  if (max < initial) {
    return absl::InvalidArgumentError("backoff: max delay must be >= the initial delay");
  }
  if (!(multiplier >= 1.0)) {
    return absl::InvalidArgumentError("backoff: multiplier must be >= 1");
  }
  return absl::OkStatus();
}

Backoff::Backoff(const Options& options, uint64_t seed)
    : options_(options), rng_(seed), cap_(options.initial) {}

absl::Duration Backoff::NextDelay() {
  // Draw in whole microseconds: uniform over [0, cap].
  const int64_t cap_us = absl::ToInt64Microseconds(cap_);
  std::uniform_int_distribution<int64_t> jitter(0, cap_us);
  const absl::Duration delay = absl::Microseconds(jitter(rng_));
  cap_ = std::min(options_.max, cap_ * options_.multiplier);
  ++attempts_;
  return delay;
}

void Backoff::Reset() {
  cap_ = options_.initial;
  attempts_ = 0;
}

}  // namespace craft
