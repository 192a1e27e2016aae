#include "gpu_worker/stager.h"

#include <atomic>
#include <map>
#include <string>
#include <vector>

#include "common/clock.h"
#include "gmock/gmock.h"
#include "gpu_worker/cpu_backend.h"
#include "gpu_worker/expert_weights.h"
#include "gpu_worker/local_layout.h"
#include "gpu_worker/test_util.h"
#include "gtest/gtest.h"
#include "planner/layout.h"

namespace craft::gpu_worker {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kBytes = 256;

// Writes the expert's true weights (or corrupted ones) into staging, as a
// peer would send them; records what was asked.
class FakeFetcher : public ExpertFetcher {
 public:
  absl::StatusOr<int64_t> Fetch(const FetchRequest& request, ExpertStore* store,
                                const std::atomic<bool>* cancelled) override {
    requests.push_back(request);
    std::string bytes = ExpertWeights(request.layer, request.expert, kBytes);
    if (corrupt) bytes[kBytes / 2] ^= 1;
    absl::Status written =
        store->WriteStaging(request.dst_version, request.layer, request.dst_slot, 0, bytes);
    if (!written.ok()) return written;
    return kBytes;
  }

  bool corrupt = false;
  std::vector<FetchRequest> requests;
};

class StagerTest : public ::testing::Test {
 protected:
  StagerTest() {
    shape_.gpu = 1;
    shape_.cluster = {2, 1};
    shape_.num_layers = 2;
    shape_.num_experts = 4;
    shape_.top_k = 2;
    shape_.bytes_per_expert = kBytes;
  }

  void SetUp() override {
    ASSERT_TRUE(store_.LoadServing(LocalLayout::Of(initial_, "0.0", 1)).ok());
  }

  craft::v1::Prepare NextPrepare() const {
    return testing::MakePrepare(initial_, "0.0", testing::NextTwoGpuLayout(), "1.1",
                                {{0, "gpu0:1"}, {1, "gpu1:1"}}, kBytes);
  }

  absl::StatusOr<StagePlan> Plan(const craft::v1::Prepare& prepare) const {
    return PlanStaging(prepare, shape_, "0.0", initial_);
  }

  absl::StatusOr<StageResult> Execute(const StagePlan& plan,
                                      absl::Time deadline = absl::InfiniteFuture()) {
    Stager stager(&store_, &fetcher_, &clock_, {});
    return stager.Execute(plan, deadline, cancelled_);
  }

  WorkerShape shape_;
  const planner::Layout initial_ = testing::InitialTwoGpuLayout();
  CpuExpertStore store_{kBytes, 0};
  FakeFetcher fetcher_;
  FakeClock clock_;
  std::atomic<bool> cancelled_{false};
};

TEST_F(StagerTest, PlansEverySlotFromTheRightSource) {
  const absl::StatusOr<StagePlan> plan = Plan(NextPrepare());
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->version, "1.1");
  ASSERT_EQ(plan->sources.size(), 5u);  // 3 + 2 slots on GPU 1
  using Kind = SlotSource::Kind;
  // Layer 0, GPU 1 = {2 kept, 1 and 0 from GPU 0}.
  EXPECT_EQ(plan->sources[0].kind, Kind::kKeep);
  EXPECT_EQ(plan->sources[1].kind, Kind::kFetch);
  EXPECT_EQ(plan->sources[1].fetch.src_gpu, 0);
  EXPECT_EQ(plan->sources[1].fetch.src_slot, 1);
  EXPECT_EQ(plan->sources[1].fetch.src_version, "0.0");
  EXPECT_EQ(plan->sources[1].fetch.src_endpoint, "gpu0:1");
  EXPECT_EQ(plan->sources[1].fetch.dst_version, "1.1");
  EXPECT_EQ(plan->sources[2].kind, Kind::kFetch);
  EXPECT_EQ(plan->sources[2].expert, 0);
  // Layer 1, GPU 1 = {3, 2}: swapped in place, local copies.
  EXPECT_EQ(plan->sources[3].kind, Kind::kLocalCopy);
  EXPECT_EQ(plan->sources[3].serving_slot, 1);
  EXPECT_EQ(plan->sources[4].kind, Kind::kLocalCopy);
  EXPECT_EQ(plan->sources[4].serving_slot, 0);
}

TEST_F(StagerTest, StagesAndVerifiesEverySlot) {
  const StagePlan plan = *Plan(NextPrepare());
  const absl::StatusOr<StageResult> result = Execute(plan);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->fetched, 2);
  EXPECT_EQ(result->copied, 3);
  EXPECT_EQ(result->bytes_received, 2 * kBytes);
  EXPECT_EQ(fetcher_.requests.size(), 2u);
  EXPECT_EQ(store_.staging_version(), "1.1");
  for (int l = 0; l < 2; ++l) {
    for (int s = 0; s < plan.local.layers[l].num_slots(); ++s) {
      EXPECT_EQ(*store_.SlotChecksum("1.1", l, s),
                ExpectedChecksum(l, plan.local.layers[l].experts[s], kBytes));
    }
  }
  EXPECT_EQ(store_.serving_version(), "0.0");  // staging does not flip
}

TEST_F(StagerTest, ChecksumMismatchFailsAndDropsStaging) {
  fetcher_.corrupt = true;
  const absl::StatusOr<StageResult> result = Execute(*Plan(NextPrepare()));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("checksum mismatch"));
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("fetched from gpu 0"));
  EXPECT_EQ(store_.staging_version(), "");
}

TEST_F(StagerTest, MissingSourceFailsThePlan) {
  craft::v1::Prepare prepare = NextPrepare();
  // Drop the transfer that brings expert 1 to GPU 1: GPU 1 does not hold it.
  auto* transfers = prepare.mutable_transfers();
  for (int i = 0; i < transfers->size(); ++i) {
    if (transfers->Get(i).dst_gpu() == 1 && transfers->Get(i).expert() == 1) {
      transfers->DeleteSubrange(i, 1);
      break;
    }
  }
  const absl::StatusOr<StagePlan> plan = Plan(prepare);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(plan.status().message()), HasSubstr("prepare 1.1: missing source"));

  craft::v1::Prepare no_endpoint = NextPrepare();
  no_endpoint.mutable_gpu_endpoints()->erase(0);
  EXPECT_THAT(std::string(Plan(no_endpoint).status().message()),
              HasSubstr("no transfer endpoint for gpu 0"));
}

TEST_F(StagerTest, AResyncLoadsWhatNoPeerSendsFromTheCheckpoint) {
  // What an agent sends its own worker: the committed layout, no transfers.
  craft::v1::Prepare prepare = NextPrepare();
  prepare.clear_transfers();
  prepare.clear_gpu_endpoints();
  prepare.set_load_missing_from_checkpoint(true);
  const absl::StatusOr<StagePlan> plan = Plan(prepare);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->CountOf(SlotSource::Kind::kFetch), 0);
  EXPECT_GT(plan->CountOf(SlotSource::Kind::kCheckpoint), 0);
  EXPECT_GT(plan->CountOf(SlotSource::Kind::kKeep) + plan->CountOf(SlotSource::Kind::kLocalCopy), 0)
      << "what this GPU holds is copied, not reloaded";
  const absl::StatusOr<StageResult> result = Execute(*plan);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->loaded, plan->CountOf(SlotSource::Kind::kCheckpoint));
  EXPECT_TRUE(fetcher_.requests.empty());
  // Every staged slot verified against its expert's true weights.
  for (const SlotSource& source : plan->sources) {
    EXPECT_EQ(*store_.SlotChecksum("1.1", source.layer, source.slot),
              ExpectedChecksum(source.layer, source.expert, kBytes));
  }
}

TEST_F(StagerTest, LocalCopiesNeedNoFetch) {
  // Only layer 1 changes (a swap within each GPU): everything is local.
  planner::Layout next = initial_;
  next.layers[1] = testing::NextTwoGpuLayout().layers[1];
  const craft::v1::Prepare prepare = testing::MakePrepare(initial_, "0.0", next, "1.2", {}, kBytes);
  const absl::StatusOr<StagePlan> plan = Plan(prepare);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->CountOf(SlotSource::Kind::kFetch), 0);
  const absl::StatusOr<StageResult> result = Execute(*plan);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->bytes_received, 0);
  EXPECT_TRUE(fetcher_.requests.empty());
  EXPECT_EQ(*store_.SlotChecksum("1.2", 1, 0), ExpectedChecksum(1, 3, kBytes));
}

TEST_F(StagerTest, RefusesPreparesThatDoNotFit) {
  craft::v1::Prepare prepare = NextPrepare();
  prepare.set_bytes_per_expert(kBytes * 2);
  EXPECT_THAT(std::string(Plan(prepare).status().message()), HasSubstr("bytes_per_expert"));

  prepare = NextPrepare();
  prepare.mutable_layout()->set_num_experts(5);  // expert 4 has no replica
  EXPECT_EQ(Plan(prepare).status().code(), absl::StatusCode::kInvalidArgument);

  prepare = NextPrepare();
  prepare.mutable_layout()->set_version("0.0");
  EXPECT_THAT(std::string(Plan(prepare).status().message()), HasSubstr("already serving"));

  prepare = NextPrepare();
  for (auto& t : *prepare.mutable_transfers()) t.set_src_version("0.9");
  EXPECT_THAT(std::string(Plan(prepare).status().message()),
              HasSubstr("this GPU serves version 0.0, not 0.9"));

  // A transfer into GPU 1 naming a slot that holds another expert.
  prepare = NextPrepare();
  for (auto& t : *prepare.mutable_transfers()) {
    if (t.dst_gpu() == 1 && t.layer() == 0) t.set_dst_slot(3);
  }
  EXPECT_THAT(std::string(Plan(prepare).status().message()), HasSubstr("holds expert 2"));

  // A transfer from GPU 1 naming a slot GPU 1 does not hold.
  prepare = NextPrepare();
  for (auto& t : *prepare.mutable_transfers()) {
    if (t.src_gpu() == 1 && t.dst_gpu() == 0) t.set_src_slot(0);
  }
  EXPECT_THAT(std::string(Plan(prepare).status().message()), HasSubstr("is not on this GPU"));

  prepare = NextPrepare();
  *prepare.add_transfers() = prepare.transfers(prepare.transfers_size() - 1);
  EXPECT_THAT(std::string(Plan(prepare).status().message()), HasSubstr("already fills"));
}

TEST_F(StagerTest, CancellationAndTimeoutStopStaging) {
  const StagePlan plan = *Plan(NextPrepare());
  cancelled_ = true;
  EXPECT_EQ(Execute(plan).status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(store_.staging_version(), "");
  cancelled_ = false;
  EXPECT_EQ(Execute(plan, clock_.Now()).status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(store_.staging_version(), "");
}

}  // namespace
}  // namespace craft::gpu_worker
