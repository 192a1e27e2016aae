#include "server/internal/test_support.h"

#include "common/check.h"
#include "wire/layout_delta.h"
#include "wire/version.h"

namespace craft::server::testing {

PlannerConfig SmallConfig() {
  PlannerConfig config;
  config.listen_address = "127.0.0.1:0";
  config.model = {2, 4, 2, 1000};
  config.cluster = {4, 2};
  config.window_horizon = 8;
  config.max_clock_skew = absl::ZeroDuration();  // test windows are not timed
  config.replan_interval = absl::Seconds(1);
  config.plan.algorithm = planner::Algorithm::kCraft;
  config.plan.budget = 1;
  config.plan.cluster = config.cluster;
  config.plan.memory.bytes_per_expert = 1000;
  config.gain_threshold = 0.05;
  config.horizon_s = 600;
  config.transfer_gbps = 100;
  config.apply_timeout = absl::Seconds(5);
  return config;
}

craft::v1::AgentHello Hello(const std::string& node, const std::vector<int>& ranks,
                            const std::string& committed_version) {
  const PlannerConfig config = SmallConfig();
  craft::v1::AgentHello hello;
  hello.set_node(node);
  for (int rank : ranks) {
    craft::v1::GpuInfo* gpu = hello.add_gpus();
    gpu->set_rank(rank);
    gpu->set_memory_bytes(int64_t{80} << 30);
    gpu->set_transfer_endpoint("127.0.0.1:" + std::to_string(20000 + rank));
  }
  hello.mutable_model()->set_num_layers(config.model.num_layers);
  hello.mutable_model()->set_num_experts(config.model.num_experts);
  hello.mutable_model()->set_top_k(config.model.top_k);
  hello.mutable_model()->set_bytes_per_expert(config.model.bytes_per_expert);
  hello.set_committed_version(committed_version);
  return hello;
}

craft::v1::GpuWindow Window(const planner::Layout& layout, const std::string& version, int gpu,
                            int64_t window_id,
                            const std::vector<std::vector<int64_t>>& expert_loads) {
  craft::v1::GpuWindow window;
  window.set_gpu(gpu);
  window.set_layout_version(version);
  window.set_window_id(window_id);
  window.set_duration_ms(1000);
  for (int l = 0; l < layout.num_layers(); ++l) {
    const planner::LayerPlacement& layer = layout.layers[l];
    const std::vector<int> replicas = layer.LogicalCounts(layout.num_experts);
    craft::v1::SlotCounts* counts = window.add_layers();
    const int offset = layer.SlotOffset(gpu);
    for (int s = 0; s < layer.slots_per_gpu[gpu]; ++s) {
      const int expert = layer.phy2log[offset + s];
      counts->add_counts(expert_loads[l][expert] / replicas[expert]);
    }
  }
  return window;
}

PlannerState SamplePlannerState(int64_t epoch, int64_t seq) {
  PlannerState state;
  state.epoch = epoch;
  state.seq = seq;
  state.committed.set_version(Version(epoch, seq).ToString());
  state.committed.set_num_experts(4);
  state.committed.set_num_gpus(2);
  state.committed.set_num_nodes(1);
  craft::v1::LayerLayout* layer = state.committed.add_layers();
  layer->add_slots_per_gpu(2);
  layer->add_slots_per_gpu(2);
  for (int e : {0, 1, 2, 3}) layer->add_phy2log(e);
  return state;
}

planner::Layout ReplicatedLayout() {
  planner::Layout layout;
  layout.num_experts = 4;
  layout.cluster = {4, 2};
  layout.layers = {{{2, 1, 1, 1}, {0, 1, 0, 2, 3}}, {{1, 1, 2, 1}, {0, 1, 2, 1, 3}}};
  return layout;
}

std::vector<std::vector<int64_t>> SkewedLoads() {
  return {{4000, 100, 100, 100}, {100, 4000, 100, 100}};
}

void FakeConnection::Send(const craft::v1::PlannerMessage& message) {
  absl::MutexLock lock(&mu_);
  // Welcomes only carry the epoch and the model; tests look at the apply's
  // messages.
  if (message.has_welcome()) {
    ++welcomes_;
    last_welcome_ = message.welcome();
    return;
  }
  sent_.push_back(message);
}

int FakeConnection::welcomes() const {
  absl::MutexLock lock(&mu_);
  return welcomes_;
}

craft::v1::Welcome FakeConnection::last_welcome() const {
  absl::MutexLock lock(&mu_);
  return last_welcome_;
}

void FakeConnection::Close(const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  if (!closed_.has_value()) closed_ = status;
}

std::vector<craft::v1::PlannerMessage> FakeConnection::sent() const {
  absl::MutexLock lock(&mu_);
  return sent_;
}

craft::v1::PlannerMessage FakeConnection::last() const {
  absl::MutexLock lock(&mu_);
  CRAFT_CHECK(!sent_.empty()) << "FakeConnection::last() with nothing sent";
  return sent_.back();
}

std::optional<absl::Status> FakeConnection::closed() const {
  absl::MutexLock lock(&mu_);
  return closed_;
}

void FakeConnection::clear() {
  absl::MutexLock lock(&mu_);
  sent_.clear();
}

craft::v1::Ack AckOf(const craft::v1::PlannerMessage& message, craft::v1::AckPhase phase) {
  craft::v1::Ack ack;
  ack.set_nonce(message.nonce());
  ack.set_phase(phase);
  if (message.has_prepare()) ack.set_version(PrepareVersion(message.prepare()));
  if (message.has_commit()) ack.set_version(message.commit().version());
  if (message.has_abort()) ack.set_version(message.abort().version());
  return ack;
}

craft::v1::Nack NackOf(const craft::v1::PlannerMessage& message, craft::v1::ErrorCode code,
                       const std::string& last_good_version) {
  craft::v1::Nack nack;
  nack.set_nonce(message.nonce());
  nack.set_version(AckOf(message, craft::v1::ACK_PHASE_UNSPECIFIED).version());
  nack.set_last_good_version(last_good_version);
  nack.mutable_error()->set_code(code);
  nack.mutable_error()->set_message("injected");
  return nack;
}

}  // namespace craft::server::testing
