// The CUDA backend through the worker's interfaces: the device store against
// the ExpertStore contract, the device counter against the CPU counter on the
// same router choices, and NCCL staging of a real Prepare between two GPUs,
// including a peer that never shows up. Skips without enough GPUs.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "gpu_worker/cpu_backend.h"
#include "gpu_worker/cuda/device_expert_store.h"
#include "gpu_worker/cuda/device_load_counter.h"
#include "gpu_worker/cuda/expert_hash.h"
#include "gpu_worker/cuda/gpu_test_util.h"
#include "gpu_worker/cuda/nccl_staging_engine.h"
#include "gpu_worker/cuda/nccl_transfer.h"
#include "gpu_worker/routing.h"
#include "gpu_worker/stager.h"
#include "gpu_worker/test_util.h"
#include "gpu_worker/traffic.h"
#include "gpu_worker/worker_shape.h"
#include "gtest/gtest.h"

namespace craft::gpu {
namespace {

using gpu_worker::LocalLayout;

// Small experts: 3 x 64 x 32 bf16 = 12 KiB.
ExpertShape SmallShape() {
  ExpertShape shape;
  shape.hidden = 64;
  shape.inter = 32;
  return shape;
}

LocalLayout Serving() { return {"0.0", {{2, {2, 3}}, {3, {1}}}}; }
LocalLayout Next() { return {"1.1", {{2, {3, 3, 0}}, {2, {1, 2}}}}; }

std::unique_ptr<DeviceExpertStore> MakeStore(int device, int buffers) {
  absl::StatusOr<std::unique_ptr<DeviceExpertStore>> store =
      DeviceExpertStore::Create(device, SmallShape(), buffers * SmallShape().bytes());
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? *std::move(store) : nullptr;
}

std::string FilledExpert(int layer, int expert) {
  std::string bytes(SmallShape().bytes(), '\0');
  HostFillExpert(layer, expert, SmallShape().elements(), reinterpret_cast<uint16_t*>(bytes.data()));
  return bytes;
}

TEST(DeviceExpertStoreTest, ServesTheDeterministicExpertsWithMatchingChecksums) {
  CRAFT_REQUIRE_GPUS(1);
  std::unique_ptr<DeviceExpertStore> store = MakeStore(0, 8);
  CRAFT_ASSERT_OK(store->LoadServing(Serving()));
  EXPECT_EQ(store->serving_version(), "0.0");
  EXPECT_EQ(store->free_buffers(), 5);
  const int64_t elements = SmallShape().elements();
  EXPECT_EQ(store->ExpectedChecksum(0, 3), HostExpectedChecksum(0, 3, elements));
  CRAFT_ASSERT_OK_AND_ASSIGN(uint64_t sum, store->SlotChecksum("0.0", 0, 1));
  EXPECT_EQ(sum, HostExpectedChecksum(0, 3, elements));
  CRAFT_ASSERT_OK_AND_ASSIGN(std::string bytes, store->ReadServingExpert("0.0", 1, 3, 1));
  EXPECT_EQ(bytes, FilledExpert(1, 1));
  EXPECT_EQ(store->ReadServingExpert("0.0", 0, 2, 3).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->ReadServingExpert("9.9", 0, 2, 2).status().code(), absl::StatusCode::kNotFound);
}

TEST(DeviceExpertStoreTest, StagingSharesKeptExpertsAndTheFlipFreesWhatNoSlotHolds) {
  CRAFT_REQUIRE_GPUS(1);
  std::unique_ptr<DeviceExpertStore> store = MakeStore(0, 8);
  CRAFT_ASSERT_OK(store->LoadServing(Serving()));  // 3 buffers
  CRAFT_ASSERT_OK(store->BeginStaging(Next()));
  // Layer 0: {3, 3, 0}: two slots share serving expert 3, expert 0 arrives.
  CRAFT_ASSERT_OK(store->CopyToStaging("1.1", 0, 1, 0));
  CRAFT_ASSERT_OK(store->CopyToStaging("1.1", 0, 1, 1));
  const std::string expert0 = FilledExpert(0, 0);
  CRAFT_ASSERT_OK(store->WriteStaging("1.1", 0, 2, 0, expert0.substr(0, 4096)));
  CRAFT_ASSERT_OK(store->WriteStaging("1.1", 0, 2, 4096, expert0.substr(4096)));
  // Layer 1: {1, 2}: expert 1 kept, expert 2 arrives.
  CRAFT_ASSERT_OK(store->CopyToStaging("1.1", 1, 0, 0));
  CRAFT_ASSERT_OK(store->WriteStaging("1.1", 1, 1, 0, FilledExpert(1, 2)));
  EXPECT_EQ(store->free_buffers(), 8 - 3 - 2);  // only the two arrivals took memory
  for (const auto& [layer, slot, expert] : std::vector<std::tuple<int, int, int>>{
           {0, 0, 3}, {0, 1, 3}, {0, 2, 0}, {1, 0, 1}, {1, 1, 2}}) {
    CRAFT_ASSERT_OK_AND_ASSIGN(uint64_t sum, store->SlotChecksum("1.1", layer, slot));
    EXPECT_EQ(sum, store->ExpectedChecksum(layer, expert)) << layer << "/" << slot;
  }
  EXPECT_EQ(store->WriteStaging("1.1", 0, 2, 12000, std::string(1000, 'x')).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(store->WriteStaging("2.2", 0, 2, 0, "x").code(), absl::StatusCode::kFailedPrecondition);

  CRAFT_ASSERT_OK(store->Flip("1.1"));
  // Serving expert 2 of layer 0 is held by no slot now; 3 and 1 still are.
  EXPECT_EQ(store->free_buffers(), 8 - 4);
  EXPECT_EQ(store->serving_version(), "1.1");
  EXPECT_EQ(store->staging_version(), "");
}

TEST(DeviceExpertStoreTest, RefusesWhatDoesNotFitAndUnfilledFlips) {
  CRAFT_REQUIRE_GPUS(1);
  std::unique_ptr<DeviceExpertStore> store = MakeStore(0, 3);
  CRAFT_ASSERT_OK(store->LoadServing(Serving()));
  CRAFT_ASSERT_OK(store->BeginStaging(Next()));
  EXPECT_EQ(store->WriteStaging("1.1", 0, 2, 0, "x").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(store->Flip("1.1").code(), absl::StatusCode::kFailedPrecondition);  // slots unset
  CRAFT_ASSERT_OK(store->DropStaging("1.1"));
  EXPECT_EQ(store->free_buffers(), 0);
  EXPECT_FALSE(DeviceExpertStore::Create(0, SmallShape(), 100).ok());
}

TEST(DeviceLoadCounterTest, CountsWhatTheCpuCounterCountsOnTheSameChoices) {
  CRAFT_REQUIRE_GPUS(1);
  // 3 GPUs, 2 layers of 6 experts, some replicated.
  planner::Layout layout;
  layout.num_experts = 6;
  layout.cluster = {3, 1};
  layout.layers.push_back({{3, 3, 2}, {0, 1, 2, 0, 3, 4, 0, 5}});
  layout.layers.push_back({{3, 2, 3}, {0, 1, 5, 2, 3, 4, 5, 1}});
  ASSERT_TRUE(layout.Validate().ok());
  const gpu_worker::RoutingTable routing(layout);
  gpu_worker::TrafficOptions options;
  options.tokens_per_window = 20000;
  options.top_k = 3;
  absl::StatusOr<gpu_worker::TrafficGenerator> traffic = gpu_worker::TrafficGenerator::Create(
      options, *gpu_worker::Popularity::Synthetic(2, 6, 3, /*skew=*/2, /*seed=*/5));
  ASSERT_TRUE(traffic.ok()) << traffic.status();

  CRAFT_ASSERT_OK_AND_ASSIGN(std::unique_ptr<DeviceLoadCounter> device,
                             DeviceLoadCounter::Create(0));
  gpu_worker::CpuLoadCounter cpu;
  std::vector<int64_t> total(2, 0);
  for (int64_t window : {100, 101}) {
    for (int gpu = 0; gpu < 3; ++gpu) {
      const LocalLayout mine = LocalLayout::Of(layout, "1.1", gpu);
      auto want = traffic->CountWindow(window, routing, mine, &cpu);
      auto got = traffic->CountWindow(window, routing, mine, device.get());
      ASSERT_TRUE(want.ok() && got.ok()) << want.status() << got.status();
      EXPECT_EQ(*got, *want) << "window " << window << " gpu " << gpu;
      for (int l = 0; l < 2; ++l) {
        for (int64_t c : (*got)[l]) total[l] += c;
      }
    }
  }
  EXPECT_EQ(total, (std::vector<int64_t>{2 * 20000 * 3, 2 * 20000 * 3}));
}

// Two GPUs stage testing::NextTwoGpuLayout() from the initial layout.
class NcclStagingEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CRAFT_REQUIRE_GPUS(2);
    for (int gpu = 0; gpu < 2; ++gpu) {
      stores_[gpu] = MakeStore(gpu, 16);
      ASSERT_NE(stores_[gpu], nullptr);
      CRAFT_ASSERT_OK(stores_[gpu]->LoadServing(LocalLayout::Of(initial_, "0.0", gpu)));
      engines_[gpu] = std::make_unique<NcclStagingEngine>(stores_[gpu].get(), gpu, 2, options_);
    }
  }

  gpu_worker::WorkerShape Shape(int gpu) const {
    gpu_worker::WorkerShape shape;
    shape.gpu = gpu;
    shape.cluster = {2, 1};
    shape.num_layers = 2;
    shape.num_experts = 4;
    shape.top_k = 2;
    shape.bytes_per_expert = SmallShape().bytes();
    return shape;
  }

  gpu_worker::StagePlan Plan(int gpu, const std::string& group, const std::string& serving = "0.0",
                             const std::string& version = "1.1") const {
    craft::v1::Prepare prepare =
        gpu_worker::testing::MakePrepare(initial_, serving, gpu_worker::testing::NextTwoGpuLayout(),
                                         version, {{0, "gpu0"}, {1, "gpu1"}}, SmallShape().bytes());
    prepare.set_transfer_group_id(group);
    absl::StatusOr<gpu_worker::StagePlan> plan =
        gpu_worker::PlanStaging(prepare, Shape(gpu), serving, initial_);
    EXPECT_TRUE(plan.ok()) << plan.status();
    return *std::move(plan);
  }

  static std::string NewGroup() {
    absl::StatusOr<NcclId> id = NewNcclId();
    EXPECT_TRUE(id.ok()) << id.status();
    return std::string(id->bytes.begin(), id->bytes.end());
  }

  const planner::Layout initial_ = gpu_worker::testing::InitialTwoGpuLayout();
  TransferOptions options_{absl::Seconds(20)};
  std::unique_ptr<DeviceExpertStore> stores_[2];
  std::unique_ptr<NcclStagingEngine> engines_[2];
  std::atomic<bool> cancelled_{false};
};

TEST_F(NcclStagingEngineTest, MovesEveryExpertAndEverySlotHoldsItsExpertAfterTheFlip) {
  const std::string group = NewGroup();
  const gpu_worker::StagePlan plans[2] = {Plan(0, group), Plan(1, group)};
  ASSERT_GT(plans[0].CountOf(gpu_worker::SlotSource::Kind::kFetch), 0);
  ASSERT_FALSE(plans[0].sends.empty());
  absl::StatusOr<gpu_worker::StageResult> results[2];
  std::thread ranks[2];
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  for (int gpu = 0; gpu < 2; ++gpu) {
    ranks[gpu] = std::thread(
        [&, gpu] { results[gpu] = engines_[gpu]->Execute(plans[gpu], deadline, cancelled_); });
  }
  for (std::thread& rank : ranks) rank.join();
  for (int gpu = 0; gpu < 2; ++gpu) {
    ASSERT_TRUE(results[gpu].ok()) << results[gpu].status();
    EXPECT_EQ(results[gpu]->fetched, plans[gpu].CountOf(gpu_worker::SlotSource::Kind::kFetch));
    EXPECT_EQ(results[gpu]->bytes_received, results[gpu]->fetched * SmallShape().bytes());
    CRAFT_ASSERT_OK(stores_[gpu]->Flip("1.1"));
    const LocalLayout& local = plans[gpu].local;
    for (int l = 0; l < local.num_layers(); ++l) {
      for (int s = 0; s < local.layers[l].num_slots(); ++s) {
        CRAFT_ASSERT_OK_AND_ASSIGN(uint64_t sum, stores_[gpu]->SlotChecksum("1.1", l, s));
        EXPECT_EQ(sum, HostExpectedChecksum(l, local.layers[l].experts[s], SmallShape().elements()))
            << "gpu " << gpu << " layer " << l << " slot " << s;
      }
    }
  }
  EXPECT_EQ(engines_[0]->aborts(), 0);
}

TEST_F(NcclStagingEngineTest, ACorruptExpertIsDataLossAndTheGroupSurvives) {
  // Both GPUs serve "0.1": the initial experts, except that GPU 0's copy of
  // expert 0 of layer 0 (its slot 0) has one byte flipped. The next layout
  // moves that expert to GPU 1.
  for (int gpu = 0; gpu < 2; ++gpu) {
    LocalLayout corrupt = LocalLayout::Of(initial_, "0.1", gpu);
    CRAFT_ASSERT_OK(stores_[gpu]->BeginStaging(corrupt));
    for (int l = 0; l < corrupt.num_layers(); ++l) {
      for (int s = 0; s < corrupt.layers[l].num_slots(); ++s) {
        if (gpu == 0 && l == 0 && s == 0) {
          std::string bytes = FilledExpert(0, corrupt.layers[0].experts[0]);
          bytes[100] ^= 1;
          CRAFT_ASSERT_OK(stores_[gpu]->WriteStaging("0.1", 0, 0, 0, bytes));
        } else {
          CRAFT_ASSERT_OK(stores_[gpu]->CopyToStaging("0.1", l, s, s));
        }
      }
    }
    CRAFT_ASSERT_OK(stores_[gpu]->Flip("0.1"));
  }
  const std::string group = NewGroup();
  for (const std::string version : {"1.1", "1.2"}) {
    absl::StatusOr<gpu_worker::StageResult> results[2];
    std::thread ranks[2];
    for (int gpu = 0; gpu < 2; ++gpu) {
      ranks[gpu] = std::thread([&, gpu] {
        results[gpu] = engines_[gpu]->Execute(Plan(gpu, group, "0.1", version),
                                              absl::Now() + absl::Seconds(30), cancelled_);
      });
    }
    for (std::thread& rank : ranks) rank.join();
    EXPECT_TRUE(results[0].ok()) << results[0].status();
    EXPECT_EQ(results[1].status().code(), absl::StatusCode::kDataLoss) << results[1].status();
    EXPECT_EQ(stores_[1]->staging_version(), "");
    CRAFT_ASSERT_OK(stores_[0]->DropStaging(version));
  }
  // The same group moved both versions: a checksum mismatch aborts nothing.
  EXPECT_EQ(engines_[0]->aborts(), 0);
  EXPECT_EQ(engines_[1]->aborts(), 0);
}

TEST_F(NcclStagingEngineTest, APeerThatNeverJoinsFailsWithinTheDeadlineAndSpendsTheId) {
  const std::string group = NewGroup();
  const gpu_worker::StagePlan plan = Plan(0, group);
  const absl::Time start = absl::Now();
  absl::StatusOr<gpu_worker::StageResult> result =
      engines_[0]->Execute(plan, start + absl::Seconds(2), cancelled_);
  EXPECT_FALSE(result.ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(15));
  EXPECT_EQ(engines_[0]->aborts(), 1);
  EXPECT_EQ(stores_[0]->staging_version(), "");  // dropped
  EXPECT_EQ(stores_[0]->serving_version(), "0.0");
  // The id is spent: the next Prepare must bring rank 0's new one.
  absl::StatusOr<gpu_worker::StageResult> again =
      engines_[0]->Execute(plan, absl::Now() + absl::Seconds(2), cancelled_);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition) << again.status();
}

TEST_F(NcclStagingEngineTest, MovingExpertsWithoutAGroupIdFails) {
  absl::StatusOr<gpu_worker::StageResult> result =
      engines_[0]->Execute(Plan(0, ""), absl::Now() + absl::Seconds(2), cancelled_);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition) << result.status();
  EXPECT_EQ(stores_[0]->staging_version(), "");
}

// Every visible GPU (up to 8) stages a random layout change planned the way
// the planner plans transfers: remote moves, local copies, several
// destinations of one expert, slots that are both source and destination.
TEST(NcclStagingEngineResyncTest, AResyncLoadsFromTheCheckpointWithoutAGroup) {
  // What an agent sends a worker that came back on another layout: no
  // transfers, no group id, so one GPU and no NCCL; what the GPU does not
  // hold comes from the checkpoint (the fill rule), and only those slots take
  // new buffers.
  CRAFT_REQUIRE_GPUS(1);
  const planner::Layout initial = gpu_worker::testing::InitialTwoGpuLayout();
  std::unique_ptr<DeviceExpertStore> store = MakeStore(0, 16);
  ASSERT_NE(store, nullptr);
  CRAFT_ASSERT_OK(store->LoadServing(LocalLayout::Of(initial, "0.0", 1)));
  NcclStagingEngine engine(store.get(), /*rank=*/1, /*num_ranks=*/2, TransferOptions{});
  craft::v1::Prepare prepare = gpu_worker::testing::MakePrepare(
      initial, "0.0", gpu_worker::testing::NextTwoGpuLayout(), "1.1", {}, SmallShape().bytes());
  prepare.clear_transfers();
  prepare.set_load_missing_from_checkpoint(true);
  gpu_worker::WorkerShape shape;
  shape.gpu = 1;
  shape.cluster = {2, 1};
  shape.num_layers = 2;
  shape.num_experts = 4;
  shape.top_k = 2;
  shape.bytes_per_expert = SmallShape().bytes();
  absl::StatusOr<gpu_worker::StagePlan> plan =
      gpu_worker::PlanStaging(prepare, shape, "0.0", initial);
  ASSERT_TRUE(plan.ok()) << plan.status();
  const int loads = plan->CountOf(gpu_worker::SlotSource::Kind::kCheckpoint);
  ASSERT_GT(loads, 0);
  const int free_before = store->free_buffers();
  std::atomic<bool> cancelled{false};
  absl::StatusOr<gpu_worker::StageResult> result =
      engine.Execute(*plan, absl::Now() + absl::Seconds(10), cancelled);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->loaded, loads);
  EXPECT_EQ(result->bytes_received, 0);
  EXPECT_EQ(store->free_buffers(), free_before - loads);
  EXPECT_EQ(store->staging_headroom_bytes(), int64_t{store->free_buffers()} * SmallShape().bytes());
  CRAFT_ASSERT_OK(store->Flip("1.1"));
  const LocalLayout& local = plan->local;
  for (int l = 0; l < local.num_layers(); ++l) {
    for (int s = 0; s < local.layers[l].num_slots(); ++s) {
      CRAFT_ASSERT_OK_AND_ASSIGN(uint64_t sum, store->SlotChecksum("1.1", l, s));
      EXPECT_EQ(sum, HostExpectedChecksum(l, local.layers[l].experts[s], SmallShape().elements()))
          << "layer " << l << " slot " << s;
    }
  }
}

TEST(NcclStagingEngineAllGpusTest, ARandomLayoutChangeLeavesEverySlotHoldingItsExpert) {
  CRAFT_REQUIRE_GPUS(2);
  const int gpus = std::min(ProbeCuda().devices, 8);
  constexpr int kSlots = 4;
  planner::Layout before;
  before.num_experts = gpus * kSlots;
  before.cluster = {gpus, 1};
  for (int l = 0; l < 2; ++l) {
    planner::LayerPlacement layer;
    layer.slots_per_gpu.assign(gpus, kSlots);
    for (int e = 0; e < gpus * kSlots; ++e) layer.phy2log.push_back(e);
    before.layers.push_back(layer);
  }
  // Every expert lands in a random slot anywhere, and every GPU gets one
  // more slot holding a random expert (a replica).
  planner::Layout after = before;
  std::mt19937 rng(11);
  for (planner::LayerPlacement& layer : after.layers) {
    std::vector<int> experts = layer.phy2log;
    std::shuffle(experts.begin(), experts.end(), rng);
    layer.phy2log.clear();
    for (int g = 0; g < gpus; ++g) {
      layer.phy2log.insert(layer.phy2log.end(), experts.begin() + g * kSlots,
                           experts.begin() + (g + 1) * kSlots);
      layer.phy2log.push_back(static_cast<int>(rng() % before.num_experts));
    }
    layer.slots_per_gpu.assign(gpus, kSlots + 1);
  }
  ASSERT_TRUE(after.Validate().ok());
  std::map<int, std::string> endpoints;
  for (int g = 0; g < gpus; ++g) endpoints[g] = absl::StrCat("gpu", g);
  craft::v1::Prepare prepare = gpu_worker::testing::MakePrepare(before, "0.0", after, "1.1",
                                                                endpoints, SmallShape().bytes());
  ASSERT_GT(prepare.transfers_size(), gpus);
  absl::StatusOr<NcclId> id = NewNcclId();
  ASSERT_TRUE(id.ok()) << id.status();
  prepare.set_transfer_group_id(std::string(id->bytes.begin(), id->bytes.end()));

  std::vector<absl::Status> status(gpus);
  std::vector<std::thread> ranks;
  const std::atomic<bool> never{false};
  for (int g = 0; g < gpus; ++g) {
    ranks.emplace_back([&, g] {
      status[g] = [&]() -> absl::Status {
        gpu_worker::WorkerShape shape;
        shape.gpu = g;
        shape.cluster = {gpus, 1};
        shape.num_layers = 2;
        shape.num_experts = before.num_experts;
        shape.top_k = 2;
        shape.bytes_per_expert = SmallShape().bytes();
        CRAFT_ASSIGN_OR_RETURN(gpu_worker::StagePlan plan,
                               gpu_worker::PlanStaging(prepare, shape, "0.0", before));
        CRAFT_ASSIGN_OR_RETURN(
            auto store, DeviceExpertStore::Create(g, SmallShape(), 64 * SmallShape().bytes()));
        CRAFT_RETURN_IF_ERROR(store->LoadServing(LocalLayout::Of(before, "0.0", g)));
        NcclStagingEngine engine(store.get(), g, gpus, TransferOptions{});
        CRAFT_RETURN_IF_ERROR(
            engine.Execute(plan, absl::Now() + absl::Seconds(60), never).status());
        // Nothing serving changed before the flip.
        const LocalLayout serving = LocalLayout::Of(before, "0.0", g);
        for (int l = 0; l < 2; ++l) {
          for (int s = 0; s < kSlots; ++s) {
            CRAFT_ASSIGN_OR_RETURN(uint64_t sum, store->SlotChecksum("0.0", l, s));
            if (sum != store->ExpectedChecksum(l, serving.layers[l].experts[s])) {
              return absl::DataLossError(absl::StrCat("serving slot ", s, " changed"));
            }
          }
        }
        CRAFT_RETURN_IF_ERROR(store->Flip("1.1"));
        for (int l = 0; l < 2; ++l) {
          for (int s = 0; s < plan.local.layers[l].num_slots(); ++s) {
            CRAFT_ASSIGN_OR_RETURN(uint64_t sum, store->SlotChecksum("1.1", l, s));
            const int expert = plan.local.layers[l].experts[s];
            if (sum != HostExpectedChecksum(l, expert, SmallShape().elements())) {
              return absl::DataLossError(absl::StrCat("gpu ", g, " layer ", l, " slot ", s,
                                                      " does not hold expert ", expert));
            }
          }
        }
        return absl::OkStatus();
      }();
    });
  }
  for (std::thread& rank : ranks) rank.join();
  for (int g = 0; g < gpus; ++g) EXPECT_TRUE(status[g].ok()) << "gpu " << g << ": " << status[g];
}

}  // namespace
}  // namespace craft::gpu
