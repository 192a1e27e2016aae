// Every version rule of the worker, as plain calls: no threads, no store.
#include "gpu_worker/version_rules.h"

#include <optional>
#include <string>

#include "gmock/gmock.h"
#include "gpu_worker/layout_state.h"
#include "gpu_worker/stager.h"
#include "gpu_worker/test_util.h"
#include "gtest/gtest.h"
#include "planner/layout.h"
#include "wire/layout_proto.h"

namespace craft::gpu_worker {
namespace {

using ::testing::HasSubstr;
using CommitAction = VersionRules::CommitAction;
using AbortAction = VersionRules::AbortAction;

constexpr int kGpu = 0;

craft::v1::Prepare PrepareOf(const std::string& version,
                             const planner::Layout& layout = testing::NextTwoGpuLayout()) {
  craft::v1::Prepare prepare;
  *prepare.mutable_layout() = LayoutToProto(layout, version);
  return prepare;
}

// The agent bringing this worker to the node's committed `version`.
craft::v1::Prepare ResyncOf(const std::string& version) {
  craft::v1::Prepare prepare = PrepareOf(version);
  prepare.set_load_missing_from_checkpoint(true);
  return prepare;
}

craft::v1::WorkerCommand PrepareCommand(const craft::v1::Prepare& prepare) {
  craft::v1::WorkerCommand command;
  *command.mutable_prepare() = prepare;
  return command;
}

craft::v1::WorkerCommand AbortCommand(const std::string& version) {
  craft::v1::WorkerCommand command;
  command.mutable_abort()->set_version(version);
  return command;
}

craft::v1::WorkerCommand CommitCommand(const std::string& version) {
  craft::v1::WorkerCommand command;
  command.mutable_commit()->set_version(version);
  return command;
}

// What staging `version` of NextTwoGpuLayout() produced.
VersionRules::Staged StagedOf(const std::string& version, int64_t bytes_received = 1024) {
  StageResult result;
  result.bytes_received = bytes_received;
  return {LayoutState::Of(testing::NextTwoGpuLayout(), version, kGpu), result};
}

class VersionRulesTest : public ::testing::Test {
 protected:
  VersionRulesTest() : rules_(LayoutState::Of(testing::InitialTwoGpuLayout(), "0.0", kGpu)) {}

  // Prepares `version` through to staged, as the worker does when staging
  // succeeds.
  void Stage(const std::string& version) {
    absl::StatusOr<VersionRules::Claim> claim = rules_.ClaimStaging(PrepareOf(version));
    ASSERT_TRUE(claim.ok()) << claim.status();
    ASSERT_FALSE(claim->ready.has_value());
    rules_.EndStaging(StagedOf(version));
  }

  // Stages, commits and flips `version`.
  void Serve(const std::string& version) {
    Stage(version);
    ASSERT_EQ(*rules_.Commit(version), CommitAction::kFlipAtBoundary);
    ASSERT_EQ(rules_.TakePendingFlip(), version);
    rules_.FinishFlip(/*flipped=*/true);
  }

  VersionRules rules_;
};

// ---------------------------------------------------------------- prepare

TEST_F(VersionRulesTest, APrepareWithoutAVersionFails) {
  absl::StatusOr<VersionRules::Claim> claim = rules_.ClaimStaging(craft::v1::Prepare());
  EXPECT_EQ(claim.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(VersionRulesTest, ANewVersionStagesAndIsKeptOnceStaged) {
  absl::StatusOr<VersionRules::Claim> claim = rules_.ClaimStaging(PrepareOf("1.1"));
  ASSERT_TRUE(claim.ok()) << claim.status();
  EXPECT_FALSE(claim->ready.has_value()) << "the caller stages it";
  EXPECT_EQ(claim->replaced, "");
  EXPECT_EQ(rules_.staged(), nullptr) << "not staged before staging ends";
  rules_.EndStaging(StagedOf("1.1"));
  ASSERT_NE(rules_.staged(), nullptr);
  EXPECT_EQ(rules_.staged()->state.version, "1.1");
  EXPECT_EQ(rules_.serving().version, "0.0") << "staging never changes what serves";
}

TEST_F(VersionRulesTest, TheServingVersionIsReadyAtOnceWithNothingCopied) {
  absl::StatusOr<VersionRules::Claim> claim =
      rules_.ClaimStaging(PrepareOf("0.0", testing::InitialTwoGpuLayout()));
  ASSERT_TRUE(claim.ok()) << claim.status();
  ASSERT_TRUE(claim->ready.has_value());
  EXPECT_EQ(claim->ready->bytes_received, 0);
}

TEST_F(VersionRulesTest, TheServingVersionWithAnotherLayoutFails) {
  absl::StatusOr<VersionRules::Claim> claim = rules_.ClaimStaging(PrepareOf("0.0"));
  EXPECT_EQ(claim.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(claim.status().message(), HasSubstr("is serving with another layout"));
}

TEST_F(VersionRulesTest, AStagedVersionIsReadyAgainWithItsResult) {
  Stage("1.1");
  absl::StatusOr<VersionRules::Claim> again = rules_.ClaimStaging(PrepareOf("1.1"));
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_TRUE(again->ready.has_value());
  EXPECT_EQ(again->ready->bytes_received, 1024);
  EXPECT_EQ(again->replaced, "");
  EXPECT_EQ(rules_.staged()->state.version, "1.1");
}

TEST_F(VersionRulesTest, ANewerPrepareReplacesTheStagedVersion) {
  Stage("1.1");
  absl::StatusOr<VersionRules::Claim> claim = rules_.ClaimStaging(PrepareOf("1.2"));
  ASSERT_TRUE(claim.ok()) << claim.status();
  EXPECT_FALSE(claim->ready.has_value());
  EXPECT_EQ(claim->replaced, "1.1") << "the caller drops its staging";
  EXPECT_EQ(rules_.staged(), nullptr);
}

TEST_F(VersionRulesTest, AFailedOrCancelledStagingKeepsNothing) {
  ASSERT_TRUE(rules_.ClaimStaging(PrepareOf("1.1")).ok());
  rules_.EndStaging(std::nullopt);
  EXPECT_EQ(rules_.staged(), nullptr);
  EXPECT_EQ(rules_.Commit("1.1").status().code(), absl::StatusCode::kFailedPrecondition);
}

// ---------------------------------------------------------------- arrivals

TEST_F(VersionRulesTest, ANewerPrepareOrAnAbortOfTheStagingVersionCancelsIt) {
  // Nothing staging: nothing to cancel.
  EXPECT_FALSE(rules_.OnArrival(PrepareCommand(PrepareOf("1.1"))).cancel_staging);
  ASSERT_TRUE(rules_.ClaimStaging(PrepareOf("1.1")).ok());  // 1.1 stages now
  EXPECT_FALSE(rules_.OnArrival(PrepareCommand(PrepareOf("1.1"))).cancel_staging)
      << "a repeat of the version staging";
  EXPECT_FALSE(rules_.OnArrival(AbortCommand("0.9")).cancel_staging) << "another version";
  EXPECT_FALSE(rules_.OnArrival(CommitCommand("1.1")).cancel_staging);
  EXPECT_TRUE(rules_.OnArrival(PrepareCommand(PrepareOf("1.2"))).cancel_staging) << "latest wins";
  EXPECT_TRUE(rules_.OnArrival(AbortCommand("1.1")).cancel_staging);
  rules_.EndStaging(std::nullopt);
  EXPECT_FALSE(rules_.OnArrival(AbortCommand("1.1")).cancel_staging) << "staging is over";
}

TEST_F(VersionRulesTest, AResyncToAnotherVersionHoldsWindowsUntilAFlip) {
  EXPECT_FALSE(rules_.holding_windows());
  const VersionRules::Arrival arrival = rules_.OnArrival(PrepareCommand(ResyncOf("3.1")));
  EXPECT_TRUE(arrival.hold_windows);
  EXPECT_TRUE(rules_.holding_windows());
  EXPECT_EQ(rules_.held_for(), "3.1");
  // Held already: a repeat changes nothing.
  EXPECT_FALSE(rules_.OnArrival(PrepareCommand(ResyncOf("3.1"))).hold_windows);

  // A flip that fails keeps the hold; one that succeeds ends it.
  Stage("3.1");
  ASSERT_EQ(*rules_.Commit("3.1"), CommitAction::kFlipAtBoundary);
  ASSERT_EQ(rules_.TakePendingFlip(), "3.1");
  EXPECT_FALSE(rules_.FinishFlip(/*flipped=*/false));
  EXPECT_TRUE(rules_.holding_windows());
  Stage("3.1");
  ASSERT_EQ(*rules_.Commit("3.1"), CommitAction::kFlipAtBoundary);
  ASSERT_EQ(rules_.TakePendingFlip(), "3.1");
  EXPECT_TRUE(rules_.FinishFlip(/*flipped=*/true)) << "windows are served again";
  EXPECT_FALSE(rules_.holding_windows());
  EXPECT_EQ(rules_.held_for(), "");
}

TEST_F(VersionRulesTest, AResyncToTheServingVersionOrAPlannerPrepareHoldsNothing) {
  EXPECT_FALSE(rules_.OnArrival(PrepareCommand(ResyncOf("0.0"))).hold_windows);
  EXPECT_FALSE(rules_.OnArrival(PrepareCommand(PrepareOf("1.1"))).hold_windows);
  EXPECT_FALSE(rules_.holding_windows());
}

// ---------------------------------------------------------------- commit

TEST_F(VersionRulesTest, CommittingTheStagedVersionFlipsItAtTheNextBoundary) {
  Stage("1.1");
  EXPECT_FALSE(rules_.flip_pending());
  EXPECT_EQ(*rules_.Commit("1.1"), CommitAction::kFlipAtBoundary);
  EXPECT_TRUE(rules_.flip_pending()) << "a Prepare waits for the flip";
  EXPECT_EQ(*rules_.Commit("1.1"), CommitAction::kAlreadyFlipping) << "a repeat";
  EXPECT_EQ(rules_.serving().version, "0.0") << "nothing serves before the boundary";

  EXPECT_EQ(rules_.TakePendingFlip(), "1.1");
  EXPECT_FALSE(rules_.flip_pending());
  EXPECT_FALSE(rules_.FinishFlip(/*flipped=*/true));
  EXPECT_EQ(rules_.serving().version, "1.1");
  EXPECT_EQ(*rules_.serving().layout, testing::NextTwoGpuLayout());
  EXPECT_EQ(rules_.staged(), nullptr);
  EXPECT_EQ(rules_.TakePendingFlip(), "") << "one flip per commit";
}

TEST_F(VersionRulesTest, CommittingTheServingVersionIsFlippedAtOnce) {
  EXPECT_EQ(*rules_.Commit("0.0"), CommitAction::kServing);
  Serve("1.1");
  EXPECT_EQ(*rules_.Commit("1.1"), CommitAction::kServing);
  EXPECT_FALSE(rules_.flip_pending());
}

TEST_F(VersionRulesTest, CommittingAnythingElseFails) {
  absl::StatusOr<CommitAction> never = rules_.Commit("7.7");
  EXPECT_EQ(never.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(never.status().message(),
            "cannot commit version 7.7: it is not staged (serving 0.0, staged none)");
  Stage("1.1");
  EXPECT_THAT(rules_.Commit("1.2").status().message(), HasSubstr("staged 1.1"));
  EXPECT_EQ(rules_.staged()->state.version, "1.1") << "a refused commit changes nothing";
}

TEST_F(VersionRulesTest, AFailedFlipDropsTheStagingAndKeepsServing) {
  Stage("1.1");
  ASSERT_EQ(*rules_.Commit("1.1"), CommitAction::kFlipAtBoundary);
  ASSERT_EQ(rules_.TakePendingFlip(), "1.1");
  rules_.FinishFlip(/*flipped=*/false);
  EXPECT_EQ(rules_.serving().version, "0.0");
  EXPECT_EQ(rules_.staged(), nullptr);
  EXPECT_FALSE(rules_.flip_pending());
}

// ---------------------------------------------------------------- abort

TEST_F(VersionRulesTest, AbortingTheStagedVersionDropsIt) {
  Stage("1.1");
  EXPECT_EQ(*rules_.Abort("1.1"), AbortAction::kDropStaged);
  EXPECT_EQ(rules_.staged(), nullptr);
  // Once dropped, a repeat has nothing left to drop but is still answered.
  EXPECT_EQ(*rules_.Abort("1.1"), AbortAction::kNothingToDrop);
}

TEST_F(VersionRulesTest, AbortingAPreparedVersionNoLongerStagedIsDropped) {
  ASSERT_TRUE(rules_.ClaimStaging(PrepareOf("1.1")).ok());
  rules_.EndStaging(std::nullopt);  // failed or cancelled
  EXPECT_EQ(*rules_.Abort("1.1"), AbortAction::kNothingToDrop);
  Stage("1.2");
  ASSERT_EQ(rules_.ClaimStaging(PrepareOf("1.3"))->replaced, "1.2");
  EXPECT_EQ(*rules_.Abort("1.2"), AbortAction::kNothingToDrop) << "replaced";
}

TEST_F(VersionRulesTest, AbortingACommittedServingOrUnknownVersionFails) {
  Stage("1.1");
  ASSERT_EQ(*rules_.Commit("1.1"), CommitAction::kFlipAtBoundary);
  absl::StatusOr<AbortAction> committed = rules_.Abort("1.1");
  EXPECT_EQ(committed.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(committed.status().message(), "cannot abort version 1.1: it is committed");
  EXPECT_EQ(rules_.staged()->state.version, "1.1") << "still flips";

  EXPECT_EQ(rules_.Abort("0.0").status().message(), "cannot abort version 0.0: it is serving");
  EXPECT_EQ(rules_.Abort("8.8").status().message(), "cannot abort version 8.8: unknown version");
}

TEST_F(VersionRulesTest, OnlyRecentPreparesAreRemembered) {
  ASSERT_TRUE(rules_.ClaimStaging(PrepareOf("1.0")).ok());
  rules_.EndStaging(std::nullopt);
  for (int i = 1; i <= 63; ++i) {
    ASSERT_TRUE(rules_.ClaimStaging(PrepareOf("2." + std::to_string(i))).ok());
    rules_.EndStaging(std::nullopt);
  }
  EXPECT_TRUE(rules_.Abort("1.0").ok()) << "64 remembered";
  ASSERT_TRUE(rules_.ClaimStaging(PrepareOf("3.0")).ok());
  rules_.EndStaging(std::nullopt);
  EXPECT_EQ(rules_.Abort("1.0").status().message(), "cannot abort version 1.0: unknown version");
}

}  // namespace
}  // namespace craft::gpu_worker
