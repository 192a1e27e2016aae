// Who is on the other end of a call: the DNS names of the peer's certificate.
// Under mutual TLS (common/transport_security.h) gRPC has verified the chain
// against the cluster's CA before any handler runs, so these names are the
// peer's proven identity: an agent's node name, an operator's or engine's
// name. On a plaintext (--insecure) connection there are none.
#ifndef CRAFT_COMMON_PEER_IDENTITY_H_
#define CRAFT_COMMON_PEER_IDENTITY_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "grpcpp/grpcpp.h"

namespace craft {

// The DNS subjectAltNames of the peer's verified certificate; empty when the
// call did not come over TLS with a client certificate.
std::vector<std::string> PeerDnsNames(const grpc::ServerContextBase& context);

// True when `name` is one of the peer certificate's DNS names.
bool PeerHasName(const grpc::ServerContextBase& context, absl::string_view name);

// "node0" (its first DNS name), or the transport address when it has none:
// for log lines and error messages.
std::string PeerLabel(const grpc::ServerContextBase& context);

}  // namespace craft

#endif  // CRAFT_COMMON_PEER_IDENTITY_H_
