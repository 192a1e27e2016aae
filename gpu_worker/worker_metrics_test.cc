#include "gpu_worker/worker_metrics.h"

#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/promtool.h"
#include "gmock/gmock.h"
#include "gpu_worker/backend_factory.h"
#include "gpu_worker/traffic.h"
#include "gtest/gtest.h"

namespace craft::gpu_worker {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// GPU 1 of 2 (one node), 2 layers x 4 experts, top-2, 512-byte experts, no
// agent, 20 ms windows.
std::unique_ptr<Worker> MakeWorker() {
  WorkerOptions options;
  options.shape.gpu = 1;
  options.shape.cluster = {2, 1};
  options.shape.num_layers = 2;
  options.shape.num_experts = 4;
  options.shape.top_k = 2;
  options.shape.bytes_per_expert = 512;
  options.window = absl::Milliseconds(20);
  options.security.insecure = true;
  BackendOptions backend_options;
  backend_options.bytes_per_expert = 512;
  backend_options.capacity_bytes = 1 << 20;
  auto backend = MakeBackend("cpu", backend_options);
  EXPECT_TRUE(backend.ok()) << backend.status();
  TrafficOptions traffic_options;
  traffic_options.tokens_per_window = 64;
  traffic_options.top_k = 2;
  auto traffic = TrafficGenerator::Create(traffic_options, *Popularity::Synthetic(2, 4, 2, 2, 5));
  EXPECT_TRUE(traffic.ok()) << traffic.status();
  auto worker =
      Worker::Create(std::move(options), *std::move(backend), *std::move(traffic), Clock::Real());
  EXPECT_TRUE(worker.ok()) << worker.status();
  return *std::move(worker);
}

TEST(WorkerMetricsTest, ExportsTheWorkerAndPassesPromtool) {
  std::unique_ptr<Worker> worker = MakeWorker();
  auto metrics = std::make_shared<WorkerMetrics>(1, 512, 1 << 20);
  metrics->Watch(worker.get());
  std::string text = metrics->Serialize();
  EXPECT_THAT(text, HasSubstr("craft_worker_expert_slots{gpu=\"1\"} 4"));  // 2 experts x 2 layers
  EXPECT_THAT(text, HasSubstr("craft_worker_expert_memory_bytes{bank=\"serving\",gpu=\"1\"} 2048"));
  EXPECT_THAT(text, HasSubstr("craft_worker_expert_memory_capacity_bytes{gpu=\"1\"} 1048576"));
  EXPECT_THAT(text, HasSubstr("craft_worker_serving_layout_seq 0"));
  EXPECT_THAT(text, HasSubstr("craft_worker_agent_attached 0"));

  // A prepare without a version fails; windows are counted while it runs.
  ASSERT_TRUE(worker->Start().ok());
  craft::v1::WorkerCommand bad;
  bad.mutable_prepare();
  worker->HandleCommand(bad);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline &&
         (worker->stats().windows_reported < 2 || worker->stats().prepares_failed < 1)) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  text = metrics->Serialize();
  worker->Shutdown();
  metrics->Watch(nullptr);
  EXPECT_THAT(text, HasSubstr("craft_worker_prepares_total{result=\"failed\"} 1"));
  EXPECT_THAT(text, Not(HasSubstr("craft_worker_load_windows_reported_total 0\n")));
  EXPECT_THAT(text, Not(HasSubstr("craft_worker_expert_tokens_total{gpu=\"1\"} 0\n")));
  const absl::Status lint = craft::testing::PromtoolCheckMetrics(text);
  if (absl::IsNotFound(lint)) GTEST_SKIP() << lint.message();
  EXPECT_TRUE(lint.ok()) << lint << "\n" << text;
}

}  // namespace
}  // namespace craft::gpu_worker
