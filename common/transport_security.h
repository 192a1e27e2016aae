// Transport security of every TCP port craft opens or dials: the planner's
// gRPC port, the agent's health port and the workers' transfer ports. Mutual
// TLS by default: both sides present a certificate signed by the cluster's CA,
// and identities are the DNS names in the certificates' subjectAltName
// (common/peer_identity.h). Plaintext only behind an explicit --insecure.
//
//   TransportSecurity security = ...;  // common/transport_flags.h
//   CRAFT_RETURN_IF_ERROR(ValidateTransportSecurity(security));
//   builder.AddListeningPort(address, MakeServerCredentials(security));
//
// Certificates are read from files and re-read every `reload_interval`, so a
// rotated certificate (cert-manager, a renewed secret) takes effect on new
// connections without a restart; established connections keep theirs.
#ifndef CRAFT_COMMON_TRANSPORT_SECURITY_H_
#define CRAFT_COMMON_TRANSPORT_SECURITY_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"

namespace craft {

struct TransportSecurity {
  // Plaintext, no identities: only for demos on one machine.
  bool insecure = false;
  std::string cert_file;  // this process's certificate (PEM)
  std::string key_file;   // its private key (PEM)
  std::string ca_file;    // the CA that signs every peer's certificate (PEM)
  absl::Duration reload_interval = absl::Seconds(60);
};

// OK for --insecure, or when the three files are set, readable and hold PEM
// of the right kind. A missing or unreadable file is an error at start-up,
// not a handshake failure on every connection later.
absl::Status ValidateTransportSecurity(const TransportSecurity& security);

// Credentials for a server: TLS that requires and verifies a client
// certificate signed by the CA, or plaintext when insecure.
std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(const TransportSecurity& security);

// A channel to a craft port at `target`: TLS that presents our certificate
// and verifies the server's against the CA and `server_name`, the DNS name
// its certificate must carry (the planner's "craft-planner", a peer worker's
// node name; "" checks the host of `target`), or plaintext when insecure.
// `args` are the caller's own channel arguments (keepalive, backoff, ...).
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target,
                                           const TransportSecurity& security,
                                           const std::string& server_name,
                                           grpc::ChannelArguments args = {});

}  // namespace craft

#endif  // CRAFT_COMMON_TRANSPORT_SECURITY_H_
