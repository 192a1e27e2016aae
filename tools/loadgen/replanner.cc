#include "tools/loadgen/replanner.h"

#include <algorithm>
#include <utility>

#include "absl/time/clock.h"

namespace craft::loadgen {
namespace {

// Planning a 4096-GPU cluster can take minutes on a small machine.
constexpr absl::Duration kReplanDeadline = absl::Minutes(10);

}  // namespace

void ReplanStats::AddStageTimes(const craft::v1::ReplanResponse& response) {
  for (const craft::v1::StageTime& time : response.stage_times()) {
    auto it = std::find_if(stages.begin(), stages.end(), [&time](const StageSamples& samples) {
      return samples.stage == time.stage();
    });
    if (it == stages.end()) it = stages.insert(stages.end(), StageSamples{time.stage(), {}});
    it->ms.push_back(1000 * time.seconds());
  }
}

void ReplanStats::Add(const ReplanStats& other) {
  calls += other.calls;
  failed += other.failed;
  applies += other.applies;
  ms.insert(ms.end(), other.ms.begin(), other.ms.end());
  for (const StageSamples& samples : other.stages) {
    auto it = std::find_if(stages.begin(), stages.end(), [&samples](const StageSamples& mine) {
      return mine.stage == samples.stage;
    });
    if (it == stages.end()) it = stages.insert(stages.end(), StageSamples{samples.stage, {}});
    it->ms.insert(it->ms.end(), samples.ms.begin(), samples.ms.end());
  }
  if (!other.last_error.empty()) last_error = other.last_error;
  if (!other.last_decision.empty()) last_decision = other.last_decision;
}

Replanner::~Replanner() { Stop(); }

void Replanner::Start() {
  thread_ = std::thread([this] { Run(); });
}

void Replanner::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (in_flight_ != nullptr) in_flight_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

ReplanStats Replanner::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void Replanner::Run() {
  absl::Time next = absl::Now() + options_.period;
  while (true) {
    grpc::ClientContext context;
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithDeadline(absl::Condition(&stopping_), next);
      if (stopping_) return;
      in_flight_ = &context;
    }
    context.set_deadline(absl::ToChronoTime(absl::Now() + kReplanDeadline));
    if (!options_.admin_token.empty()) {
      context.AddMetadata("authorization", "Bearer " + options_.admin_token);
    }
    craft::v1::ReplanRequest request;
    request.set_force(options_.force);
    request.set_group(options_.group);
    craft::v1::ReplanResponse response;
    const absl::Time start = absl::Now();
    const grpc::Status status = stub_->Replan(&context, request, &response);
    const absl::Time end = absl::Now();

    absl::MutexLock lock(&mu_);
    in_flight_ = nullptr;
    ++stats_.calls;
    if (!status.ok()) {
      ++stats_.failed;
      stats_.last_error = status.error_message();
    } else {
      stats_.ms.push_back(absl::ToDoubleMilliseconds(end - start));
      stats_.AddStageTimes(response);
      if (!response.version().empty()) ++stats_.applies;
      stats_.last_decision = response.decision();
    }
    next = end + options_.period;  // a slow plan does not make calls pile up
  }
}

}  // namespace craft::loadgen
