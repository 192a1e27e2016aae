// The seam between the worker's control logic and the device it drives.
//
// A backend provides three things, each an interface so that the CPU backend
// (host memory, gRPC transfers; cpu_backend.h) and a CUDA/NCCL backend can be
// swapped without touching the worker:
//
//  - ExpertStore: the expert slot buffers of this GPU. One *serving* bank for
//    the committed layout version and at most one *staging* bank for a
//    prepared version. Flip() makes staging serve and frees the old bank;
//    DropStaging() discards staging.
//  - LoadCounter: tokens received per local slot per layer in one window,
//    from the router's top-k expert ids: it routes every choice to a replica
//    (replica_choice.h, the same rule on every backend) and counts those that
//    land on this GPU (on a GPU: a histogram kernel over log2phy).
//  - ExpertFetcher: copies one expert's bytes from a peer GPU into a staging
//    slot.
//  - StagingEngine (optional, stager.h): a backend that moves a prepared
//    version's weights in one batch, with both ends of every transfer taking
//    part (NCCL), provides its own; the others are staged expert by expert
//    with their fetcher.
//
// Slot indices: stores and counters index a GPU's own slots locally (0 .. n-1
// per layer); the wire and planner::Layout use global slot indices.
// LocalLayout (local_layout.h) converts.
#ifndef CRAFT_GPU_WORKER_BACKEND_H_
#define CRAFT_GPU_WORKER_BACKEND_H_

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "gpu_worker/local_layout.h"
#include "gpu_worker/routing.h"

namespace craft::gpu_worker {

// Thread-safe: every method may be called from any thread (the transfer
// server reads while the stager writes staging and the window loop flips).
// Operations on staging name the staged version, so a late write from an
// abandoned prepare cannot land in a newer one.
class ExpertStore {
 public:
  virtual ~ExpertStore() = default;

  virtual int64_t bytes_per_expert() const = 0;
  // Memory this store may use for serving plus staging (0 = unlimited).
  virtual int64_t capacity_bytes() const = 0;
  // Bytes of arriving experts (fetched or loaded) a staging can take now:
  // capacity minus the serving layout; kept and locally copied slots share
  // the serving buffers and need none. nullopt when unlimited. What the
  // planner sizes an apply by (WorkerHello.staging_headroom_bytes).
  virtual std::optional<int64_t> staging_headroom_bytes() const = 0;
  virtual std::string serving_version() const = 0;
  // "" when nothing is staged.
  virtual std::string staging_version() const = 0;

  // Replaces the serving bank with `layout`'s slots filled with their
  // experts' weights (as loading the checkpoint does) and drops staging.
  virtual absl::Status LoadServing(const LocalLayout& layout) = 0;

  // Allocates a staging bank (contents unspecified) for `layout`, replacing
  // any staged version. INVALID_ARGUMENT when `layout` has the serving
  // version or another layer count. Arrivals that do not fit the headroom
  // are RESOURCE_EXHAUSTED when they are written.
  virtual absl::Status BeginStaging(const LocalLayout& layout) = 0;
  // Writes `data` at byte `offset` of staging slot (layer, slot).
  // FAILED_PRECONDITION when `version` is not the staged one; OUT_OF_RANGE
  // for a slot or byte range outside the bank.
  virtual absl::Status WriteStaging(absl::string_view version, int layer, int slot, int64_t offset,
                                    absl::string_view data) = 0;
  // Copies serving slot (layer, serving_slot) into staging slot (layer,
  // staging_slot): a device-local copy. Errors as WriteStaging.
  virtual absl::Status CopyToStaging(absl::string_view version, int layer, int serving_slot,
                                     int staging_slot) = 0;
  // Fills staging slot (layer, slot) with `expert`'s weights from the model's
  // checkpoint, as LoadServing does: how a worker that lost its weights (a
  // restart) is resynchronised without a peer. Errors as WriteStaging.
  virtual absl::Status LoadToStaging(absl::string_view version, int layer, int slot,
                                     int expert) = 0;
  // Makes staged `version` serve and frees the old serving bank.
  // FAILED_PRECONDITION when `version` is not staged.
  virtual absl::Status Flip(absl::string_view version) = 0;
  // Frees staged `version`. FAILED_PRECONDITION when it is not staged.
  virtual absl::Status DropStaging(absl::string_view version) = 0;

  // The bytes of `expert` in global slot `global_slot` of `layer` in the
  // serving `version`: what a peer fetches. NOT_FOUND when `version` is not
  // the serving one or the slot is not on this GPU, FAILED_PRECONDITION when
  // the slot holds another expert (LocalLayout::Resolve).
  virtual absl::StatusOr<std::string> ReadServingExpert(absl::string_view version, int layer,
                                                        int global_slot, int expert) const = 0;
  // Checksum of local slot (layer, slot) of `version`, serving or staged.
  // NOT_FOUND for another version, OUT_OF_RANGE for a bad slot.
  virtual absl::StatusOr<uint64_t> SlotChecksum(absl::string_view version, int layer,
                                                int slot) const = 0;
  // What SlotChecksum reports for a slot holding expert (layer, expert)'s
  // true weights. The backend defines the weights' contents and the checksum
  // (the CPU backend: expert_weights.h, FNV-1a-64 as on the wire), so the
  // stager and the self-check compare like with like on any device.
  virtual uint64_t ExpectedChecksum(int layer, int expert) const = 0;
};

// FAILED_PRECONDITION unless `version` is the staged one (`staged`; "" when
// nothing is staged): what ExpertStore's staging operations answer.
absl::Status CheckStaged(absl::string_view version, absl::string_view staged);

// Thread-compatible: one window at a time, from one thread (the window loop).
class LoadCounter {
 public:
  virtual ~LoadCounter() = default;

  // Starts window `window_id` counting for `mine`'s slots (counts start at
  // zero). Choices are routed with `routing`, the whole layout of
  // mine.version; both must stay alive until EndWindow. INVALID_ARGUMENT
  // when their layer counts differ.
  virtual absl::Status BeginWindow(int64_t window_id, const LocalLayout& mine,
                                   const RoutingTable& routing) = 0;
  // Routes and counts the router choices of `layer`: entry t * top_k + k is
  // the expert token t ranked k-th. Choices routed to other GPUs' slots are
  // not counted (those GPUs count them); ids outside [0, num_experts) are
  // padding and skipped. OUT_OF_RANGE for a bad layer, INVALID_ARGUMENT when
  // the entries are not a multiple of top_k, FAILED_PRECONDITION outside a
  // window.
  virtual absl::Status Count(int layer, absl::Span<const int32_t> topk_ids, int top_k) = 0;
  // Ends the window: [layer][local slot] token counts. A device error is
  // returned (the window's counts are lost).
  virtual absl::StatusOr<std::vector<std::vector<int64_t>>> EndWindow() = 0;
};

// The argument checks every LoadCounter makes: BeginWindow's, and Count's
// for a window of `num_layers` layers (after FAILED_PRECONDITION outside one).
absl::Status CheckWindowLayouts(const LocalLayout& mine, const RoutingTable& routing);
absl::Status CheckRouterChoices(int layer, int num_layers, absl::Span<const int32_t> topk_ids,
                                int top_k);

// One expert to copy from a peer into staging.
struct FetchRequest {
  int layer = 0;
  int expert = 0;
  // Source: a slot of the layout the peer serves.
  int src_gpu = 0;
  std::string src_endpoint;
  std::string src_node;  // the name its certificate carries (Prepare.gpu_nodes)
  std::string src_version;
  int src_slot = 0;  // global slot index in src_version
  // Destination: a local slot of the staged version, on GPU dst_gpu (us).
  int dst_gpu = 0;
  std::string dst_version;
  int dst_slot = 0;
  absl::Time deadline = absl::InfiniteFuture();
};

// Thread-safe.
class ExpertFetcher {
 public:
  virtual ~ExpertFetcher() = default;

  // Copies the expert's bytes into `store`'s staging slot and returns the
  // bytes received. Checks the transport (length, the sender's checksum over
  // what arrived); whether the bytes are the right expert's weights is the
  // caller's check. Gives up at `request.deadline` (DEADLINE_EXCEEDED) or
  // soon after `*cancelled` turns true (CANCELLED).
  virtual absl::StatusOr<int64_t> Fetch(const FetchRequest& request, ExpertStore* store,
                                        const std::atomic<bool>* cancelled) = 0;
};

class StagingEngine;  // stager.h

// A device backend: owns its store, counter and fetcher.
class Backend {
 public:
  virtual ~Backend() = default;

  virtual absl::string_view name() const = 0;
  virtual ExpertStore* store() = 0;
  virtual LoadCounter* counter() = 0;
  virtual ExpertFetcher* fetcher() = 0;
  // The backend's own staging, or nullptr: the worker then stages expert by
  // expert through fetcher() (stager.h's Stager).
  virtual StagingEngine* staging_engine() { return nullptr; }
  // WorkerHello.transfer_group_id: the id of the weight-transfer group this
  // worker creates, non-empty only on global rank 0 of a backend that moves
  // weights with NCCL. A new one once the group was aborted (an id serves one
  // communicator). Thread-safe.
  virtual std::string transfer_group_id() { return ""; }
};

}  // namespace craft::gpu_worker

#endif  // CRAFT_GPU_WORKER_BACKEND_H_
