#include "common/peer_identity.h"

#include <algorithm>

#include "grpc/grpc_security_constants.h"

namespace craft {

std::vector<std::string> PeerDnsNames(const grpc::ServerContextBase& context) {
  std::vector<std::string> names;
  // DNS subjectAltNames only ("x509_subject_alternative_name" mixes in the
  // other kinds of names, which craft does not use as identities).
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return names;
  for (const grpc::string_ref& value : auth->FindPropertyValues(GRPC_PEER_DNS_PROPERTY_NAME)) {
    names.emplace_back(value.data(), value.size());
  }
  return names;
}

bool PeerHasName(const grpc::ServerContextBase& context, absl::string_view name) {
  const std::vector<std::string> names = PeerDnsNames(context);
  return !name.empty() && std::find(names.begin(), names.end(), name) != names.end();
}

std::string PeerLabel(const grpc::ServerContextBase& context) {
  const std::vector<std::string> names = PeerDnsNames(context);
  return names.empty() ? context.peer() : names.front();
}

}  // namespace craft
