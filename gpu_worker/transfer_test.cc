// Experts moving between two CPU backends through real ExpertTransfer servers
// on 127.0.0.1:0, over mutual TLS: GPU 0 is on node0, GPU 1 on node1, and a
// port serves only what a Prepare it received names, to that transfer's
// destination node.
#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "common/clock.h"
#include "common/test_certs.h"
#include "common/transport_security.h"
#include "craft/v1/worker.grpc.pb.h"
#include "gmock/gmock.h"
#include "gpu_worker/cpu_backend.h"
#include "gpu_worker/expert_weights.h"
#include "gpu_worker/fault_injection.h"
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

// A CA and certificates for node0, node1 and a stranger, made once.
const craft::testing::TestCerts& Certs() {
  static const craft::testing::TestCerts* certs = [] {
    const char* tmp = std::getenv("TEST_TMPDIR");
    absl::StatusOr<craft::testing::TestCerts> made =
        craft::testing::MakeTestCerts(std::string(tmp ? tmp : "/tmp") + "/transfer_certs",
                                      {"node0:127.0.0.1", "node1:127.0.0.1", "stranger"});
    EXPECT_TRUE(made.ok()) << made.status();
    return new craft::testing::TestCerts(*made);
  }();
  return *certs;
}

std::string NodeOf(int gpu) { return "node" + std::to_string(gpu); }

// One simulated GPU: a store serving the initial layout, its permits, its
// server (serving corrupted experts when `corrupt`) and its fetcher, with its
// node's certificate.
struct Gpu {
  Gpu(int gpu, bool corrupt)
      : security(Certs().For(NodeOf(gpu))),
        store(kBytes, 0),
        corrupting(&store),
        permits(gpu, /*check_identity=*/true),
        service(corrupt ? static_cast<const ExpertStore*>(&corrupting) : &store, &permits,
                {kChunk}),
        fetcher(security) {
    shape.gpu = gpu;
    shape.cluster = {2, 1};
    shape.num_layers = 2;
    shape.num_experts = 4;
    shape.top_k = 2;
    shape.bytes_per_expert = kBytes;
    EXPECT_TRUE(
        store.LoadServing(LocalLayout::Of(testing::InitialTwoGpuLayout(), "0.0", gpu)).ok());
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", MakeServerCredentials(security), &port);
    builder.RegisterService(&service);
    server = builder.BuildAndStart();
    endpoint = "127.0.0.1:" + std::to_string(port);
  }
  ~Gpu() { server->Shutdown(); }

  TransportSecurity security;
  WorkerShape shape;
  CpuExpertStore store;
  CorruptingExpertStore corrupting;
  TransferPermits permits;
  ExpertTransferService service;
  GrpcExpertFetcher fetcher;
  int port = 0;
  std::string endpoint;
  std::unique_ptr<grpc::Server> server;
};

class TransferTest : public ::testing::Test {
 protected:
  craft::v1::Prepare NextPrepare() const {
    craft::v1::Prepare prepare =
        testing::MakePrepare(testing::InitialTwoGpuLayout(), "0.0", testing::NextTwoGpuLayout(),
                             "1.1", {{0, gpu0_.endpoint}, {1, gpu1_.endpoint}}, kBytes);
    (*prepare.mutable_gpu_nodes())[0] = NodeOf(0);
    (*prepare.mutable_gpu_nodes())[1] = NodeOf(1);
    return prepare;
  }

  // Both GPUs receive `prepare` (its permits), then `gpu` stages it.
  absl::StatusOr<StageResult> Stage(Gpu& gpu, const craft::v1::Prepare& prepare,
                                    Gpu* source = nullptr) {
    for (Gpu* g : {&gpu0_, &gpu1_, source}) {
      if (g != nullptr) g->permits.Grant(prepare);
    }
    absl::StatusOr<StagePlan> plan =
        PlanStaging(prepare, gpu.shape, "0.0", testing::InitialTwoGpuLayout());
    if (!plan.ok()) return plan.status();
    Stager stager(&gpu.store, &gpu.fetcher, Clock::Real(), {absl::Seconds(5)});
    return stager.Execute(*plan, absl::Now() + absl::Seconds(10), cancelled_);
  }

  // `from` (GPU 1 in these tests) receives a Prepare "p<version>" that moves
  // (version, layer, slot, expert) to GPU `dst_gpu` on node `dst_node`.
  static void Permit(Gpu& from, const std::string& version, int layer, int slot, int expert,
                     int dst_gpu = 0, const std::string& dst_node = NodeOf(0)) {
    PermitAll(from, "p" + version, {{version, layer, slot, expert}}, dst_gpu, dst_node);
  }
  // One Prepare `name` naming every (version, layer, slot, expert) of `moves`.
  static void PermitAll(Gpu& from, const std::string& name,
                        const std::vector<std::tuple<std::string, int, int, int>>& moves,
                        int dst_gpu = 0, const std::string& dst_node = NodeOf(0)) {
    craft::v1::Prepare prepare;
    prepare.mutable_layout()->set_version(name);
    for (const auto& [version, layer, slot, expert] : moves) {
      craft::v1::Transfer* t = prepare.add_transfers();
      t->set_src_gpu(from.shape.gpu);
      t->set_src_version(version);
      t->set_layer(layer);
      t->set_src_slot(slot);
      t->set_expert(expert);
      t->set_dst_gpu(dst_gpu);
    }
    (*prepare.mutable_gpu_nodes())[dst_gpu] = dst_node;
    from.permits.Grant(prepare);
  }

  // Fetches directly as `as` for GPU `dst_gpu` and returns the status code
  // gRPC reports.
  grpc::StatusCode FetchCode(const Gpu& from, const std::string& version, int layer, int slot,
                             int expert, const std::string& as = NodeOf(0), int dst_gpu = 0) {
    TransportSecurity client;
    client.insecure = as.empty();
    if (!as.empty()) client = Certs().For(as);
    auto stub = craft::v1::ExpertTransfer::NewStub(
        MakeChannel(from.endpoint, client, NodeOf(from.shape.gpu)));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    craft::v1::FetchExpertRequest request;
    request.set_layout_version(version);
    request.set_layer(layer);
    request.set_slot(slot);
    request.set_expert(expert);
    request.set_dst_gpu(dst_gpu);
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
  Permit(gpu1_, "1.1", 0, 4, 1, 0, NodeOf(0));
  Permit(gpu1_, "0.0", 0, 3, 2, 0, NodeOf(0));
  EXPECT_EQ(FetchCode(gpu1_, "1.1", 0, 4, 1, NodeOf(0), 0), grpc::StatusCode::OK);
  EXPECT_EQ(FetchCode(gpu1_, "0.0", 0, 3, 2, NodeOf(0), 0), grpc::StatusCode::NOT_FOUND);
}

TEST_F(TransferTest, ServesOnlyWhatAPrepareNamesToItsDestinationsNode) {
  // GPU 1's slot 2 of layer 0 holds expert 2; nobody asked to move it yet.
  EXPECT_EQ(FetchCode(gpu1_, "0.0", 0, 2, 2), grpc::StatusCode::UNAVAILABLE);
  Permit(gpu1_, "0.0", 0, 2, 2, /*dst_gpu=*/0, NodeOf(0));
  EXPECT_EQ(FetchCode(gpu1_, "0.0", 0, 2, 2, "stranger", 0), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(FetchCode(gpu1_, "0.0", 0, 2, 2, NodeOf(1), 0), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(FetchCode(gpu1_, "0.0", 0, 2, 2, "", 0), grpc::StatusCode::UNAVAILABLE)
      << "a plaintext client got past the handshake";
  EXPECT_EQ(FetchCode(gpu1_, "0.0", 0, 2, 2, NodeOf(0), 0), grpc::StatusCode::OK);
  EXPECT_EQ(FetchCode(gpu1_, "0.0", 0, 2, 2, NodeOf(0), 1), grpc::StatusCode::UNAVAILABLE)
      << "the permit is for GPU 0, not GPU 1";
  gpu1_.permits.Revoke("p0.0");
  EXPECT_EQ(FetchCode(gpu1_, "0.0", 0, 2, 2, NodeOf(0), 0), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TransferTest, StreamsChunksWithTheChecksumOnTheLast) {
  Permit(gpu1_, "0.0", 1, 3, 3, 0, NodeOf(0));
  auto stub =
      craft::v1::ExpertTransfer::NewStub(MakeChannel(gpu1_.endpoint, gpu0_.security, NodeOf(1)));
  grpc::ClientContext context;
  craft::v1::FetchExpertRequest request;
  request.set_layout_version("0.0");
  request.set_layer(1);
  request.set_slot(3);
  request.set_expert(3);
  request.set_dst_gpu(0);
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
  // Even when a Prepare names them (a planner bug), the store refuses.
  PermitAll(gpu1_, "buggy",
            {{"0.0", 0, 2, 2},
             {"1.1", 0, 2, 2},
             {"0.0", 0, 1, 1},
             {"0.0", 0, 99, 1},
             {"0.0", 7, 2, 2},
             {"0.0", 0, 2, 3},
             {"1.1", 0, 3, 2}});
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
  const absl::StatusOr<StageResult> result = Stage(gpu1_, prepare, &corrupt0);
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
