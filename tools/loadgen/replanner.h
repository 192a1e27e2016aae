// Calls PlacementService.Replan on a thread of its own, `period` after Start
// and then `period` after the previous call returned, and records how long
// each call took (planning plus the start of the apply, as the planner runs
// them on its replan thread), how long each stage of the replan took on the
// planner (ReplanResponse.stage_times) and which ones started an apply.
//
//   Replanner replanner(stub, {absl::Seconds(10), /*force=*/true, ""});
//   replanner.Start();
//   ...
//   replanner.Stop();  // cancels a call in flight
//   ReplanStats stats = replanner.stats();
//
// Thread-safety: thread-safe.
#ifndef CRAFT_TOOLS_LOADGEN_REPLANNER_H_
#define CRAFT_TOOLS_LOADGEN_REPLANNER_H_

#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "craft/v1/placement.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace craft::loadgen {

struct ReplannerOptions {
  absl::Duration period = absl::Seconds(10);
  bool force = true;
  std::string admin_token;  // sent as "authorization: Bearer <token>" when set
  std::string group;        // the placement group re-planned; "": the only one
};

// One replan stage's time in each successful call whose replan ran it.
struct StageSamples {
  std::string stage;  // as the planner names it: trace, plan, evaluate, prepare
  std::vector<double> ms;
};

struct ReplanStats {
  int calls = 0;
  int failed = 0;                    // the RPC failed
  int applies = 0;                   // the planner started an apply
  std::vector<double> ms;            // per successful call
  std::vector<StageSamples> stages;  // in the order the planner first reported them
  std::string last_error;
  std::string last_decision;

  // Adds one successful call's stage times.
  void AddStageTimes(const craft::v1::ReplanResponse& response);
  // Adds another Replanner's calls (another placement group's).
  void Add(const ReplanStats& other);
};

class Replanner {
 public:
  // `stub` must outlive the Replanner.
  Replanner(craft::v1::PlacementService::Stub* stub, ReplannerOptions options)
      : stub_(stub), options_(std::move(options)) {}
  ~Replanner();  // Stop()

  void Start();
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);
  ReplanStats stats() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Run() ABSL_LOCKS_EXCLUDED(mu_);

  craft::v1::PlacementService::Stub* const stub_;
  const ReplannerOptions options_;
  std::thread thread_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* in_flight_ ABSL_GUARDED_BY(mu_) = nullptr;
  ReplanStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace craft::loadgen

#endif  // CRAFT_TOOLS_LOADGEN_REPLANNER_H_
