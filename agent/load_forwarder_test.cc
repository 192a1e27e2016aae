// The load forwarder against a fake planner channel and a FakeClock.
#include "agent/load_forwarder.h"

#include <vector>

#include "agent/test_util.h"
#include "agent/worker_registry.h"
#include "common/clock.h"
#include "craft/v1/agent.pb.h"
#include "gtest/gtest.h"

namespace craft::agent {
namespace {

using craft::v1::AgentMessage;
using testing::FakePlanner;
using testing::FakeWorker;
using testing::Hello;
using testing::kExperts;
using testing::kLayers;
using testing::Window;

class LoadForwarderTest : public ::testing::Test {
 protected:
  LoadForwarderTest() : loads_(Options(), &clock_, &workers_, &planner_) {
    craft::v1::ModelShape model;  // what the agent's flags say
    model.set_num_layers(kLayers);
    model.set_num_experts(kExperts);
    model.set_top_k(2);
    workers_.SetModel(model);
  }

  static LoadForwarder::Options Options() {
    LoadForwarder::Options options;
    options.window_flush_delay = absl::Milliseconds(100);
    options.max_buffered_loads = 2;
    return options;
  }

  void AttachBoth() {
    ASSERT_TRUE(workers_.Attach(Hello(0), &worker0_).ok());
    ASSERT_TRUE(workers_.Attach(Hello(1), &worker1_).ok());
  }

  const AgentMessage& LastSent() {
    EXPECT_FALSE(planner_.sent.empty());
    return planner_.sent.back();
  }

  FakeClock clock_;
  FakePlanner planner_;
  FakeWorker worker0_, worker1_;
  WorkerRegistry workers_{{0, 1}};
  LoadForwarder loads_;
};

TEST_F(LoadForwarderTest, WindowsOfOneIdAreBatched) {
  AttachBoth();
  loads_.OnPlannerConnected();
  ASSERT_TRUE(loads_.OnWindow(0, Window(0, 1)).ok());
  EXPECT_TRUE(planner_.sent.empty());
  ASSERT_TRUE(loads_.OnWindow(1, Window(1, 1)).ok());
  ASSERT_TRUE(LastSent().has_load());
  EXPECT_EQ(LastSent().load().gpus_size(), 2);
  EXPECT_EQ(LastSent().load().gpus(0).layout_version(), "0.0");

  // A lone window goes out after the flush delay.
  ASSERT_TRUE(loads_.OnWindow(0, Window(0, 2)).ok());
  clock_.Advance(absl::Milliseconds(99));
  loads_.Poll();
  EXPECT_EQ(planner_.sent.size(), 1u);
  clock_.Advance(absl::Milliseconds(1));
  loads_.Poll();
  ASSERT_EQ(planner_.sent.size(), 2u);
  EXPECT_EQ(LastSent().load().gpus_size(), 1);
  EXPECT_EQ(loads_.stats().loads_sent, 2);
}

TEST_F(LoadForwarderTest, LoadsAreBufferedWhileDisconnectedAndOldestDropped) {
  ASSERT_TRUE(workers_.Attach(Hello(0), &worker0_).ok());
  for (int id = 1; id <= 3; ++id) ASSERT_TRUE(loads_.OnWindow(0, Window(0, id)).ok());
  EXPECT_TRUE(planner_.sent.empty());
  EXPECT_EQ(loads_.stats().loads_dropped, 1);
  loads_.OnPlannerConnected();
  ASSERT_EQ(planner_.sent.size(), 2u);
  EXPECT_EQ(planner_.sent[0].load().gpus(0).window_id(), 2);
  EXPECT_EQ(planner_.sent[1].load().gpus(0).window_id(), 3);
}

TEST_F(LoadForwarderTest, BadWindowsAreDroppedOrEndTheStream) {
  AttachBoth();
  loads_.OnPlannerConnected();
  EXPECT_EQ(loads_.OnWindow(0, Window(1, 1)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(loads_.OnWindow(0, Window(0, 1, /*layers=*/3)).ok());
  craft::v1::GpuWindow negative = Window(0, 2);
  negative.mutable_layers(0)->set_counts(0, -5);
  EXPECT_TRUE(loads_.OnWindow(0, negative).ok());
  EXPECT_TRUE(loads_.OnWindow(0, Window(0, 3)).ok());
  EXPECT_TRUE(loads_.OnWindow(0, Window(0, 3)).ok());  // repeated id
  EXPECT_EQ(loads_.stats().windows_rejected, 3);
}

TEST_F(LoadForwarderTest, RejectedWindowsAreCountedByReasonAndAcceptedOnesByGpu) {
  AttachBoth();
  loads_.OnPlannerConnected();
  ASSERT_TRUE(loads_.OnWindow(0, Window(0, 5)).ok());
  ASSERT_TRUE(loads_.OnWindow(0, Window(0, 4)).ok());                // out of order
  ASSERT_TRUE(loads_.OnWindow(1, Window(1, 5, /*layers=*/1)).ok());  // malformed
  const LoadForwarder::Stats& stats = loads_.stats();
  EXPECT_EQ(stats.windows_received, 3);
  EXPECT_EQ(stats.windows_rejected, 2);
  EXPECT_EQ(stats.windows_out_of_order, 1);
  EXPECT_EQ(stats.windows_malformed, 1);
  EXPECT_EQ(stats.gpu_assignments.at(0), 10 + 11);  // Window's counts: 10 + layer
  EXPECT_EQ(stats.gpu_assignments.count(1), 0u);
}

TEST_F(LoadForwarderTest, WindowsOfADetachedWorkerAreIgnored) {
  AttachBoth();
  loads_.OnPlannerConnected();
  ASSERT_TRUE(workers_.Detach(1, &worker1_));
  EXPECT_TRUE(loads_.OnWindow(1, Window(1, 1)).ok());
  EXPECT_EQ(loads_.stats().windows_rejected, 0);
  EXPECT_TRUE(loads_.stats().gpu_assignments.empty());
  EXPECT_TRUE(planner_.sent.empty());
}

TEST_F(LoadForwarderTest, LoadsCarryTheStagingHeadroomOfAttachedGpus) {
  craft::v1::WorkerHello roomy = Hello(0);
  roomy.set_staging_headroom_bytes(4096);
  ASSERT_TRUE(workers_.Attach(roomy, &worker0_).ok());
  ASSERT_TRUE(workers_.Attach(Hello(1), &worker1_).ok());  // says none
  loads_.OnPlannerConnected();
  ASSERT_TRUE(loads_.OnWindow(0, Window(0, 1)).ok());
  ASSERT_TRUE(loads_.OnWindow(1, Window(1, 1)).ok());
  ASSERT_EQ(LastSent().load().headroom_size(), 1);
  EXPECT_EQ(LastSent().load().headroom(0).gpu(), 0);
  EXPECT_EQ(LastSent().load().headroom(0).bytes(), 4096);
  // A worker that left has no headroom to offer.
  ASSERT_TRUE(workers_.Detach(0, &worker0_));
  ASSERT_TRUE(loads_.OnWindow(1, Window(1, 2)).ok());
  EXPECT_EQ(LastSent().load().headroom_size(), 0);
}

}  // namespace
}  // namespace craft::agent
