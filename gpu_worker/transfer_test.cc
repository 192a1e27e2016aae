// Experts moving between two CPU backends through real ExpertTransfer servers
// on 127.0.0.1:0.
#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "craft/v1/worker.grpc.pb.h"
#include "gmock/gmock.h"
#include "gpu_worker/cpu_backend.h"
#include "gpu_worker/expert_weights.h"
#include "gpu_worker/local_layout.h"
#include "gpu_worker/stager.h"
#include "gpu_worker/test_util.h"
#include "gpu_worker/transfer_client.h"
#include "gpu_worker/transfer_service.h"
#include "gpu_worker/worker_shape.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace craft::gpu_worker {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kBytes = 5000;  // not a multiple of the chunk size
constexpr int64_t kChunk = 1024;

// One simulated GPU: a store serving the initial layout and its server.
struct Gpu {
  Gpu(int gpu, bool corrupt) : store(kBytes, 0), service(&store, {kChunk, corrupt}) {
    shape.gpu = gpu;
    shape.cluster = {2, 1};
    shape.num_layers = 2;
    shape.num_experts = 4;
    shape.top_k = 2;
    shape.bytes_per_expert = kBytes;
    EXPECT_TRUE(
        store.LoadServing(LocalLayout::Of(testing::InitialTwoGpuLayout(), "0.0", gpu)).ok());
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service);
    server = builder.BuildAndStart();
    endpoint = "127.0.0.1:" + std::to_string(port);
  }
  ~Gpu() { server->Shutdown(); }

  WorkerShape shape;
  CpuExpertStore store;
  ExpertTransferService service;
  int port = 0;
  std::string endpoint;
  std::unique_ptr<grpc::Server> server;
};

class TransferTest : public ::testing::Test {
 protected:
  craft::v1::Prepare NextPrepare() const {
    return testing::MakePrepare(testing::InitialTwoGpuLayout(), "0.0", testing::NextTwoGpuLayout(),
                                "1.1", {{0, gpu0_.endpoint}, {1, gpu1_.endpoint}}, kBytes);
  }

  absl::StatusOr<StageResult> Stage(Gpu& gpu, const craft::v1::Prepare& prepare) {
    absl::StatusOr<StagePlan> plan =
        PlanStaging(prepare, gpu.shape, "0.0", testing::InitialTwoGpuLayout());
    if (!plan.ok()) return plan.status();
    Stager stager(&gpu.store, &fetcher_, Clock::Real(), {absl::Seconds(5)});
    return stager.Execute(*plan, absl::Now() + absl::Seconds(10), cancelled_);
  }

  // Fetches directly and returns the status code gRPC reports.
  grpc::StatusCode FetchCode(const Gpu& from, const std::string& version, int layer, int slot,
                             int expert) {
    auto stub = craft::v1::ExpertTransfer::NewStub(
        grpc::CreateChannel(from.endpoint, grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    craft::v1::FetchExpertRequest request;
    request.set_layout_version(version);
    request.set_layer(layer);
    request.set_slot(slot);
    request.set_expert(expert);
    auto reader = stub->FetchExpert(&context, request);
    craft::v1::ExpertChunk chunk;
    int chunks = 0;
    while (reader->Read(&chunk)) ++chunks;
    const grpc::Status status = reader->Finish();
    if (!status.ok()) {
      EXPECT_EQ(chunks, 0) << "a refusal streams nothing";
    }
    return status.error_code();
  }

  Gpu gpu0_{0, false};
  Gpu gpu1_{1, false};
  GrpcExpertFetcher fetcher_;
  std::atomic<bool> cancelled_{false};
};

TEST_F(TransferTest, MovesExpertsBetweenTwoBackends) {
  const craft::v1::Prepare prepare = NextPrepare();
  for (Gpu* gpu : {&gpu0_, &gpu1_}) {
    const absl::StatusOr<StageResult> result = Stage(*gpu, prepare);
    ASSERT_TRUE(result.ok()) << "gpu " << gpu->shape.gpu << ": " << result.status();
    EXPECT_EQ(result->fetched, 2);
    EXPECT_EQ(result->bytes_received, 2 * kBytes);
  }
  const planner::Layout next = testing::NextTwoGpuLayout();
  for (Gpu* gpu : {&gpu0_, &gpu1_}) {
    ASSERT_TRUE(gpu->store.Flip("1.1").ok());
    const LocalLayout mine = LocalLayout::Of(next, "1.1", gpu->shape.gpu);
    for (int l = 0; l < 2; ++l) {
      for (int s = 0; s < mine.layers[l].num_slots(); ++s) {
        EXPECT_EQ(*gpu->store.SlotChecksum("1.1", l, s),
                  ExpectedChecksum(l, mine.layers[l].experts[s], kBytes));
      }
    }
  }
  // The new version is now what peers may fetch; the old one is gone.
  EXPECT_EQ(FetchCode(gpu1_, "1.1", 0, 4, 1), grpc::StatusCode::OK);
  EXPECT_EQ(FetchCode(gpu1_, "0.0", 0, 3, 2), grpc::StatusCode::NOT_FOUND);
}

TEST_F(TransferTest, StreamsChunksWithTheChecksumOnTheLast) {
  auto stub = craft::v1::ExpertTransfer::NewStub(
      grpc::CreateChannel(gpu1_.endpoint, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  craft::v1::FetchExpertRequest request;
  request.set_layout_version("0.0");
  request.set_layer(1);
  request.set_slot(3);
  request.set_expert(3);
  auto reader = stub->FetchExpert(&context, request);
  std::vector<craft::v1::ExpertChunk> chunks;
  craft::v1::ExpertChunk chunk;
  while (reader->Read(&chunk)) chunks.push_back(chunk);
  ASSERT_TRUE(reader->Finish().ok());
  ASSERT_EQ(chunks.size(), 5u);  // 4 x 1024 + 904
  std::string bytes;
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_EQ(chunks[i].last(), i + 1 == chunks.size());
    bytes += chunks[i].data();
  }
  EXPECT_EQ(bytes, ExpertWeights(1, 3, kBytes));
  EXPECT_EQ(chunks.back().checksum(), ExpectedChecksum(1, 3, kBytes));
}

TEST_F(TransferTest, RefusesOtherVersionsSlotsAndExperts) {
  EXPECT_EQ(FetchCode(gpu1_, "0.0", 0, 2, 2), grpc::StatusCode::OK);
  EXPECT_EQ(FetchCode(gpu1_, "1.1", 0, 2, 2), grpc::StatusCode::NOT_FOUND);  // not served
  EXPECT_EQ(FetchCode(gpu1_, "0.0", 0, 1, 1), grpc::StatusCode::NOT_FOUND);  // GPU 0's slot
  EXPECT_EQ(FetchCode(gpu1_, "0.0", 0, 99, 1), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(FetchCode(gpu1_, "0.0", 7, 2, 2), grpc::StatusCode::NOT_FOUND);  // no layer 7
  EXPECT_EQ(FetchCode(gpu1_, "0.0", 0, 2, 3), grpc::StatusCode::FAILED_PRECONDITION);

  // Staged versions are not served either.
  LocalLayout staged = LocalLayout::Of(testing::NextTwoGpuLayout(), "1.1", 1);
  ASSERT_TRUE(gpu1_.store.BeginStaging(staged).ok());
  EXPECT_EQ(FetchCode(gpu1_, "1.1", 0, 3, 2), grpc::StatusCode::NOT_FOUND);
}

TEST_F(TransferTest, FetchFailsTheStageWithThePeersRefusal) {
  craft::v1::Prepare prepare = NextPrepare();
  for (auto& t : *prepare.mutable_transfers()) {
    if (t.src_gpu() == 0) t.set_src_version("0.7");  // GPU 0 does not serve 0.7
  }
  const absl::StatusOr<StageResult> result = Stage(gpu1_, prepare);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("fetch from gpu 0"));
  EXPECT_EQ(gpu1_.store.staging_version(), "");
}

TEST_F(TransferTest, CorruptedSourceFailsTheChecksum) {
  Gpu corrupt0(0, /*corrupt=*/true);
  craft::v1::Prepare prepare = NextPrepare();
  (*prepare.mutable_gpu_endpoints())[0] = corrupt0.endpoint;
  const absl::StatusOr<StageResult> result = Stage(gpu1_, prepare);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("checksum mismatch"));
}

TEST_F(TransferTest, UnreachablePeerFailsWithinTheDeadline) {
  craft::v1::Prepare prepare = NextPrepare();
  const int port = gpu0_.port;
  gpu0_.server->Shutdown();
  (*prepare.mutable_gpu_endpoints())[0] = "127.0.0.1:" + std::to_string(port);
  const absl::Time start = absl::Now();
  const absl::StatusOr<StageResult> result = Stage(gpu1_, prepare);
  EXPECT_FALSE(result.ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(8));
}

}  // namespace
}  // namespace craft::gpu_worker
