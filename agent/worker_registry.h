// Which of the node's GPUs have a worker attached and what each worker told
// the agent in its WorkerHello. It validates what workers send about
// themselves (untrusted input: clear errors, no crash) against the node's
// model shape, which it is told (NodeModel: from the agent's flags or the
// planner, never from a worker).
//
// Not thread-safe: NodeState owns it and guards it with its lock; ApplyRelay
// attaches and detaches workers, LoadForwarder checks their window ids.
#ifndef CRAFT_AGENT_WORKER_REGISTRY_H_
#define CRAFT_AGENT_WORKER_REGISTRY_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "agent/channels.h"
#include "agent/node_model.h"
#include "craft/v1/agent.pb.h"
#include "craft/v1/layout.pb.h"
#include "craft/v1/worker.pb.h"
#include "wire/limits.h"

namespace craft::agent {

class WorkerRegistry {
 public:
  // `gpus`: the node's global ranks, sorted, unique, non-negative.
  explicit WorkerRegistry(std::vector<int> gpus);

  // Sets the node's model shape (nullopt: not known yet). Returns the
  // attached GPUs whose worker's model does not fit it: the caller ends
  // their streams.
  std::vector<int> SetModel(std::optional<craft::v1::ModelShape> model);

  // Registers the worker of `hello.gpu()` with `channel`:
  //   INVALID_ARGUMENT  the GPU is not one of the node's, or the model shape
  //                     is invalid or differs from the node's
  //   UNAVAILABLE       the node's model shape is not known yet (the worker
  //                     retries; the planner's Welcome tells the agent)
  //   ALREADY_EXISTS    a worker is attached for that GPU: a second claim is
  //                     refused while the first worker's stream lasts
  //   INVALID_ARGUMENT  also for bad content: negative memory, oversize
  //                     strings, a transfer_group_id neither empty nor
  //                     kTransferGroupIdBytes long
  absl::Status Attach(const craft::v1::WorkerHello& hello, WorkerChannel* channel);
  // A further hello on the attached stream `channel` of `hello.gpu()`: its
  // memory, endpoint, serving version and transfer_group_id replace the
  // recorded ones (a worker announces a new weight-transfer group this way).
  //   FAILED_PRECONDITION  `hello.gpu()` is not attached with `channel`
  //   INVALID_ARGUMENT     bad content, as for Attach; nothing changes
  absl::Status Update(const craft::v1::WorkerHello& hello, WorkerChannel* channel);
  // Records that `gpu`'s worker now serves `version` (after it flipped).
  void SetServing(int gpu, const std::string& version);
  // Unregisters `gpu` if it is attached with `channel`; false otherwise (a
  // refused or already detached stream).
  bool Detach(int gpu, WorkerChannel* channel);

  // Windows must carry the stream's GPU and strictly increasing ids (a repeat
  // would count the same tokens twice). INVALID_ARGUMENT otherwise.
  absl::Status CheckWindowId(int gpu, const craft::v1::GpuWindow& window);

  const std::vector<int>& gpus() const { return gpus_; }
  bool IsConfigured(int gpu) const;
  // nullptr when no worker is attached for `gpu`.
  WorkerChannel* channel(int gpu) const;
  // The version the worker of `gpu` serves (normalised); "" when not attached.
  std::string ServingVersion(int gpu) const;
  std::vector<int> AttachedGpus() const;
  std::vector<int> MissingGpus() const;
  bool AllAttached() const { return attached_.size() == gpus_.size(); }

  // Every configured GPU, with memory, endpoint and transfer group id from
  // its latest hello (kept after a detach; empty for a GPU never seen).
  std::vector<craft::v1::GpuInfo> GpuInfos() const;
  // Whether a worker of `gpu` ever sent a hello (GpuInfos has its info).
  bool HasInfo(int gpu) const { return infos_.count(gpu) > 0; }
  // The node's model shape, as SetModel set it.
  const std::optional<craft::v1::ModelShape>& model() const { return model_; }
  // The version every attached worker serves (normalised), when they agree
  // and at least one is attached; "" otherwise.
  std::string CommonWorkerVersion() const;

 private:
  struct Attached {
    WorkerChannel* channel = nullptr;
    std::string committed_version;  // normalised
    int64_t last_window_id = -1;
    bool seen_window = false;
    craft::v1::ModelShape model;  // as its hello said
  };

  // The hello's own content (not whether its GPU may attach).
  absl::Status CheckHello(const craft::v1::WorkerHello& hello) const;
  // Records a checked hello of an attached GPU.
  void Record(const craft::v1::WorkerHello& hello, Attached& entry);

  const std::vector<int> gpus_;
  std::optional<craft::v1::ModelShape> model_;  // the node's
  std::map<int, Attached> attached_;
  std::map<int, craft::v1::GpuInfo> infos_;  // latest hello per GPU
};

}  // namespace craft::agent

#endif  // CRAFT_AGENT_WORKER_REGISTRY_H_
