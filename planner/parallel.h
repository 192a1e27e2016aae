// Running independent per-layer work on several cores.
#ifndef CRAFT_PLANNER_PARALLEL_H_
#define CRAFT_PLANNER_PARALLEL_H_

#include <functional>

#include "absl/status/status.h"

namespace craft::planner {

// The threads a `threads` setting means: itself when positive, every core of
// the machine when 0 (at least 1).
int ResolveThreads(int threads);

// Calls fn(i) for every i in [0, n) on up to ResolveThreads(threads) threads
// (the caller's among them) and returns the error of the lowest i that failed,
// or OK. Every i runs even after a failure, so the result does not depend on
// the scheduling. fn must be safe to call concurrently for different i; each
// call should write only its own i's results, which keeps plans identical
// whatever the thread count.
//
// Threads are started per call: planner passes run for tens of milliseconds
// or more, where a thread start (tens of microseconds) does not count, and
// nothing outlives the call.
absl::Status ParallelFor(int n, int threads, const std::function<absl::Status(int)>& fn);

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_PARALLEL_H_
