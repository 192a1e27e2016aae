#include "gpu_worker/worker_metrics.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "wire/version.h"

namespace craft::gpu_worker {
namespace {

using metrics::AdvanceTo;
using metrics::CounterFamily;
using metrics::GaugeFamily;

double Value(int64_t count) { return static_cast<double>(count); }

}  // namespace

WorkerMetrics::WorkerMetrics(int gpu, int64_t bytes_per_expert, int64_t capacity_bytes)
    : bytes_per_expert_(bytes_per_expert) {
  prometheus::Registry& r = registry();
  const prometheus::Labels on_gpu = {{"gpu", absl::StrCat(gpu)}};
  serving_epoch_ = &GaugeFamily(r, "craft_worker_serving_layout_epoch",
                                "Epoch part of the layout version this GPU serves (0: initial).")
                        .Add({});
  serving_seq_ = &GaugeFamily(r, "craft_worker_serving_layout_seq",
                              "Sequence part of the layout version this GPU serves.")
                      .Add({});
  serving_slots_ = &GaugeFamily(r, "craft_worker_expert_slots",
                                "Expert slots (experts and replicas) this GPU serves, summed "
                                "over layers.")
                        .Add(on_gpu);
  prometheus::Family<prometheus::Gauge>& memory =
      GaugeFamily(r, "craft_worker_expert_memory_bytes",
                  "Expert weight memory of this GPU: bank=serving (the serving layout) or "
                  "bank=staged (a prepared version waiting for commit).");
  prometheus::Labels serving = on_gpu, staged = on_gpu;
  serving["bank"] = "serving";
  staged["bank"] = "staged";
  serving_memory_ = &memory.Add(serving);
  staged_memory_ = &memory.Add(staged);
  GaugeFamily(r, "craft_worker_expert_memory_capacity_bytes",
              "Expert memory this GPU may use for serving plus staging (0: unlimited).")
      .Add(on_gpu)
      .Set(Value(capacity_bytes));
  tokens_ = &CounterFamily(r, "craft_worker_expert_tokens_total",
                           "Token-to-expert assignments this GPU computed (counted on its "
                           "slots, summed over layers).")
                 .Add(on_gpu);
  windows_reported_ = &CounterFamily(r, "craft_worker_load_windows_reported_total",
                                     "Load windows counted and sent to the agent.")
                           .Add({});
  windows_dropped_ = &CounterFamily(r, "craft_worker_load_windows_dropped_total",
                                    "Oldest load windows dropped while no agent stream was open.")
                          .Add({});
  agent_attached_ =
      &GaugeFamily(r, "craft_worker_agent_attached", "1 while the stream to the node agent is up.")
           .Add({});
  agent_reconnects_ = &CounterFamily(r, "craft_worker_agent_reconnects_total",
                                     "Agent streams opened after the first one.")
                           .Add({});
  prometheus::Family<prometheus::Counter>& prepares = CounterFamily(
      r, "craft_worker_prepares_total", "Prepares answered, by result (ready or failed).");
  prepares_ready_ = &prepares.Add({{"result", "ready"}});
  prepares_failed_ = &prepares.Add({{"result", "failed"}});
  fetched_bytes_ = &CounterFamily(r, "craft_worker_fetched_bytes_total",
                                  "Expert bytes received from peer GPUs while staging.")
                        .Add({});
  fetched_experts_ = &CounterFamily(r, "craft_worker_fetched_experts_total",
                                    "Experts received from peer GPUs while staging.")
                          .Add({});
  staging_seconds_ = &CounterFamily(r, "craft_worker_staging_seconds_total",
                                    "Time spent in finished stagings (fetch, copy, verify); "
                                    "fetched bytes / this = the transfer rate.")
                          .Add({});
  flips_ = &CounterFamily(r, "craft_worker_flips_total",
                          "Committed versions this GPU flipped to at a window boundary.")
                .Add({});
  drops_ =
      &CounterFamily(r, "craft_worker_staging_drops_total", "Staged versions dropped by an abort.")
           .Add({});
  windows_held_ = &CounterFamily(r, "craft_worker_windows_held_total",
                                 "Windows not served because this GPU was being brought to its "
                                 "node's committed layout (after a restart or a missed flip).")
                       .Add({});
}

void WorkerMetrics::Watch(const Worker* worker) {
  absl::MutexLock lock(&refresh_mutex());
  worker_ = worker;
}

void WorkerMetrics::Refresh() const {
  if (worker_ == nullptr) return;
  const Worker::Stats stats = worker_->stats();
  // Versions are not labels, but their numbers are gauges.
  const Version version = Version::Parse(stats.serving_version).value_or(Version::Initial());
  serving_epoch_->Set(Value(version.epoch()));
  serving_seq_->Set(Value(version.seq()));
  serving_slots_->Set(Value(stats.serving_slots));
  serving_memory_->Set(Value(stats.serving_slots * bytes_per_expert_));
  staged_memory_->Set(Value(stats.staged_slots * bytes_per_expert_));
  AdvanceTo(*tokens_, Value(stats.assignments));
  AdvanceTo(*windows_reported_, Value(stats.windows_reported));
  AdvanceTo(*windows_dropped_, Value(stats.link.windows_dropped));
  agent_attached_->Set(stats.link.attached ? 1 : 0);
  AdvanceTo(*agent_reconnects_, Value(std::max<int64_t>(stats.link.attaches - 1, 0)));
  AdvanceTo(*prepares_ready_, Value(stats.prepares_ready));
  AdvanceTo(*prepares_failed_, Value(stats.prepares_failed));
  AdvanceTo(*fetched_bytes_, Value(stats.fetched_bytes));
  AdvanceTo(*fetched_experts_, Value(stats.fetched_experts));
  AdvanceTo(*staging_seconds_, stats.staging_seconds);
  AdvanceTo(*flips_, Value(stats.flips));
  AdvanceTo(*drops_, Value(stats.drops));
  AdvanceTo(*windows_held_, Value(stats.windows_held));
}

}  // namespace craft::gpu_worker
