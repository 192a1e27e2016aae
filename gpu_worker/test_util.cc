#include "gpu_worker/test_util.h"

#include "common/check.h"
#include "planner/initial_layout.h"
#include "planner/transfer/transfer_plan.h"
#include "wire/layout_proto.h"

namespace craft::gpu_worker::testing {
namespace {

template <typename T>
T OrDie(absl::StatusOr<T> value) {
  CRAFT_CHECK(value.ok()) << "test setup failed: " << value.status();
  return *std::move(value);
}

}  // namespace

planner::Layout InitialTwoGpuLayout() {
  return OrDie(planner::ContiguousLayout(/*num_layers=*/2, /*num_experts=*/4, {2, 1}));
}

planner::Layout NextTwoGpuLayout() {
  planner::Layout layout = InitialTwoGpuLayout();
  layout.layers[0] = {{3, 3}, {0, 3, 2, 2, 1, 0}};
  layout.layers[1] = {{2, 2}, {1, 0, 3, 2}};
  return layout;
}

craft::v1::Prepare MakePrepare(const planner::Layout& from, const std::string& from_version,
                               const planner::Layout& to, const std::string& version,
                               const std::map<int, std::string>& endpoints,
                               int64_t bytes_per_expert) {
  const planner::TransferPlan plan = OrDie(planner::BuildTransferPlan(from, to, bytes_per_expert));
  craft::v1::Prepare prepare;
  *prepare.mutable_layout() = LayoutToProto(to, version);
  for (const planner::Transfer& t : plan.transfers) {
    craft::v1::Transfer* wire = prepare.add_transfers();
    wire->set_layer(t.layer);
    wire->set_expert(t.expert);
    wire->set_dst_gpu(t.dst_gpu);
    wire->set_dst_slot(t.dst_slot);
    wire->set_src_gpu(t.src_gpu);
    wire->set_src_slot(t.src_slot);
    wire->set_src_version(from_version);
  }
  for (const auto& [gpu, endpoint] : endpoints) (*prepare.mutable_gpu_endpoints())[gpu] = endpoint;
  prepare.set_bytes_per_expert(bytes_per_expert);
  prepare.set_timeout_ms(10000);
  return prepare;
}

TrafficGenerator TwoGpuTraffic(int tokens_per_window, int top_k) {
  TrafficOptions options;
  options.tokens_per_window = tokens_per_window;
  options.top_k = top_k;
  options.seed = 5;
  return OrDie(TrafficGenerator::Create(
      options, OrDie(Popularity::Synthetic(2, 4, top_k, /*skew=*/2, /*seed=*/5))));
}

}  // namespace craft::gpu_worker::testing
