// craftctl's planner queries over gRPC: layout, agents, explain, replan, watch,
// and health (of any craft port).
#include <algorithm>
#include <iostream>
#include <memory>

#include "absl/flags/flag.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/empty_call.h"
#include "common/grpc/status.h"
#include "common/status_macros.h"
#include "common/token_file.h"
#include "common/transport_flags.h"
#include "common/transport_security.h"
#include "craft/v1/placement.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "planner/io/layout_json.h"
#include "tools/craftctl/commands.h"
#include "tools/craftctl/files.h"
#include "tools/craftctl/flags.h"
#include "wire/layout_proto.h"

namespace craft::ctl {
namespace {

using craft::v1::PlacementService;

// `status` as an absl::Status, its message prefixed with the call that
// failed (`what`), which the bare gRPC message does not name.
absl::Status FromGrpc(const grpc::Status& status, absl::string_view what) {
  const absl::Status converted = FromGrpcStatus(status);
  if (converted.ok()) return converted;
  return absl::Status(converted.code(), absl::StrCat(what, ": ", converted.message()));
}

// How to reach a craft port: --tls_cert/--tls_key/--tls_ca (mutual TLS, the
// server's certificate must carry --server_name), or --insecure.
absl::StatusOr<std::shared_ptr<grpc::Channel>> SecureChannel(const std::string& target) {
  CRAFT_ASSIGN_OR_RETURN(const TransportSecurity security, TransportSecurityFromFlagsQuietly());
  return MakeChannel(target, security, absl::GetFlag(FLAGS_server_name));
}

// A client for --planner (default 127.0.0.1:7070); calls get --timeout_ms.
struct Connection {
  std::unique_ptr<PlacementService::Stub> stub;
  absl::Duration timeout;
  std::string token;

  void Prepare(grpc::ClientContext* context) const {
    context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
  }
};

absl::StatusOr<Connection> Connect() {
  Connection connection;
  CRAFT_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                         SecureChannel(absl::GetFlag(FLAGS_planner)));
  connection.stub = PlacementService::NewStub(channel);
  connection.timeout = absl::Milliseconds(absl::GetFlag(FLAGS_timeout_ms));
  if (const std::string token_file = absl::GetFlag(FLAGS_token_file); !token_file.empty()) {
    CRAFT_ASSIGN_OR_RETURN(connection.token, ReadTokenFile(token_file));
  }
  return connection;
}

void PrintStatus(const craft::v1::LayoutStatus& status) {
  int redundant = 0;
  for (const auto& layer : status.committed().layers()) {
    redundant += layer.phy2log_size() - status.committed().num_experts();
  }
  std::cout << absl::StrFormat(
      "version %s (epoch %d)%s: %d layers, %d GPUs, %d redundant slots; measured balancedness "
      "%.4f (%d GPU windows ingested); group %s\n",
      status.committed().version(), status.epoch(),
      status.pending_version().empty() ? "" : ", applying " + status.pending_version(),
      status.committed().layers_size(), status.committed().num_gpus(), redundant,
      status.measured_balancedness(), status.windows_ingested(), status.group());
  if (!status.leader().empty()) {
    std::cout << (status.from_leader() ? "answered by the leader, " : "answered by a follower, ")
              << status.leader() << " leads\n";
  }
}

}  // namespace

absl::Status RunLayout() {
  CRAFT_ASSIGN_OR_RETURN(Connection connection, Connect());
  const std::string out = absl::GetFlag(FLAGS_out);
  grpc::ClientContext context;
  connection.Prepare(&context);
  craft::v1::LayoutStatus status;
  craft::v1::GetLayoutRequest request;
  request.set_group(absl::GetFlag(FLAGS_group));
  CRAFT_RETURN_IF_ERROR(
      FromGrpc(connection.stub->GetLayout(&context, request, &status), "GetLayout"));
  PrintStatus(status);
  if (out.empty()) return absl::OkStatus();
  CRAFT_ASSIGN_OR_RETURN(planner::Layout layout, LayoutFromProto(status.committed()));
  return WriteFile(
      out,
      planner::LayoutToJson(layout, "planner", {{"version", status.committed().version()}}) + "\n");
}

absl::Status RunAgents() {
  CRAFT_ASSIGN_OR_RETURN(Connection connection, Connect());
  grpc::ClientContext context;
  connection.Prepare(&context);
  craft::v1::ListAgentsResponse response;
  craft::v1::ListAgentsRequest request;
  request.set_group(absl::GetFlag(FLAGS_group));
  CRAFT_RETURN_IF_ERROR(
      FromGrpc(connection.stub->ListAgents(&context, request, &response), "ListAgents"));
  std::cout << absl::StrFormat("%-20s %-10s %-10s %-9s %s\n", "node", "connected", "version",
                               "rejected",
                               "gpus (a GPU on another version: gpu=version, ? unknown)");
  for (const auto& agent : response.agents()) {
    std::vector<std::string> gpus;
    for (int i = 0; i < agent.gpus_size(); ++i) {
      const std::string version = i < agent.gpu_versions_size() ? agent.gpu_versions(i) : "";
      gpus.push_back(version == agent.committed_version()
                         ? absl::StrCat(agent.gpus(i))
                         : absl::StrCat(agent.gpus(i), "=", version.empty() ? "?" : version));
    }
    std::cout << absl::StrFormat("%-20s %-10s %-10s %-9d %s\n", agent.node(),
                                 agent.connected() ? "yes" : "no", agent.committed_version(),
                                 agent.windows_rejected(), absl::StrJoin(gpus, ","));
  }
  return absl::OkStatus();
}

absl::Status RunExplain() {
  CRAFT_ASSIGN_OR_RETURN(Connection connection, Connect());
  grpc::ClientContext context;
  connection.Prepare(&context);
  craft::v1::ExplainResponse response;
  craft::v1::ExplainRequest request;
  request.set_group(absl::GetFlag(FLAGS_group));
  CRAFT_RETURN_IF_ERROR(
      FromGrpc(connection.stub->Explain(&context, request, &response), "Explain"));
  std::cout << absl::StrFormat(
      "version %s, %s (%s), R = %d, predicted balancedness %.4f; group %s\nlast replan: %s\n",
      response.version(), response.method().empty() ? "fresh" : response.method(),
      response.algorithm(), response.budget(), response.predicted_balancedness(), response.group(),
      response.decision());
  if (response.frontier_size() > 0) {
    std::cout << absl::StrFormat(
        "frontier (step %d; staging headroom %s):\n%9s %14s %12s %14s %12s\n", response.step(),
        response.staging_headroom_bytes() < 0
            ? std::string("not reported")
            : absl::StrFormat("%.3g MB", response.staging_headroom_bytes() / 1e6),
        "moved", "max bytes/GPU", "balancedness", "step (tokens)", "net (s)");
    for (const craft::v1::FrontierPoint& point : response.frontier()) {
      std::cout << absl::StrFormat("%8.2f%% %14d %12.4f %14.0f %12.3f %s%s\n",
                                   100 * point.moved_fraction(), point.max_bytes_into_gpu(),
                                   point.predicted_balancedness(), point.predicted_step_time(),
                                   point.net_benefit_s(), point.chosen() ? " <- chosen" : "",
                                   point.applied() && !point.chosen() ? " <- this step" : "");
    }
  }
  // Under the roofline objective the layers carry modelled ms as well.
  const bool ms = std::any_of(response.layers().begin(), response.layers().end(),
                              [](const craft::v1::LayerPlan& layer) {
                                return layer.predicted_ms_size() > 0 || layer.committed_ms() > 0;
                              });
  std::cout << absl::StrFormat(
      "%5s %8s %9s %9s%s  %s\n", "layer", "replicas", "measured", "predicted",
      ms ? " committed_ms predicted_ms" : "",
      ms ? "curve (replicas:balancedness/ms)" : "curve (replicas:balancedness)");
  for (const auto& layer : response.layers()) {
    std::string curve;
    double predicted = 0, predicted_ms = 0;
    for (int k = 0; k < layer.candidate_replicas_size(); ++k) {
      const bool has_ms = k < layer.predicted_ms_size();
      absl::StrAppendFormat(&curve, "%d:%.3f", layer.candidate_replicas(k),
                            layer.predicted_balancedness(k));
      if (has_ms) absl::StrAppendFormat(&curve, "/%.4f", layer.predicted_ms(k));
      curve += " ";
      if (layer.candidate_replicas(k) == layer.chosen_replicas()) {
        predicted = layer.predicted_balancedness(k);
        if (has_ms) predicted_ms = layer.predicted_ms(k);
      }
    }
    std::cout << absl::StrFormat(
        "%5d %8d %9.4f %9.4f%s  %s\n", layer.layer(), layer.chosen_replicas(),
        layer.measured_balancedness(), predicted,
        ms ? absl::StrFormat(" %12.4f %12.4f", layer.committed_ms(), predicted_ms) : "", curve);
  }
  return absl::OkStatus();
}

absl::Status RunReplan() {
  CRAFT_ASSIGN_OR_RETURN(Connection connection, Connect());
  craft::v1::ReplanRequest request;
  request.set_force(absl::GetFlag(FLAGS_force));
  request.set_group(absl::GetFlag(FLAGS_group));
  grpc::ClientContext context;
  connection.Prepare(&context);
  craft::v1::ReplanResponse response;
  CRAFT_RETURN_IF_ERROR(FromGrpc(connection.stub->Replan(&context, request, &response), "Replan"));
  std::cout << response.decision() << "\n";
  return absl::OkStatus();
}

absl::Status RunWatch() {
  CRAFT_ASSIGN_OR_RETURN(Connection connection, Connect());
  const int count = absl::GetFlag(FLAGS_count);
  grpc::ClientContext context;  // no deadline: a watch lasts
  if (!connection.token.empty()) {
    context.AddMetadata("authorization", "Bearer " + connection.token);
  }
  craft::v1::WatchLayoutRequest request;
  request.set_group(absl::GetFlag(FLAGS_group));
  auto reader = connection.stub->WatchLayout(&context, request);
  craft::v1::LayoutStatus status;
  int seen = 0;
  while (reader->Read(&status)) {
    PrintStatus(status);
    std::cout.flush();
    if (count > 0 && ++seen >= count) {
      context.TryCancel();
      break;
    }
  }
  grpc::Status done = reader->Finish();
  if (count > 0 && seen >= count) return absl::OkStatus();
  return FromGrpc(done, "WatchLayout");
}

// grpc.health.v1.Health/Check of a whole server (planner or agent health
// port) over mutual TLS: exits 0 only when it answers SERVING. For exec
// probes, since Kubernetes' own gRPC probes cannot present a certificate.
absl::Status RunHealth() {
  const std::string target = absl::GetFlag(FLAGS_target);
  CRAFT_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, SecureChannel(target));
  const EmptyCallReply reply =
      CallWithEmptyRequest(channel, kHealthCheckMethod,
                           absl::Now() + absl::Milliseconds(absl::GetFlag(FLAGS_timeout_ms)));
  CRAFT_RETURN_IF_ERROR(FromGrpc(reply.status, "Health/Check"));
  if (reply.bytes != kServingResponse) {
    return absl::UnavailableError(absl::StrCat(target, " is not SERVING"));
  }
  std::cout << "SERVING\n";
  return absl::OkStatus();
}

}  // namespace craft::ctl
