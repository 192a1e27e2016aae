// The command-line flags of transport security, shared by every craft binary
// that opens or dials a TCP port (planner, agent, workers, craftctl, loadgen):
//   --tls_cert, --tls_key, --tls_ca   PEM files; mutual TLS (the default)
//   --tls_reload_s                    how often the files are re-read
//   --insecure                        plaintext, no identities (demo only)
#ifndef CRAFT_COMMON_TRANSPORT_FLAGS_H_
#define CRAFT_COMMON_TRANSPORT_FLAGS_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/transport_security.h"

namespace craft {

// The flags' values, validated (ValidateTransportSecurity). With --insecure it
// logs a warning naming `program`, so that a plaintext deployment is never
// silent.
absl::StatusOr<TransportSecurity> TransportSecurityFromFlags(absl::string_view program);

}  // namespace craft

#endif  // CRAFT_COMMON_TRANSPORT_FLAGS_H_
