// A fresh CA and certificates made at run time with openssl, by
// scripts/make_certs.sh (a data dependency), for tests and local clusters
// (tools/local_cluster); deployments bring their own.
//
//   absl::StatusOr<TestCerts> certs = MakeTestCerts(dir, {"craft-planner:127.0.0.1", "node0"});
//   TransportSecurity planner = certs->For("craft-planner");
#ifndef CRAFT_COMMON_TEST_CERTS_H_
#define CRAFT_COMMON_TEST_CERTS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/transport_security.h"

namespace craft::testing {

struct TestCerts {
  std::string dir;
  std::string ca_file() const { return dir + "/ca.pem"; }
  // Mutual TLS as `name` (one of the names made), reloading every second.
  TransportSecurity For(const std::string& name) const;
};

// Runs scripts/make_certs.sh in `dir` for `specs` (NAME[:SAN,SAN...]); the
// CA is made on the first call for a directory and reused after.
absl::StatusOr<TestCerts> MakeTestCerts(const std::string& dir,
                                        const std::vector<std::string>& specs);

}  // namespace craft::testing

#endif  // CRAFT_COMMON_TEST_CERTS_H_
