#include "gpu_worker/version_rules.h"

#include <algorithm>
#include <cstddef>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "planner/layout.h"
#include "wire/layout_proto.h"

namespace craft::gpu_worker {
namespace {

// Prepare versions remembered to answer a late Abort with DROPPED.
constexpr size_t kRememberedVersions = 64;

}  // namespace

VersionRules::VersionRules(LayoutState serving) : serving_(std::move(serving)) {}

VersionRules::Arrival VersionRules::OnArrival(const craft::v1::WorkerCommand& command) {
  const std::string version = command.has_prepare() ? command.prepare().layout().version()
                              : command.has_abort() ? command.abort().version()
                                                    : "";
  const bool supersedes = command.has_prepare() && version != staging_;
  const bool aborts = command.has_abort() && version == staging_;
  Arrival arrival;
  if (command.has_prepare() && command.prepare().load_missing_from_checkpoint() &&
      version != serving_.version && held_for_.empty()) {
    // The agent's resync: this node committed `version`, so what this worker
    // serves must not serve any more (ranks would route with different
    // layouts). Hold the windows until the flip.
    held_for_ = version;
    arrival.hold_windows = true;
  }
  arrival.cancel_staging = !staging_.empty() && (supersedes || aborts);
  return arrival;
}

absl::StatusOr<VersionRules::Claim> VersionRules::ClaimStaging(const craft::v1::Prepare& prepare) {
  const std::string& version = prepare.layout().version();
  if (version.empty()) return absl::InvalidArgumentError("prepare without a layout version");
  Remember(version);
  Claim claim;
  if (version == serving_.version) {
    absl::StatusOr<planner::Layout> layout = LayoutFromProto(prepare.layout());
    if (!layout.ok() || !(*layout == *serving_.layout)) {
      return absl::InvalidArgumentError(
          absl::StrCat("version ", version, " is serving with another layout"));
    }
    claim.ready = StageResult{};
    return claim;
  }
  if (staged_ && staged_->state.version == version) {
    claim.ready = staged_->result;
    return claim;
  }
  if (staged_) {
    claim.replaced = staged_->state.version;
    staged_.reset();
  }
  staging_ = version;
  return claim;
}

void VersionRules::EndStaging(std::optional<Staged> kept) {
  staging_.clear();
  if (kept.has_value()) staged_ = *std::move(kept);
}

absl::StatusOr<VersionRules::CommitAction> VersionRules::Commit(const std::string& version) {
  if (!version.empty() && pending_flip_ == version) return CommitAction::kAlreadyFlipping;
  if (version == serving_.version) return CommitAction::kServing;
  if (staged_ && staged_->state.version == version) {
    pending_flip_ = version;
    return CommitAction::kFlipAtBoundary;
  }
  return absl::FailedPreconditionError(
      absl::StrCat("cannot commit version ", version, ": it is not staged (serving ",
                   serving_.version, ", staged ", staged_ ? staged_->state.version : "none", ")"));
}

absl::StatusOr<VersionRules::AbortAction> VersionRules::Abort(const std::string& version) {
  if (!version.empty() && version == pending_flip_) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot abort version ", version, ": it is committed"));
  }
  if (staged_ && staged_->state.version == version) {
    staged_.reset();
    return AbortAction::kDropStaged;
  }
  if (version == serving_.version) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot abort version ", version, ": it is serving"));
  }
  if (!Known(version)) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot abort version ", version, ": unknown version"));
  }
  return AbortAction::kNothingToDrop;
}

std::string VersionRules::TakePendingFlip() {
  std::string version = std::exchange(pending_flip_, "");
  // Commit() set pending_flip_ to the staged version, and nothing replaces
  // staging until the flip: anything else is a bug.
  CRAFT_CHECK(version.empty() || (staged_ && staged_->state.version == version))
      << "flip to " << version << " without it staged";
  return version;
}

bool VersionRules::FinishFlip(bool flipped) {
  CRAFT_CHECK(staged_.has_value()) << "a flip finished that TakePendingFlip did not start";
  bool serves_again = false;
  if (flipped) {
    serving_ = staged_->state;
    serves_again = !held_for_.empty();
    held_for_.clear();
  }
  staged_.reset();
  return serves_again;
}

void VersionRules::Remember(const std::string& version) {
  if (Known(version)) return;
  prepared_.push_back(version);
  if (prepared_.size() > kRememberedVersions) prepared_.pop_front();
}

bool VersionRules::Known(const std::string& version) const {
  return std::find(prepared_.begin(), prepared_.end(), version) != prepared_.end();
}

}  // namespace craft::gpu_worker
