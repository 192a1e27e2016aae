#include "agent/test_util.h"

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "planner/initial_layout.h"
#include "planner/layout.h"
#include "wire/layout_proto.h"

namespace craft::agent::testing {

craft::v1::WorkerHello Hello(int gpu, const std::string& version) {
  craft::v1::WorkerHello hello;
  hello.set_gpu(gpu);
  hello.set_memory_bytes(1000 + gpu);
  hello.set_transfer_endpoint("127.0.0.1:" + std::to_string(9000 + gpu));
  hello.mutable_model()->set_num_layers(kLayers);
  hello.mutable_model()->set_num_experts(kExperts);
  hello.mutable_model()->set_top_k(2);
  hello.set_committed_version(version);
  return hello;
}

craft::v1::PlannerMessage PrepareMessage(int64_t epoch, const std::string& nonce,
                                         const std::string& version, int64_t timeout_ms,
                                         int num_gpus, int num_experts) {
  absl::StatusOr<planner::Layout> layout =
      planner::ContiguousLayout(kLayers, num_experts, {num_gpus, 1});
  EXPECT_TRUE(layout.ok()) << layout.status();
  craft::v1::PlannerMessage message;
  message.set_epoch(epoch);
  message.set_nonce(nonce);
  *message.mutable_prepare()->mutable_layout() = LayoutToProto(*layout, version);
  message.mutable_prepare()->set_timeout_ms(timeout_ms);
  return message;
}

craft::v1::WorkerStatus Status(const std::string& version, craft::v1::WorkerState state,
                               const std::string& error) {
  craft::v1::WorkerStatus status;
  status.set_version(version);
  status.set_state(state);
  status.set_error(error);
  return status;
}

craft::v1::GpuWindow Window(int gpu, int64_t id, int layers) {
  craft::v1::GpuWindow window;
  window.set_gpu(gpu);
  window.set_window_id(id);
  window.set_layout_version("0.0");
  for (int l = 0; l < layers; ++l) window.add_layers()->add_counts(10 + l);
  return window;
}

}  // namespace craft::agent::testing
