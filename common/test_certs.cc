#include "common/test_certs.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/runfiles.h"

namespace craft::testing {

TransportSecurity TestCerts::For(const std::string& name) const {
  TransportSecurity security;
  security.cert_file = absl::StrCat(dir, "/", name, ".pem");
  security.key_file = absl::StrCat(dir, "/", name, ".key");
  security.ca_file = ca_file();
  security.reload_interval = absl::Seconds(1);
  return security;
}

absl::StatusOr<TestCerts> MakeTestCerts(const std::string& dir,
                                        const std::vector<std::string>& specs) {
  const std::string command = absl::StrCat("'", Runfile("scripts/make_certs.sh"), "' '", dir, "' '",
                                           absl::StrJoin(specs, "' '"), "' >/dev/null");
  if (std::system(command.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("make_certs.sh failed: ", command));
  }
  return TestCerts{dir};
}

}  // namespace craft::testing
