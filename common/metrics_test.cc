#include "common/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "common/promtool.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace craft::metrics {
namespace {

using ::testing::HasSubstr;

// A registry with one scrape-time gauge, one mirrored counter and one
// event-driven histogram.
class ExampleMetrics : public ScrapedRegistry {
 public:
  ExampleMetrics() {
    value_ = &GaugeFamily(registry(), "craft_test_value", "A value read at scrape time.").Add({});
    total_ = &CounterFamily(registry(), "craft_test_events_total", "Events seen.").Add({});
    per_layer_ = IndexedGauges(
        GaugeFamily(registry(), "craft_test_layer_ratio", "A ratio per layer."), "layer", 3);
    duration_ = &HistogramFamily(registry(), "craft_test_duration_seconds", "A duration.")
                     .Add({}, DurationBuckets());
  }
  void SetSource(int value) {
    absl::MutexLock lock(&refresh_mutex());
    source_ = value;
  }
  prometheus::Histogram& duration() { return *duration_; }

 private:
  void Refresh() const override {
    value_->Set(source_);
    AdvanceTo(*total_, source_);
    for (size_t l = 0; l < per_layer_.size(); ++l) per_layer_[l]->Set(0.5);
  }

  prometheus::Gauge* value_;
  prometheus::Counter* total_;
  std::vector<prometheus::Gauge*> per_layer_;
  prometheus::Histogram* duration_;
  int source_ = 0;  // guarded by refresh_mutex()
};

TEST(ScrapedRegistryTest, RefreshesBeforeEveryCollection) {
  ExampleMetrics metrics;
  metrics.SetSource(7);
  EXPECT_THAT(metrics.Serialize(), HasSubstr("craft_test_value 7"));
  EXPECT_THAT(metrics.Serialize(), HasSubstr("craft_test_events_total 7"));
  metrics.SetSource(9);
  const std::string text = metrics.Serialize();
  EXPECT_THAT(text, HasSubstr("craft_test_value 9"));
  EXPECT_THAT(text, HasSubstr("craft_test_events_total 9"));
  EXPECT_THAT(text, HasSubstr("craft_test_layer_ratio{layer=\"2\"} 0.5"));
}

TEST(ScrapedRegistryTest, CountersNeverGoDown) {
  ExampleMetrics metrics;
  metrics.SetSource(5);
  metrics.Serialize();
  metrics.SetSource(3);
  EXPECT_THAT(metrics.Serialize(), HasSubstr("craft_test_events_total 5"));
}

TEST(ScrapedRegistryTest, PassesPromtool) {
  ExampleMetrics metrics;
  metrics.SetSource(1);
  metrics.duration().Observe(0.2);
  const absl::Status lint = testing::PromtoolCheckMetrics(metrics.Serialize());
  if (absl::IsNotFound(lint)) GTEST_SKIP() << lint.message();
  EXPECT_TRUE(lint.ok()) << lint;
}

TEST(PromtoolTest, FlagsBadNames) {
  const absl::Status lint = testing::PromtoolCheckMetrics(
      "# HELP requests A counter without _total.\n# TYPE requests counter\nrequests 1\n");
  if (absl::IsNotFound(lint)) GTEST_SKIP() << lint.message();
  EXPECT_FALSE(lint.ok());
}

// Sends GET /metrics to 127.0.0.1:port and returns the whole response.
std::string HttpGet(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    ::close(fd);
    return "";
  }
  const std::string request = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
  (void)::write(fd, request.data(), request.size());
  std::string response;
  char buffer[4096];
  ssize_t n = 0;
  while ((n = ::read(fd, buffer, sizeof(buffer))) > 0) response.append(buffer, n);
  ::close(fd);
  return response;
}

// One server per test process: stopping one takes ~2 s.
TEST(MetricsServerTest, ServesRegisteredCollectablesAndReportsItsPort) {
  absl::StatusOr<std::unique_ptr<MetricsServer>> server = MetricsServer::Start("127.0.0.1:0");
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_GT((*server)->port(), 0);
  EXPECT_EQ(ReadyFileLine(server->get()), absl::StrCat("metrics_port=", (*server)->port(), "\n"));
  EXPECT_EQ(ReadyFileLine(nullptr), "");
  auto metrics = std::make_shared<ExampleMetrics>();
  metrics->SetSource(42);
  (*server)->Register(metrics);
  const std::string response = HttpGet((*server)->port());
  EXPECT_THAT(response, HasSubstr("200 OK"));
  EXPECT_THAT(response, HasSubstr("craft_test_value 42"));
  // A second server cannot take the same port.
  EXPECT_FALSE(MetricsServer::Start(absl::StrCat("127.0.0.1:", (*server)->port())).ok());
}

}  // namespace
}  // namespace craft::metrics
