#include "common/transport_security.h"

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/empty_call.h"
#include "common/peer_identity.h"
#include "common/test_certs.h"
#include "grpcpp/generic/async_generic_service.h"
#include "gtest/gtest.h"

namespace craft {
namespace {

using testing::MakeTestCerts;
using testing::TestCerts;

std::string TempDir(const std::string& name) {
  const char* root = std::getenv("TEST_TMPDIR");
  std::string dir = std::string(root ? root : "/tmp") + "/" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// Answers any method with its request and remembers who called: a service
// without generated code, as what is tested is the transport under it.
class Recorder final : public grpc::CallbackGenericService {
 public:
  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* context) override {
    {
      absl::MutexLock lock(&mu_);
      names_ = PeerDnsNames(*context);
    }
    return new Echo();
  }
  std::vector<std::string> names() {
    absl::MutexLock lock(&mu_);
    return names_;
  }

 private:
  // One unary call: reads the request, writes it back, finishes.
  class Echo final : public grpc::ServerGenericBidiReactor {
   public:
    Echo() { StartRead(&request_); }
    void OnReadDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no request"));
        return;
      }
      StartWriteAndFinish(&request_, grpc::WriteOptions(), grpc::Status::OK);
    }
    void OnDone() override { delete this; }

   private:
    grpc::ByteBuffer request_;
  };

  absl::Mutex mu_;
  std::vector<std::string> names_ ABSL_GUARDED_BY(mu_);
};

class TransportSecurityTest : public ::testing::Test {
 protected:
  void Serve(const TransportSecurity& security) {
    ASSERT_TRUE(ValidateTransportSecurity(security).ok());
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", MakeServerCredentials(security), &port_);
    builder.RegisterCallbackGenericService(&recorder_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }

  grpc::Status Call(const TransportSecurity& client, const std::string& server_name) {
    return CallWithEmptyRequest(
               MakeChannel("127.0.0.1:" + std::to_string(port_), client, server_name),
               "/craft.test.Echo/Call", absl::Now() + absl::Seconds(3))
        .status;
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  Recorder recorder_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(TransportSecurityTest, MutualTlsCarriesTheClientsNames) {
  absl::StatusOr<TestCerts> certs =
      MakeTestCerts(TempDir("mtls"), {"craft-planner:127.0.0.1", "node0:node0.example"});
  ASSERT_TRUE(certs.ok()) << certs.status();
  Serve(certs->For("craft-planner"));
  grpc::Status status = Call(certs->For("node0"), "craft-planner");
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(recorder_.names(), (std::vector<std::string>{"node0", "node0.example"}));
}

TEST_F(TransportSecurityTest, RefusesPlaintextForeignCaAndWrongServerName) {
  absl::StatusOr<TestCerts> certs =
      MakeTestCerts(TempDir("refuse"), {"craft-planner:127.0.0.1", "node0"});
  absl::StatusOr<TestCerts> rogue = MakeTestCerts(TempDir("rogue"), {"node0"});
  ASSERT_TRUE(certs.ok() && rogue.ok());
  Serve(certs->For("craft-planner"));

  TransportSecurity plaintext;
  plaintext.insecure = true;
  EXPECT_FALSE(Call(plaintext, "").ok()) << "a plaintext client got in";
  // The same node name, signed by another CA: the server refuses it, and the
  // client refuses the server (whose CA it does not trust).
  EXPECT_FALSE(Call(rogue->For("node0"), "craft-planner").ok());
  // The right CA, but the server is not the name the client expects.
  EXPECT_FALSE(Call(certs->For("node0"), "node1").ok());
  EXPECT_TRUE(Call(certs->For("node0"), "craft-planner").ok());
}

TEST_F(TransportSecurityTest, ReloadsRotatedCertificates) {
  // The server starts with a certificate of CA "old"; the client trusts only
  // CA "new". Rotating the server's files to a CA "new" certificate lets new
  // connections in without a restart.
  const std::string old_dir = TempDir("old");
  absl::StatusOr<TestCerts> old_certs = MakeTestCerts(old_dir, {"craft-planner:127.0.0.1"});
  absl::StatusOr<TestCerts> new_certs =
      MakeTestCerts(TempDir("new"), {"craft-planner:127.0.0.1", "node0"});
  ASSERT_TRUE(old_certs.ok() && new_certs.ok());
  Serve(old_certs->For("craft-planner"));
  ASSERT_FALSE(Call(new_certs->For("node0"), "craft-planner").ok());

  for (const char* file : {"craft-planner.pem", "craft-planner.key", "ca.pem"}) {
    std::filesystem::copy_file(new_certs->dir + "/" + file, old_dir + "/" + file,
                               std::filesystem::copy_options::overwrite_existing);
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  bool ok = false;
  while (!ok && absl::Now() < deadline) {
    ok = Call(new_certs->For("node0"), "craft-planner").ok();
    if (!ok) absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_TRUE(ok) << "the rotated certificate was not picked up within 10 s";
}

TEST(ValidateTransportSecurityTest, ExplainsMissingAndWrongFiles) {
  absl::StatusOr<TestCerts> certs = MakeTestCerts(TempDir("validate"), {"node0"});
  ASSERT_TRUE(certs.ok());
  TransportSecurity security = certs->For("node0");
  EXPECT_TRUE(ValidateTransportSecurity(security).ok());

  TransportSecurity none;
  absl::Status status = ValidateTransportSecurity(none);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("--insecure"), std::string::npos) << status;

  TransportSecurity swapped = security;
  std::swap(swapped.cert_file, swapped.key_file);
  status = ValidateTransportSecurity(swapped);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("--tls_cert"), std::string::npos) << status;

  TransportSecurity missing = security;
  missing.ca_file += ".absent";
  EXPECT_EQ(ValidateTransportSecurity(missing).code(), absl::StatusCode::kNotFound);

  TransportSecurity plaintext;
  plaintext.insecure = true;
  EXPECT_TRUE(ValidateTransportSecurity(plaintext).ok());
}

}  // namespace
}  // namespace craft
