// Staging a prepared layout version on this GPU, without any gRPC: where every
// slot's weights come from (PlanStaging, a pure function), the StagingEngine
// seam that executes such a plan, and the expert-by-expert engine (Stager,
// with an injected ExpertStore and ExpertFetcher so that tests need no
// network). A backend whose transfers need both ends to take part at once
// (NCCL) brings its own engine (Backend::staging_engine()).
//
//   CRAFT_ASSIGN_OR_RETURN(StagePlan plan,
//                          PlanStaging(prepare, shape, serving_version, serving_layout));
//   Stager stager(backend->store(), backend->fetcher(), clock, {});
//   CRAFT_ASSIGN_OR_RETURN(StageResult result, stager.Execute(plan, deadline, cancelled));
//
// Every slot of this GPU in the new layout gets exactly one source, in this
// order of precedence (planner/transfer/stabilize.h counts moves the same way):
//  1. a Transfer of the Prepare with dst_gpu == this GPU and dst_slot == the
//     slot: fetched from src_gpu's endpoint, or copied locally when src_gpu
//     is this GPU;
//  2. unchanged: the serving layout has the same expert at the same local
//     index of this GPU in that layer: copied locally;
//  3. this GPU serves the expert in another slot of the layer: copied locally;
//  4. loaded from the model's checkpoint when the Prepare sets
//     load_missing_from_checkpoint (an agent resynchronising its worker);
//  5. otherwise the expert has no source and the prepare fails.
// Staging is a full bank (unchanged slots are copied too), so a flip swaps
// whole banks; a device backend may alias unchanged slots instead.
#ifndef CRAFT_GPU_WORKER_STAGER_H_
#define CRAFT_GPU_WORKER_STAGER_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "craft/v1/agent.pb.h"
#include "gpu_worker/backend.h"
#include "gpu_worker/local_layout.h"
#include "gpu_worker/worker_shape.h"
#include "planner/layout.h"

namespace craft::gpu_worker {

// Where one local slot of the staged version gets its weights.
struct SlotSource {
  enum class Kind {
    kKeep,        // same expert at the same local index in the serving bank
    kLocalCopy,   // another serving slot of this GPU holds the expert
    kFetch,       // a peer sends it
    kCheckpoint,  // loaded from the model's weights (Prepare.load_missing_from_checkpoint)
  };
  Kind kind = Kind::kKeep;
  int layer = 0;
  int slot = 0;  // local slot in the staged version
  int expert = 0;
  int serving_slot = -1;  // kKeep, kLocalCopy: local slot in the serving bank
  FetchRequest fetch;     // kFetch (its deadline is set when it runs)
  // kFetch: the index of its Transfer in Prepare.transfers.
  int transfer_index = -1;
};

// A transfer this GPU is the source of: a peer stages `expert` from serving
// slot `serving_slot` (local) of this GPU.
struct OutgoingTransfer {
  int transfer_index = 0;  // in Prepare.transfers
  int layer = 0;
  int expert = 0;
  int dst_gpu = 0;
  int serving_slot = 0;
};

struct StagePlan {
  std::string version;
  planner::Layout layout;           // the whole new layout: routing needs all of it
  LocalLayout local;                // this GPU's part
  std::vector<SlotSource> sources;  // one per local slot, in (layer, slot) order
  // To peers, in Prepare.transfers order: every Prepare lists a pair's
  // transfers in the planner's one order, so both ends of a pair see them in
  // the same order (what NCCL's in-order matching of sends to receives needs).
  std::vector<OutgoingTransfer> sends;
  // Prepare.transfer_group_id: the NCCL id of the cluster's transfer
  // communicator ("" when the planner knows none).
  std::string transfer_group_id;

  int CountOf(SlotSource::Kind kind) const;
};

// Checks `prepare` against this worker (`shape`) and what it serves, and
// picks every slot's source. INVALID_ARGUMENT, prefixed "prepare <version>: ",
// for: an empty or serving version, an invalid layout or one of another
// shape, another bytes_per_expert, a transfer of this GPU with a layer, GPU,
// expert or slot that does not match the layouts, two transfers into one
// slot, a local source in a version this GPU does not serve, a peer without
// an endpoint in Prepare.gpu_endpoints, or a slot without any source. A
// transfer whose source is this GPU is checked too (a peer would fail on it
// later), so a stale plan fails fast.
absl::StatusOr<StagePlan> PlanStaging(const craft::v1::Prepare& prepare, const WorkerShape& shape,
                                      const std::string& serving_version,
                                      const planner::Layout& serving);

struct StageResult {
  int64_t bytes_received = 0;  // from peers
  int64_t bytes_sent = 0;      // to peers, by this engine (0 where peers pull)
  int fetched = 0;
  int copied = 0;  // local copies, unchanged slots included
  int loaded = 0;  // from the checkpoint
  absl::Duration elapsed;
  // Parts of `elapsed`: moving the fetched bytes (device time for NCCL) and
  // checking checksums.
  absl::Duration transfer_time;
  absl::Duration verify_time;
};

// Executes a StagePlan on a backend: allocates staging for plan.local, fills
// every slot from its source, checks each slot's checksum against the store's
// ExpectedChecksum(layer, expert), and sends what peers stage from this GPU
// when the transport needs the sender's part. On success the version stays
// staged (the caller flips or drops it); on any error it is dropped. Errors:
// the store's (RESOURCE_EXHAUSTED when it does not fit), the transport's,
// DATA_LOSS for a checksum mismatch, DEADLINE_EXCEEDED past `deadline`,
// CANCELLED once `cancelled` is set; messages name what failed.
// Thread-compatible: one Execute at a time.
class StagingEngine {
 public:
  virtual ~StagingEngine() = default;
  virtual absl::StatusOr<StageResult> Execute(const StagePlan& plan, absl::Time deadline,
                                              const std::atomic<bool>& cancelled) = 0;
};

// The expert-by-expert engine: each fetched slot is pulled from its source's
// endpoint by the ExpertFetcher (the sender serves it on its own, so
// plan.sends needs nothing here). Thread-compatible: one Execute at a time
// per instance; the store and fetcher are shared and thread-safe.
class Stager : public StagingEngine {
 public:
  struct Options {
    // Deadline of one fetch (the whole prepare has its own).
    absl::Duration fetch_timeout = absl::Seconds(5);
  };

  // Does not take ownership; all must outlive the Stager.
  Stager(ExpertStore* store, ExpertFetcher* fetcher, Clock* clock, Options options);

  // StagingEngine. Cancellation is checked between slots and by the
  // fetcher; each error message names the slot, expert and source.
  absl::StatusOr<StageResult> Execute(const StagePlan& plan, absl::Time deadline,
                                      const std::atomic<bool>& cancelled) override;

 private:
  absl::Status FillSlot(const StagePlan& plan, const SlotSource& source, absl::Time deadline,
                        const std::atomic<bool>& cancelled, StageResult* result);
  absl::Status VerifySlot(const StagePlan& plan, const SlotSource& source) const;

  ExpertStore* const store_;
  ExpertFetcher* const fetcher_;
  Clock* const clock_;
  const Options options_;
};

// The engine a backend's versions are staged with: the backend's own
// (Backend::staging_engine(): transfers where both ends take part, NCCL) when
// it has one, else a Stager over its store and fetcher.
//
//   BackendStaging staging(backend, clock, {options.fetch_timeout});
//   staging.engine()->Execute(plan, deadline, cancelled);
//
// Thread-safety: as the engine's.
class BackendStaging {
 public:
  // `backend` and `clock` are not owned and must outlive this.
  BackendStaging(Backend* backend, Clock* clock, Stager::Options options);

  StagingEngine* engine() const { return engine_; }

 private:
  Stager expert_by_expert_;  // unless the backend has its own engine
  StagingEngine* const engine_;
};

}  // namespace craft::gpu_worker

#endif  // CRAFT_GPU_WORKER_STAGER_H_
