#include "common/transport_flags.h"

#include <string>

#include "absl/flags/flag.h"
#include "common/logging.h"

ABSL_FLAG(std::string, tls_cert, "", "this process's certificate (PEM) for mutual TLS");
ABSL_FLAG(std::string, tls_key, "", "the private key of --tls_cert (PEM)");
ABSL_FLAG(std::string, tls_ca, "",
          "the CA certificate every peer's certificate is checked against");
ABSL_FLAG(int64_t, tls_reload_s, 60, "re-read the certificate files this often (seconds)");
ABSL_FLAG(bool, insecure, false,
          "plaintext without identities on every TCP port: only for a demo on one machine");

namespace craft {

absl::StatusOr<TransportSecurity> TransportSecurityFromFlags(absl::string_view program) {
  absl::StatusOr<TransportSecurity> security = TransportSecurityFromFlagsQuietly();
  if (security.ok() && security->insecure) {
    CRAFT_LOG(WARNING) << "*** " << program
                       << " runs with --insecure: plaintext and no identities on every TCP "
                          "port; anyone who reaches them is trusted. Demo use only. ***";
  }
  return security;
}

absl::StatusOr<TransportSecurity> TransportSecurityFromFlagsQuietly() {
  TransportSecurity security;
  security.insecure = absl::GetFlag(FLAGS_insecure);
  security.cert_file = absl::GetFlag(FLAGS_tls_cert);
  security.key_file = absl::GetFlag(FLAGS_tls_key);
  security.ca_file = absl::GetFlag(FLAGS_tls_ca);
  const int64_t reload_s = absl::GetFlag(FLAGS_tls_reload_s);
  if (reload_s < 1 || reload_s > 86400) {
    return absl::InvalidArgumentError("--tls_reload_s must be in [1, 86400]");
  }
  security.reload_interval = absl::Seconds(reload_s);
  if (security.insecure) {
    if (!security.cert_file.empty() || !security.key_file.empty() || !security.ca_file.empty()) {
      return absl::InvalidArgumentError("--insecure and --tls_* contradict each other");
    }
    return security;
  }
  if (absl::Status valid = ValidateTransportSecurity(security); !valid.ok()) return valid;
  return security;
}

}  // namespace craft
