#include "server/prepare_fanout.h"

#include <set>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "planner/initial_layout.h"
#include "wire/layout_delta.h"

namespace craft::server {
namespace {

craft::v1::Transfer MakeTransfer(int layer, int expert, int src_gpu, int dst_gpu) {
  craft::v1::Transfer t;
  t.set_layer(layer);
  t.set_expert(expert);
  t.set_src_gpu(src_gpu);
  t.set_dst_gpu(dst_gpu);
  t.set_src_version("0.0");
  return t;
}

class PrepareFanoutTest : public ::testing::Test {
 protected:
  // 4 nodes x 4 GPUs, 2 layers x 16 experts.
  PrepareFanoutTest()
      : cluster_{16, 4}, base_(*planner::ContiguousLayout(2, 16, cluster_)), target_(base_) {
    // Expert 3 (GPU 3, node 0) gets a replica on GPU 9 (node 2) in layer 1.
    planner::LayerPlacement& layer = target_.layers[1];
    layer.phy2log.insert(layer.phy2log.begin() + layer.SlotOffset(9) + 1, 3);
    ++layer.slots_per_gpu[9];
  }

  PrepareFanout::Inputs Inputs() const {
    PrepareFanout::Inputs inputs;
    inputs.base = &base_;
    inputs.base_version = "0.0";
    inputs.target = &target_;
    inputs.version = "1.1";
    inputs.cluster = cluster_;
    inputs.transfers = {MakeTransfer(1, 3, 3, 9)};
    for (int gpu = 0; gpu < cluster_.num_gpus; ++gpu) {
      inputs.endpoints.push_back(absl::StrCat("gpu", gpu, ":1"));
      inputs.node_names.push_back(absl::StrCat("node", cluster_.NodeOf(gpu)));
    }
    inputs.common.set_bytes_per_expert(100);
    inputs.common.set_timeout_ms(5000);
    return inputs;
  }

  const planner::ClusterShape cluster_;
  const planner::Layout base_;
  planner::Layout target_;
};

TEST_F(PrepareFanoutTest, EachNodeGetsOnlyItsTransfersAndTheirPeers) {
  absl::StatusOr<PrepareFanout> fanout = PrepareFanout::Create(Inputs());
  ASSERT_TRUE(fanout.ok()) << fanout.status();
  for (int node : {0, 2}) {  // the source's node and the destination's
    const craft::v1::Prepare prepare = fanout->ForNode(node, /*full_layout=*/false);
    ASSERT_EQ(prepare.transfers_size(), 1) << node;
    EXPECT_EQ(prepare.transfers(0).dst_gpu(), 9);
    EXPECT_EQ(prepare.gpu_endpoints().size(), 2u);
    EXPECT_EQ(prepare.gpu_endpoints().at(3), "gpu3:1");
    EXPECT_EQ(prepare.gpu_endpoints().at(9), "gpu9:1");
    EXPECT_EQ(prepare.gpu_nodes().at(3), "node0");
    EXPECT_EQ(prepare.gpu_nodes().at(9), "node2");
    EXPECT_EQ(prepare.bytes_per_expert(), 100);
    EXPECT_EQ(prepare.timeout_ms(), 5000);
  }
  // Nodes 1 and 3 move nothing: the layout and the common fields only.
  const craft::v1::Prepare idle = fanout->ForNode(1, /*full_layout=*/false);
  EXPECT_EQ(idle.transfers_size(), 0);
  EXPECT_TRUE(idle.gpu_endpoints().empty());
  EXPECT_TRUE(idle.gpu_nodes().empty());
  EXPECT_EQ(idle.bytes_per_expert(), 100);
}

TEST_F(PrepareFanoutTest, SendsTheDeltaUnlessTheNodeNeedsTheFullLayout) {
  absl::StatusOr<PrepareFanout> fanout = PrepareFanout::Create(Inputs());
  ASSERT_TRUE(fanout.ok());
  ASSERT_TRUE(fanout->sends_delta());
  const craft::v1::Prepare with_delta = fanout->ForNode(1, /*full_layout=*/false);
  ASSERT_TRUE(with_delta.has_layout_delta());
  EXPECT_FALSE(with_delta.has_layout());
  EXPECT_EQ(with_delta.layout_delta().base_version(), "0.0");
  EXPECT_EQ(with_delta.layout_delta().changed_size(), 1);  // GPU 9 in layer 1
  EXPECT_EQ(*ApplyLayoutDelta(base_, with_delta.layout_delta()), target_);
  EXPECT_EQ(PrepareVersion(with_delta), "1.1");

  const craft::v1::Prepare full = fanout->ForNode(1, /*full_layout=*/true);
  EXPECT_FALSE(full.has_layout_delta());
  EXPECT_EQ(full.layout().version(), "1.1");
  EXPECT_EQ(full.layout().layers_size(), 2);
  EXPECT_LT(fanout->delta_bytes(), fanout->full_layout_bytes());
}

TEST_F(PrepareFanoutTest, SendsTheFullLayoutWhenADeltaWouldNotBeSmaller) {
  // Every expert moves: every list changes, and the delta would carry more
  // than the layout itself.
  for (planner::LayerPlacement& layer : target_.layers) {
    for (int& e : layer.phy2log) e = (e + 1) % target_.num_experts;
  }
  absl::StatusOr<PrepareFanout> fanout = PrepareFanout::Create(Inputs());
  ASSERT_TRUE(fanout.ok());
  EXPECT_FALSE(fanout->sends_delta());
  EXPECT_TRUE(fanout->ForNode(0, /*full_layout=*/false).has_layout());
}

TEST_F(PrepareFanoutTest, RefusesInputsOfTheWrongShape) {
  PrepareFanout::Inputs inputs = Inputs();
  inputs.endpoints.pop_back();
  EXPECT_EQ(PrepareFanout::Create(std::move(inputs)).status().code(),
            absl::StatusCode::kInvalidArgument);
  planner::Layout other = *planner::ContiguousLayout(3, 16, cluster_);
  inputs = Inputs();
  inputs.target = &other;
  EXPECT_EQ(PrepareFanout::Create(std::move(inputs)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace craft::server
