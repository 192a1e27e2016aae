#include "tools/loadgen/apply_recorder.h"

#include <algorithm>
#include <cmath>
#include <iterator>

#include "absl/time/clock.h"

namespace craft::loadgen {

double Percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = std::ceil(q * static_cast<double>(values.size()));
  const size_t index = static_cast<size_t>(std::clamp(rank, 1.0, double(values.size()))) - 1;
  return values[index];
}

void ApplyRecorder::Prepared(const std::string& version, int64_t bytes) {
  const absl::Time now = absl::Now();
  absl::MutexLock lock(&mu_);
  Apply& apply = applies_[version];
  if (apply.prepares++ == 0) apply.first_prepare = now;
  apply.last_prepare = now;
  apply.max_bytes = std::max(apply.max_bytes, bytes);
}

void ApplyRecorder::ForgetFinished() {
  absl::MutexLock lock(&mu_);
  for (auto it = applies_.begin(); it != applies_.end();) {
    it = Finished(it->second) ? applies_.erase(it) : std::next(it);
  }
}

void ApplyRecorder::Committed(const std::string& version) {
  const absl::Time now = absl::Now();
  absl::MutexLock lock(&mu_);
  Apply& apply = applies_[version];
  if (apply.commits++ == 0) apply.first_commit = now;
  apply.last_commit = now;
}

void ApplyRecorder::Aborted(const std::string& version) {
  absl::MutexLock lock(&mu_);
  applies_[version].aborted = true;
}

bool ApplyRecorder::InProgress() const {
  absl::MutexLock lock(&mu_);
  for (const auto& [version, apply] : applies_) {
    if (!Finished(apply)) return true;
  }
  return false;
}

void ApplySummary::Add(const ApplySummary& other) {
  prepared += other.prepared;
  committed += other.committed;
  aborted += other.aborted;
  unfinished += other.unfinished;
  for (auto [to, from] : {std::pair{&prepare_to_commit_ms, &other.prepare_to_commit_ms},
                          std::pair{&prepare_fanout_ms, &other.prepare_fanout_ms},
                          std::pair{&commit_fanout_ms, &other.commit_fanout_ms}}) {
    to->insert(to->end(), from->begin(), from->end());
  }
  max_prepare_bytes = std::max(max_prepare_bytes, other.max_prepare_bytes);
}

ApplySummary ApplyRecorder::Summarize() const {
  absl::MutexLock lock(&mu_);
  ApplySummary summary;
  for (const auto& [version, apply] : applies_) {
    if (apply.prepares > 0) ++summary.prepared;
    summary.max_prepare_bytes = std::max(summary.max_prepare_bytes, apply.max_bytes);
    if (apply.aborted) {
      ++summary.aborted;
    } else if (apply.commits >= num_agents_ && apply.prepares > 0) {
      ++summary.committed;
      summary.prepare_to_commit_ms.push_back(
          absl::ToDoubleMilliseconds(apply.last_commit - apply.first_prepare));
      summary.prepare_fanout_ms.push_back(
          absl::ToDoubleMilliseconds(apply.last_prepare - apply.first_prepare));
      summary.commit_fanout_ms.push_back(
          absl::ToDoubleMilliseconds(apply.last_commit - apply.first_commit));
    } else {
      ++summary.unfinished;
    }
  }
  return summary;
}

}  // namespace craft::loadgen
