#include "common/metrics.h"

#include <prometheus/exposer.h>
#include <prometheus/text_serializer.h>

#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"

namespace craft::metrics {

std::vector<prometheus::MetricFamily> ScrapedRegistry::Collect() const {
  absl::MutexLock lock(&refresh_mu_);
  Refresh();
  return registry_.Collect();
}

std::string ScrapedRegistry::Serialize() const {
  return prometheus::TextSerializer().Serialize(Collect());
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& listen) {
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    exposer = std::make_unique<prometheus::Exposer>(listen, /*num_threads=*/2);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", listen, ": ", e.what()));
  }
  const std::vector<int> ports = exposer->GetListeningPorts();
  if (ports.empty()) return absl::UnavailableError(absl::StrCat("no metrics port on ", listen));
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(exposer), ports.front()));
}

MetricsServer::MetricsServer(std::unique_ptr<prometheus::Exposer> exposer, int port)
    : exposer_(std::move(exposer)), port_(port) {}

MetricsServer::~MetricsServer() = default;

void MetricsServer::Register(std::shared_ptr<prometheus::Collectable> collectable) {
  absl::MutexLock lock(&mu_);
  exposer_->RegisterCollectable(collectable);
  collectables_.push_back(std::move(collectable));
}

std::string ReadyFileLine(const MetricsServer* server) {
  return server == nullptr ? "" : absl::StrCat("metrics_port=", server->port(), "\n");
}

prometheus::Family<prometheus::Gauge>& GaugeFamily(prometheus::Registry& registry,
                                                   const std::string& name,
                                                   const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry);
}

prometheus::Family<prometheus::Counter>& CounterFamily(prometheus::Registry& registry,
                                                       const std::string& name,
                                                       const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry);
}

prometheus::Family<prometheus::Histogram>& HistogramFamily(prometheus::Registry& registry,
                                                           const std::string& name,
                                                           const std::string& help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(registry);
}

namespace {

template <typename T>
std::vector<T*> Indexed(prometheus::Family<T>& family, const std::string& label, int count,
                        const prometheus::Labels& base) {
  std::vector<T*> series;
  series.reserve(count);
  for (int i = 0; i < count; ++i) {
    prometheus::Labels labels = base;
    labels[label] = absl::StrCat(i);
    series.push_back(&family.Add(labels));
  }
  return series;
}

}  // namespace

std::vector<prometheus::Gauge*> IndexedGauges(prometheus::Family<prometheus::Gauge>& family,
                                              const std::string& label, int count,
                                              const prometheus::Labels& base) {
  return Indexed(family, label, count, base);
}

std::vector<prometheus::Counter*> IndexedCounters(prometheus::Family<prometheus::Counter>& family,
                                                  const std::string& label, int count,
                                                  const prometheus::Labels& base) {
  return Indexed(family, label, count, base);
}

void AdvanceTo(prometheus::Counter& counter, double total) {
  const double delta = total - counter.Value();
  if (delta > 0) counter.Increment(delta);
}

prometheus::Histogram::BucketBoundaries DurationBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
          1,     2.5,    5,     10,   25,    60,   120, 300,  600};
}

}  // namespace craft::metrics
