// Who may do what on the planner's port. Identities are the DNS names of the
// peer's certificate (common/peer_identity.h), proven by mutual TLS before any
// handler runs; on an --insecure port there are none, and only the node list
// and the admin token are enforced.
//
//   Agents (AgentGateway.Connect): the hello's node must be one of the
//   configured security.nodes, the certificate must carry that name, and the
//   GPU ranks it claims must be that node's (node i holds ranks
//   [i * G, (i + 1) * G)). A second stream from the same node replaces the
//   first (it needs that node's certificate; ApplyCoordinator::Connect).
//
//   Operators and engines (PlacementService): the read role (GetLayout,
//   WatchLayout, ListAgents, Explain, Plan) for certificate names in
//   security.readers ("*": any certificate the CA signed); the admin role
//   (Replan, and reading) for names in security.admins or a caller that
//   sends the admin token ("authorization: Bearer <token>", compared in
//   constant time).
//
// Thread-safe: immutable after Create.
#ifndef CRAFT_SERVER_AUTHORIZER_H_
#define CRAFT_SERVER_AUTHORIZER_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "craft/v1/agent.pb.h"
#include "grpcpp/grpcpp.h"
#include "planner/cluster.h"
#include "server/config.h"

namespace craft::server {

enum class Role { kRead, kAdmin };

class Authorizer {
 public:
  // Reads the admin token file. With TLS (`insecure` false) the node list is
  // required: without it any certificate of the CA could claim any node.
  static absl::StatusOr<Authorizer> Create(const SecurityConfig& config,
                                           const planner::ClusterShape& cluster, bool insecure);

  // OK, UNAUTHENTICATED (no identity and no token) or PERMISSION_DENIED (an
  // identity without the role, or a wrong token). `rpc` names the call in
  // the error.
  absl::Status Authorize(const grpc::ServerContextBase& context, Role role,
                         absl::string_view rpc) const;

  // Whether the peer may speak for `hello.node()` and its GPUs; shape checks
  // (ranks in range, one node) are the coordinator's.
  absl::Status AuthorizeAgent(const grpc::ServerContextBase& context,
                              const craft::v1::AgentHello& hello) const;

  bool insecure() const { return insecure_; }

 private:
  Authorizer(SecurityConfig config, planner::ClusterShape cluster, bool insecure,
             std::string admin_token)
      : config_(std::move(config)),
        cluster_(cluster),
        insecure_(insecure),
        admin_token_(std::move(admin_token)) {}

  bool HasAdminToken(const grpc::ServerContextBase& context) const;

  SecurityConfig config_;
  planner::ClusterShape cluster_;
  bool insecure_;
  std::string admin_token_;  // empty: none configured
};

// Compares without an early exit, so timing does not reveal the token.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

}  // namespace craft::server

#endif  // CRAFT_SERVER_AUTHORIZER_H_
