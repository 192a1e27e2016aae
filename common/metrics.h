// Prometheus metrics shared by craft-planner, craft-agent and craft-worker
// (prometheus-cpp 1.0.1): a registry refreshed at scrape time, the HTTP
// endpoint, and small helpers. Only the files that export metrics include
// this header, so the prometheus headers stay out of the rest of the build.
//
//   class NodeMetrics : public metrics::ScrapedRegistry {
//     void Refresh() const override { connected_->Set(source_->connected()); }
//   };
//   auto metrics = std::make_shared<NodeMetrics>(...);
//   CRAFT_ASSIGN_OR_RETURN(auto server, metrics::MetricsServer::Start("0.0.0.0:9464"));
//   server->Register(metrics);                 // GET http://host:port/metrics
//   std::string text = metrics->Serialize();   // what a scrape returns (tests)
//
// Naming (https://prometheus.io/docs/practices/naming/): the prefix
// craft_planner_, craft_agent_ or craft_worker_; base units (_seconds,
// _bytes, ratios in [0, 1]); counters end in _total. Labels take bounded
// values only (layer, GPU index, enumerated reasons); versions and node names
// are never labels.
#ifndef CRAFT_COMMON_METRICS_H_
#define CRAFT_COMMON_METRICS_H_

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace prometheus {
class Exposer;
}  // namespace prometheus

namespace craft::metrics {

// A registry whose values are brought up to date right before every
// collection: subclasses register their families in the constructor and set
// scrape-time values in Refresh(). Event-driven metrics (histograms) are
// updated directly; prometheus-cpp metrics are thread-safe.
//
// Thread-safety: Collect and Serialize are thread-safe; Refresh runs with
// refresh_mutex() held, which subclasses also use to guard what Refresh reads
// (so detaching a source waits for a scrape in progress).
class ScrapedRegistry : public prometheus::Collectable {
 public:
  ScrapedRegistry(const ScrapedRegistry&) = delete;
  ScrapedRegistry& operator=(const ScrapedRegistry&) = delete;

  std::vector<prometheus::MetricFamily> Collect() const final;
  // The text exposition format of Collect(): what GET /metrics returns.
  std::string Serialize() const;

 protected:
  ScrapedRegistry() = default;

  prometheus::Registry& registry() { return registry_; }
  absl::Mutex& refresh_mutex() const { return refresh_mu_; }
  // Called with refresh_mutex() held.
  virtual void Refresh() const {}

 private:
  mutable absl::Mutex refresh_mu_;
  prometheus::Registry registry_;
};

// GET /metrics over HTTP (civetweb inside prometheus::Exposer).
// Thread-safety: Register is thread-safe.
class MetricsServer {
 public:
  // Listens on `listen` ("host:port"; port 0 picks a free one). UNAVAILABLE
  // when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& listen);
  ~MetricsServer();  // stops serving (takes up to ~2 s: civetweb's poll quantum)

  // Serves `collectable` on /metrics; kept alive until the server stops.
  void Register(std::shared_ptr<prometheus::Collectable> collectable);
  int port() const { return port_; }

 private:
  MetricsServer(std::unique_ptr<prometheus::Exposer> exposer, int port);

  std::unique_ptr<prometheus::Exposer> exposer_;
  const int port_;
  absl::Mutex mu_;
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_ ABSL_GUARDED_BY(mu_);
};

// The ready-file line that tells tests the metrics port: "metrics_port=P\n",
// or "" when `server` is null (metrics disabled).
std::string ReadyFileLine(const MetricsServer* server);

// ---- Helpers for building metrics.

prometheus::Family<prometheus::Gauge>& GaugeFamily(prometheus::Registry& registry,
                                                   const std::string& name,
                                                   const std::string& help);
prometheus::Family<prometheus::Counter>& CounterFamily(prometheus::Registry& registry,
                                                       const std::string& name,
                                                       const std::string& help);
prometheus::Family<prometheus::Histogram>& HistogramFamily(prometheus::Registry& registry,
                                                           const std::string& name,
                                                           const std::string& help);

// One series per index 0 .. count-1 (a layer, a GPU), labelled `label`,
// plus the labels in `base`.
std::vector<prometheus::Gauge*> IndexedGauges(prometheus::Family<prometheus::Gauge>& family,
                                              const std::string& label, int count,
                                              const prometheus::Labels& base = {});
std::vector<prometheus::Counter*> IndexedCounters(prometheus::Family<prometheus::Counter>& family,
                                                  const std::string& label, int count,
                                                  const prometheus::Labels& base = {});

// Moves a counter that mirrors a monotonic total kept elsewhere up to
// `total` (never down: a counter only increases).
void AdvanceTo(prometheus::Counter& counter, double total);

// Bucket boundaries in seconds from 1 ms to 10 min, roughly x2.5 apart.
prometheus::Histogram::BucketBoundaries DurationBuckets();

}  // namespace craft::metrics

#endif  // CRAFT_COMMON_METRICS_H_
