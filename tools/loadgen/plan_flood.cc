// craft-plan-flood: how much a flood of dry-run Plans slows what must stay
// fast on the planner, a Replan and a GetLayout. It measures both unloaded,
// then again while --flood_threads clients each keep one Plan in flight (the
// planner runs at most limits.max_concurrent_plans; the rest are refused),
// and prints the ratios (the target: within 20%).
//
//   craft-plan-flood --planner 127.0.0.1:50051 --insecure --flood_threads 4
//
// Run it on a machine with cores to spare, so that the flood's and the
// measurement's own CPU does not compete with the planner's.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/flags.h"
#include "common/transport_flags.h"
#include "craft/v1/placement.grpc.pb.h"
#include "grpcpp/grpcpp.h"

ABSL_FLAG(std::string, planner, "127.0.0.1:50051", "the planner's host:port");
ABSL_FLAG(std::string, planner_name, "craft-planner", "the name its certificate carries");
ABSL_FLAG(int, flood_threads, 4, "clients each keeping one Plan in flight");
ABSL_FLAG(double, seconds, 5, "length of each measurement");
ABSL_FLAG(int, layers, 58, "Plan request: layers");
ABSL_FLAG(int, experts, 256, "Plan request: experts per layer");
ABSL_FLAG(int, replans, 20, "Replan calls per measurement");

namespace {

using craft::v1::PlacementService;

struct Measurement {
  double replan_median_ms = 0;
  double get_layout_p99_ms = 0;
  int64_t get_layout_calls = 0;
};

double Percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[std::min(values.size() - 1, static_cast<size_t>(q * values.size()))];
}

std::unique_ptr<PlacementService::Stub> NewStub(const craft::TransportSecurity& security) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection of its own
  return PlacementService::NewStub(craft::MakeChannel(absl::GetFlag(FLAGS_planner), security,
                                                      absl::GetFlag(FLAGS_planner_name), args));
}

Measurement Measure(const craft::TransportSecurity& security) {
  Measurement m;
  auto stub = NewStub(security);
  std::vector<double> replans;
  for (int i = 0; i < absl::GetFlag(FLAGS_replans); ++i) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    craft::v1::ReplanResponse response;
    const absl::Time start = absl::Now();
    const grpc::Status status = stub->Replan(&context, {}, &response);
    if (!status.ok()) std::cerr << "Replan: " << status.error_message() << "\n";
    replans.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
  }
  m.replan_median_ms = Percentile(replans, 0.5);
  std::vector<double> reads;
  const absl::Time end = absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_seconds));
  while (absl::Now() < end) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    craft::v1::LayoutStatus status;
    const absl::Time start = absl::Now();
    if (stub->GetLayout(&context, {}, &status).ok()) {
      reads.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
    }
  }
  m.get_layout_p99_ms = Percentile(reads, 0.99);
  m.get_layout_calls = static_cast<int64_t>(reads.size());
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  craft::ParseFlags(argc, argv,
                    "craft-plan-flood: how much a flood of dry-run Plans slows Replan and "
                    "GetLayout\n\n"
                    "usage: craft-plan-flood --planner HOST:PORT [--flood_threads N]\n"
                    "                        (--tls_cert PEM --tls_key PEM --tls_ca PEM | "
                    "--insecure)");
  absl::StatusOr<craft::TransportSecurity> security =
      craft::TransportSecurityFromFlags("craft-plan-flood");
  if (!security.ok()) {
    std::cerr << "craft-plan-flood: " << security.status().message() << "\n";
    return 2;
  }
  craft::v1::PlanRequest request;
  for (int l = 0; l < absl::GetFlag(FLAGS_layers); ++l) {
    craft::v1::LayerLoads* layer = request.add_layers();
    for (int e = 0; e < absl::GetFlag(FLAGS_experts); ++e) {
      layer->add_counts(1000 + (e * 7919 + l * 104729) % 50000);  // skewed, fixed
    }
  }
  request.set_budget(-1);

  const Measurement unloaded = Measure(*security);
  std::atomic<bool> stop{false};
  std::atomic<int64_t> ok{0}, refused{0}, failed{0};
  std::vector<std::thread> flood;
  for (int t = 0; t < absl::GetFlag(FLAGS_flood_threads); ++t) {
    flood.emplace_back([&] {
      auto stub = NewStub(*security);
      while (!stop.load()) {
        grpc::ClientContext context;
        context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
        craft::v1::PlanResponse response;
        const grpc::Status status = stub->Plan(&context, request, &response);
        if (status.ok()) {
          ++ok;
        } else if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
          ++refused;
        } else {
          ++failed;
        }
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(500));  // the dry runs are running
  const Measurement flooded = Measure(*security);
  stop = true;
  for (std::thread& t : flood) t.join();

  std::printf("unloaded: Replan median %.3f ms, GetLayout p99 %.3f ms (%lld calls)\n",
              unloaded.replan_median_ms, unloaded.get_layout_p99_ms,
              static_cast<long long>(unloaded.get_layout_calls));
  std::printf(
      "flooded (%d clients; plans ok %lld, refused %lld, failed %lld): Replan median "
      "%.3f ms, GetLayout p99 %.3f ms (%lld calls)\n",
      absl::GetFlag(FLAGS_flood_threads), static_cast<long long>(ok.load()),
      static_cast<long long>(refused.load()), static_cast<long long>(failed.load()),
      flooded.replan_median_ms, flooded.get_layout_p99_ms,
      static_cast<long long>(flooded.get_layout_calls));
  const double replan_ratio = flooded.replan_median_ms / std::max(unloaded.replan_median_ms, 1e-9);
  const double read_ratio = flooded.get_layout_p99_ms / std::max(unloaded.get_layout_p99_ms, 1e-9);
  std::printf("ratios: Replan x%.2f, GetLayout p99 x%.2f (target x1.20: %s)\n", replan_ratio,
              read_ratio, replan_ratio <= 1.2 && read_ratio <= 1.2 ? "met" : "MISSED");
  return 0;
}
