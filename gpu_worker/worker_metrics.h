// craft-worker's Prometheus metrics, read from Worker::stats() at every
// scrape: the serving layout version, token load, expert memory, staging
// (prepares, bytes fetched from peers, time), flips and the agent stream. One
// worker is one GPU and its own scrape target; `gpu` (its global rank) labels
// the per-GPU series so that dashboards can sum or compare GPUs.
//
//   auto metrics = std::make_shared<WorkerMetrics>(shape.gpu, shape.bytes_per_expert,
//                                                  memory_bytes);
//   metrics->Watch(worker.get());
//   metrics_server->Register(metrics);
//   ...
//   metrics->Watch(nullptr);  // before the worker is destroyed
//
// Thread-safety: thread-safe.
#ifndef CRAFT_GPU_WORKER_WORKER_METRICS_H_
#define CRAFT_GPU_WORKER_WORKER_METRICS_H_

#include <cstdint>

#include "common/metrics.h"
#include "gpu_worker/worker.h"

namespace craft::gpu_worker {

class WorkerMetrics final : public metrics::ScrapedRegistry {
 public:
  // `capacity_bytes`: the GPU's expert memory (0: unlimited).
  WorkerMetrics(int gpu, int64_t bytes_per_expert, int64_t capacity_bytes);

  // Where values come from; null detaches (waiting for a scrape in
  // progress). `worker` must stay valid until detached.
  void Watch(const Worker* worker);

 private:
  void Refresh() const override;

  const int64_t bytes_per_expert_;
  const Worker* worker_ = nullptr;  // guarded by refresh_mutex()

  prometheus::Gauge* serving_epoch_;
  prometheus::Gauge* serving_seq_;
  prometheus::Gauge* serving_slots_;
  prometheus::Gauge* serving_memory_;
  prometheus::Gauge* staged_memory_;
  prometheus::Counter* tokens_;
  prometheus::Counter* windows_reported_;
  prometheus::Counter* windows_dropped_;
  prometheus::Gauge* agent_attached_;
  prometheus::Counter* agent_reconnects_;
  prometheus::Counter* prepares_ready_;
  prometheus::Counter* prepares_failed_;
  prometheus::Counter* fetched_bytes_;
  prometheus::Counter* fetched_experts_;
  prometheus::Counter* staging_seconds_;
  prometheus::Counter* flips_;
  prometheus::Counter* drops_;
  prometheus::Counter* windows_held_;
};

}  // namespace craft::gpu_worker

#endif  // CRAFT_GPU_WORKER_WORKER_METRICS_H_
