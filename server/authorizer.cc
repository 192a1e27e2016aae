#include "server/authorizer.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/names.h"
#include "common/peer_identity.h"
#include "common/token_file.h"

namespace craft::server {
namespace {

bool Contains(const std::vector<std::string>& names, absl::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

absl::string_view RoleName(Role role) { return role == Role::kAdmin ? "admin" : "read"; }

}  // namespace

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

absl::StatusOr<Authorizer> Authorizer::Create(const SecurityConfig& config,
                                              const planner::ClusterShape& cluster, bool insecure) {
  if (!insecure && config.nodes.empty()) {
    return absl::InvalidArgumentError(
        "security.nodes is required with mutual TLS: name every node, in rank order, so that an "
        "agent's certificate proves which node (and GPUs) it speaks for");
  }
  std::string token;
  if (!config.admin_token_file.empty()) {
    absl::StatusOr<std::string> read = ReadTokenFile(config.admin_token_file);
    if (!read.ok()) {
      return absl::Status(read.status().code(),
                          absl::StrCat("security.admin_token_file: ", read.status().message()));
    }
    token = *std::move(read);
  }
  if (insecure && token.empty()) {
    CRAFT_LOG(WARNING) << "*** --insecure without security.admin_token_file: anyone who reaches "
                          "the planner's port can Replan ***";
  }
  return Authorizer(config, cluster, insecure, std::move(token));
}

bool Authorizer::HasAdminToken(const grpc::ServerContextBase& context) const {
  if (admin_token_.empty()) return false;
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) return false;
  const absl::string_view value(it->second.data(), it->second.size());
  constexpr absl::string_view kScheme = "Bearer ";
  return absl::StartsWith(value, kScheme) &&
         ConstantTimeEquals(value.substr(kScheme.size()), admin_token_);
}

absl::Status Authorizer::Authorize(const grpc::ServerContextBase& context, Role role,
                                   absl::string_view rpc) const {
  if (HasAdminToken(context)) return absl::OkStatus();
  const std::vector<std::string> names = PeerDnsNames(context);
  const bool admin = std::any_of(names.begin(), names.end(),
                                 [&](const std::string& n) { return Contains(config_.admins, n); });
  if (admin) return absl::OkStatus();
  if (role == Role::kRead) {
    if (insecure_) return absl::OkStatus();  // plaintext: nothing to check reads against
    const bool reader = (!names.empty() && Contains(config_.readers, "*")) ||
                        std::any_of(names.begin(), names.end(), [&](const std::string& n) {
                          return Contains(config_.readers, n);
                        });
    if (reader) return absl::OkStatus();
  } else if (insecure_ && admin_token_.empty()) {
    return absl::OkStatus();  // the demo mode, announced loudly at start
  }
  const bool sent_token = context.client_metadata().count("authorization") > 0;
  if (names.empty() && !sent_token) {
    return absl::UnauthenticatedError(absl::StrCat(
        rpc, " needs the ", RoleName(role), " role: a client certificate",
        role == Role::kAdmin ? " listed in security.admins, or 'authorization: Bearer <token>'"
                             : ""));
  }
  return absl::PermissionDeniedError(
      absl::StrCat(rpc, " needs the ", RoleName(role), " role, which ",
                   names.empty() ? "this token does not grant"
                                 : absl::StrCat("'", names.front(), "' does not have"),
                   role == Role::kAdmin ? " (security.admins, security.admin_token_file)"
                                        : " (security.readers)"));
}

absl::Status Authorizer::AuthorizeAgent(const grpc::ServerContextBase& context,
                                        const craft::v1::AgentHello& hello) const {
  // Before any message quotes it.
  if (!IsValidName(hello.node())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AgentHello.node must be 1 to ", kMaxNameBytes,
        " letters, digits, '-', '.' or '_' (a DNS name); got ", hello.node().size(), " bytes"));
  }
  if (!insecure_ && !PeerHasName(context, hello.node())) {
    const std::vector<std::string> names = PeerDnsNames(context);
    return absl::PermissionDeniedError(absl::StrCat(
        "agent hello for node '", hello.node(), "' over a connection whose certificate names ",
        names.empty() ? "nothing" : absl::StrCat("'", absl::StrJoin(names, "', '"), "'"),
        ": an agent's certificate must carry its node's name"));
  }
  if (config_.nodes.empty()) return absl::OkStatus();
  const auto it = std::find(config_.nodes.begin(), config_.nodes.end(), hello.node());
  if (it == config_.nodes.end()) {
    return absl::PermissionDeniedError(
        absl::StrCat("node '", hello.node(), "' is not in security.nodes"));
  }
  const int node_index = static_cast<int>(it - config_.nodes.begin());
  for (const craft::v1::GpuInfo& gpu : hello.gpus()) {
    if (gpu.rank() < 0 || gpu.rank() >= cluster_.num_gpus ||
        cluster_.NodeOf(gpu.rank()) != node_index) {
      return absl::PermissionDeniedError(absl::StrCat(
          "node '", hello.node(), "' (node ", node_index, " in security.nodes) claims GPU rank ",
          gpu.rank(), ", which is not one of its ranks [", node_index * cluster_.gpus_per_node(),
          ", ", (node_index + 1) * cluster_.gpus_per_node(), ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace craft::server
