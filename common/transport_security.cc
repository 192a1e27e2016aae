#include "common/transport_security.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_io.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_certificate_verifier.h"
#include "grpcpp/security/tls_credentials_options.h"

namespace craft {
namespace {

// Reads `path` and checks it holds a PEM block whose label contains `kind`
// ("CERTIFICATE", "PRIVATE KEY"): a swapped key and certificate, an empty
// file or a DER file is caught here, with the flag's name.
absl::Status CheckPemFile(const std::string& what, const std::string& path,
                          const std::string& kind) {
  if (path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is not set: mutual TLS needs --tls_cert, --tls_key and --tls_ca ",
                     "(or --insecure for a plaintext demo)"));
  }
  // A PEM certificate chain or key is a few KiB; 1 MiB leaves room for large
  // CA bundles and refuses a wrong file (a disk image) before reading it.
  constexpr int64_t kMaxPemBytes = 1 << 20;
  absl::StatusOr<std::string> text = ReadFileToString(path, kMaxPemBytes);
  if (absl::IsResourceExhausted(text.status())) {
    return absl::InvalidArgumentError(absl::StrCat(what, " ", text.status().message()));
  }
  if (!text.ok()) return absl::NotFoundError(absl::StrCat(what, " ", path, ": cannot be read"));
  const std::string& pem = *text;
  const size_t begin = pem.find("-----BEGIN ");
  const size_t label_end = begin == std::string::npos ? begin : pem.find("-----", begin + 11);
  if (label_end == std::string::npos ||
      !absl::StrContains(pem.substr(begin + 11, label_end - begin - 11), kind)) {
    return absl::InvalidArgumentError(absl::StrCat(what, " ", path, ": not a PEM ", kind,
                                                   " (expected '-----BEGIN ...", kind, "-----')"));
  }
  return absl::OkStatus();
}

std::shared_ptr<grpc::experimental::FileWatcherCertificateProvider> Provider(
    const TransportSecurity& security) {
  const int64_t seconds = std::max<int64_t>(1, absl::ToInt64Seconds(security.reload_interval));
  return std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      security.key_file, security.cert_file, security.ca_file, static_cast<unsigned int>(seconds));
}

}  // namespace

absl::Status ValidateTransportSecurity(const TransportSecurity& security) {
  if (security.insecure) return absl::OkStatus();
  if (absl::Status s = CheckPemFile("--tls_cert", security.cert_file, "CERTIFICATE"); !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckPemFile("--tls_key", security.key_file, "PRIVATE KEY"); !s.ok()) {
    return s;
  }
  return CheckPemFile("--tls_ca", security.ca_file, "CERTIFICATE");
}

std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(const TransportSecurity& security) {
  if (security.insecure) return grpc::InsecureServerCredentials();
  grpc::experimental::TlsServerCredentialsOptions options(Provider(security));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  return grpc::experimental::TlsServerCredentials(options);
}

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target,
                                           const TransportSecurity& security,
                                           const std::string& server_name,
                                           grpc::ChannelArguments args) {
  if (security.insecure) {
    return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  }
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(Provider(security));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  // The chain is verified against the CA; this checks the name as well.
  options.set_certificate_verifier(
      std::make_shared<grpc::experimental::HostNameCertificateVerifier>());
  if (!server_name.empty()) args.SetSslTargetNameOverride(server_name);
  return grpc::CreateCustomChannel(target, grpc::experimental::TlsCredentials(options), args);
}

}  // namespace craft
