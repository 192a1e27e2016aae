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

// The same without the warning, for a one-shot client whose operator typed
// --insecure on this very command line (craftctl).
absl::StatusOr<TransportSecurity> TransportSecurityFromFlagsQuietly();

}  // namespace craft

#endif  // CRAFT_COMMON_TRANSPORT_FLAGS_H_
