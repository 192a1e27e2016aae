// The fault wrappers: what each fault does, and that no fault leaves a
// backend untouched.
#include "gpu_worker/fault_injection.h"

#include <atomic>
#include <memory>
#include <string>
#include <utility>

#include "common/clock.h"
#include "gmock/gmock.h"
#include "gpu_worker/cpu_backend.h"
#include "gpu_worker/local_layout.h"
#include "gpu_worker/stager.h"
#include "gpu_worker/test_util.h"
#include "gtest/gtest.h"

namespace craft::gpu_worker {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kBytes = 64;

// An engine that only records that it ran.
class RecordingEngine : public StagingEngine {
 public:
  absl::StatusOr<StageResult> Execute(const StagePlan& plan, absl::Time deadline,
                                      const std::atomic<bool>& cancelled) override {
    ++runs;
    saw_cancelled = cancelled;
    return StageResult{};
  }
  int runs = 0;
  bool saw_cancelled = false;
};

StagePlan PlanOf(const std::string& version) {
  StagePlan plan;
  plan.version = version;
  return plan;
}

absl::StatusOr<StageResult> Execute(StagingEngine& engine, const std::string& version,
                                    bool cancelled = false) {
  const std::atomic<bool> flag{cancelled};
  return engine.Execute(PlanOf(version), absl::InfiniteFuture(), flag);
}

std::unique_ptr<Backend> CpuBackendServing(const planner::Layout& layout) {
  auto backend = std::make_unique<CpuBackend>(kBytes, /*capacity_bytes=*/0, nullptr);
  EXPECT_TRUE(backend->store()->LoadServing(LocalLayout::Of(layout, "0.0", /*gpu=*/0)).ok());
  return backend;
}

TEST(FaultOptionsTest, OnlyAProbabilityIsChecked) {
  FaultOptions faults;
  EXPECT_FALSE(faults.any());
  EXPECT_TRUE(faults.Validate().ok());
  faults.fail_prepare_probability = 1.5;
  EXPECT_EQ(faults.Validate().code(), absl::StatusCode::kInvalidArgument);
  faults.fail_prepare_probability = -0.1;
  EXPECT_EQ(faults.Validate().code(), absl::StatusCode::kInvalidArgument);
  faults.fail_prepare_probability = 1;
  EXPECT_TRUE(faults.Validate().ok());
  EXPECT_TRUE(faults.any());
}

TEST(FaultyStagingEngineTest, WithoutFaultsItStagesWithTheInnerEngine) {
  RecordingEngine inner;
  FaultyStagingEngine engine(&inner, FaultOptions{}, Clock::Real());
  EXPECT_TRUE(Execute(engine, "1.1").ok());
  EXPECT_EQ(inner.runs, 1);
}

TEST(FaultyStagingEngineTest, ACertainFailureFailsEveryStagingBeforeItStarts) {
  RecordingEngine inner;
  FaultOptions faults;
  faults.fail_prepare_probability = 1;
  FaultyStagingEngine engine(&inner, faults, Clock::Real());
  absl::StatusOr<StageResult> staged = Execute(engine, "1.1");
  EXPECT_EQ(staged.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(staged.status().message(), HasSubstr("injected failure"));
  EXPECT_EQ(inner.runs, 0);
}

TEST(FaultyStagingEngineTest, FailuresAreDecidedBySeedAndVersion) {
  RecordingEngine inner;
  FaultOptions faults;
  faults.fail_prepare_probability = 0.5;
  faults.seed = 9;
  FaultyStagingEngine engine(&inner, faults, Clock::Real());
  FaultyStagingEngine same(&inner, faults, Clock::Real());
  int failed = 0;
  for (int i = 0; i < 40; ++i) {
    const std::string version = "1." + std::to_string(i);
    const bool ok = Execute(engine, version).ok();
    EXPECT_EQ(Execute(same, version).ok(), ok) << "reproducible: " << version;
    failed += ok ? 0 : 1;
  }
  EXPECT_GT(failed, 0);
  EXPECT_LT(failed, 40);
}

TEST(FaultyStagingEngineTest, ADelayWaitsUnlessTheStagingIsCancelled) {
  RecordingEngine inner;
  FaultOptions faults;
  faults.stage_delay = absl::Milliseconds(50);
  FaultyStagingEngine engine(&inner, faults, Clock::Real());
  absl::Time start = absl::Now();
  EXPECT_TRUE(Execute(engine, "1.1").ok());
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(50));
  EXPECT_EQ(inner.runs, 1);

  faults.stage_delay = absl::Hours(1);
  FaultyStagingEngine slow(&inner, faults, Clock::Real());
  EXPECT_TRUE(Execute(slow, "1.2", /*cancelled=*/true).ok());
  EXPECT_EQ(inner.runs, 2);
  EXPECT_TRUE(inner.saw_cancelled) << "the inner engine answers the cancellation";
}

TEST(FaultyStagingEngineDeathTest, ExitOnPrepareEndsTheProcessWhenStagingStarts) {
  RecordingEngine inner;
  FaultOptions faults;
  faults.exit_on_prepare = true;
  FaultyStagingEngine engine(&inner, faults, Clock::Real());
  EXPECT_EXIT((void)Execute(engine, "1.1"), ::testing::ExitedWithCode(kExitOnPrepareStatus), "");
}

TEST(CorruptingExpertStoreTest, PeersReadACorruptedExpertAndEverythingElseIsTheStores) {
  std::unique_ptr<Backend> backend = CpuBackendServing(testing::InitialTwoGpuLayout());
  CorruptingExpertStore corrupting(backend->store());
  const absl::StatusOr<std::string> good = backend->store()->ReadServingExpert("0.0", 0, 0, 0);
  const absl::StatusOr<std::string> bad = corrupting.ReadServingExpert("0.0", 0, 0, 0);
  ASSERT_TRUE(good.ok()) << good.status();
  ASSERT_TRUE(bad.ok()) << bad.status();
  ASSERT_EQ(bad->size(), good->size());
  EXPECT_NE((*bad)[0], (*good)[0]);
  EXPECT_EQ(bad->substr(1), good->substr(1));
  // A refusal is passed on as it is.
  EXPECT_EQ(corrupting.ReadServingExpert("9.9", 0, 0, 0).status().code(),
            backend->store()->ReadServingExpert("9.9", 0, 0, 0).status().code());
  // The worker's own view of its weights is whole.
  EXPECT_EQ(*corrupting.SlotChecksum("0.0", 0, 0), *backend->store()->SlotChecksum("0.0", 0, 0));
  EXPECT_EQ(corrupting.serving_version(), "0.0");
  EXPECT_EQ(corrupting.bytes_per_expert(), kBytes);
}

TEST(FaultInjectingBackendTest, NoFaultsLeaveTheBackendAsItIs) {
  std::unique_ptr<Backend> backend = CpuBackendServing(testing::InitialTwoGpuLayout());
  Backend* const plain = backend.get();
  EXPECT_EQ(WithFaults(std::move(backend), FaultOptions{}, Clock::Real(), {}).get(), plain);
}

TEST(FaultInjectingBackendTest, TheWrapperStagesWithFaultsAndCorruptsOnlyWhenAsked) {
  FaultOptions faults;
  faults.fail_prepare_probability = 1;
  std::unique_ptr<Backend> backend = CpuBackendServing(testing::InitialTwoGpuLayout());
  ExpertStore* const store = backend->store();
  std::unique_ptr<Backend> wrapped = WithFaults(std::move(backend), faults, Clock::Real(), {});
  EXPECT_EQ(wrapped->name(), "cpu");
  EXPECT_EQ(wrapped->store(), store) << "nothing corrupted unless asked";
  ASSERT_NE(wrapped->staging_engine(), nullptr) << "the CPU backend's expert-by-expert stager";
  EXPECT_THAT(Execute(*wrapped->staging_engine(), "1.1").status().message(),
              HasSubstr("injected failure"));

  faults.corrupt_served = true;
  std::unique_ptr<Backend> corrupting =
      WithFaults(CpuBackendServing(testing::InitialTwoGpuLayout()), faults, Clock::Real(), {});
  EXPECT_NE(dynamic_cast<CorruptingExpertStore*>(corrupting->store()), nullptr);
}

}  // namespace
}  // namespace craft::gpu_worker
