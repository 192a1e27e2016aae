#include "agent/worker_registry.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "wire/version.h"

namespace craft::agent {

WorkerRegistry::WorkerRegistry(std::vector<int> gpus) : gpus_(std::move(gpus)) {}

bool WorkerRegistry::IsConfigured(int gpu) const {
  return std::binary_search(gpus_.begin(), gpus_.end(), gpu);
}

std::vector<int> WorkerRegistry::SetModel(std::optional<craft::v1::ModelShape> model) {
  model_ = std::move(model);
  std::vector<int> misfits;
  for (const auto& [gpu, entry] : attached_) {
    if (!model_.has_value() || !CheckWorkerModel(entry.model, *model_).ok()) {
      misfits.push_back(gpu);
    }
  }
  return misfits;
}

absl::Status WorkerRegistry::CheckHello(const craft::v1::WorkerHello& hello) const {
  const int gpu = hello.gpu();
  if (hello.memory_bytes() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("gpu ", gpu, ": negative memory_bytes ", hello.memory_bytes()));
  }
  if (hello.has_staging_headroom_bytes() && hello.staging_headroom_bytes() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gpu ", gpu, ": negative staging_headroom_bytes ", hello.staging_headroom_bytes()));
  }
  if (hello.transfer_endpoint().size() > kMaxEndpointBytes ||
      hello.committed_version().size() > kMaxVersionBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("gpu ", gpu, ": transfer_endpoint longer than ", kMaxEndpointBytes,
                     " bytes or committed_version longer than ", kMaxVersionBytes, " bytes"));
  }
  // Every rank hands the id to ncclCommInitRank as an ncclUniqueId: any other
  // size would fail there, on every GPU of the cluster, far from its cause.
  if (!hello.transfer_group_id().empty() &&
      hello.transfer_group_id().size() != kTransferGroupIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gpu ", gpu, ": transfer_group_id has ", hello.transfer_group_id().size(),
        " bytes; it must be empty or an ncclUniqueId of exactly ", kTransferGroupIdBytes));
  }
  if (!model_.has_value()) {
    // Not the worker's fault, and it retries: the planner's Welcome (or the
    // flags of a restarted agent) will say what the node runs.
    return absl::UnavailableError(absl::StrCat(
        "gpu ", gpu,
        ": this node does not know its model shape yet (no --num_layers/--num_experts, none "
        "from the planner so far); retry"));
  }
  if (absl::Status s = CheckWorkerModel(hello.model(), *model_); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("gpu ", gpu, ": ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status WorkerRegistry::Attach(const craft::v1::WorkerHello& hello, WorkerChannel* channel) {
  const int gpu = hello.gpu();
  if (!IsConfigured(gpu)) {
    return absl::InvalidArgumentError(absl::StrCat("gpu ", gpu, " is not one of this node's GPUs (",
                                                   absl::StrJoin(gpus_, ","), ")"));
  }
  if (attached_.count(gpu) > 0) {
    return absl::AlreadyExistsError(absl::StrCat("a worker for gpu ", gpu, " is already attached"));
  }
  if (absl::Status s = CheckHello(hello); !s.ok()) return s;
  Attached& entry = attached_[gpu];
  entry.channel = channel;
  Record(hello, entry);
  return absl::OkStatus();
}

absl::Status WorkerRegistry::Update(const craft::v1::WorkerHello& hello, WorkerChannel* channel) {
  const int gpu = hello.gpu();
  auto it = attached_.find(gpu);
  if (it == attached_.end() || it->second.channel != channel) {
    return absl::FailedPreconditionError(
        absl::StrCat("gpu ", gpu, " is not attached on this stream"));
  }
  if (absl::Status s = CheckHello(hello); !s.ok()) return s;
  Record(hello, it->second);
  return absl::OkStatus();
}

void WorkerRegistry::Record(const craft::v1::WorkerHello& hello, Attached& entry) {
  entry.committed_version = VersionOrInitial(hello.committed_version());
  entry.model = hello.model();
  craft::v1::GpuInfo& info = infos_[hello.gpu()];
  info.set_rank(hello.gpu());
  info.set_memory_bytes(hello.memory_bytes());
  info.set_transfer_endpoint(hello.transfer_endpoint());
  info.set_serving_version(entry.committed_version);
  info.set_transfer_group_id(hello.transfer_group_id());
  if (hello.has_staging_headroom_bytes()) {
    info.set_staging_headroom_bytes(hello.staging_headroom_bytes());
  } else {
    info.clear_staging_headroom_bytes();
  }
}

void WorkerRegistry::SetServing(int gpu, const std::string& version) {
  auto attached = attached_.find(gpu);
  if (attached != attached_.end()) attached->second.committed_version = version;
  auto info = infos_.find(gpu);
  if (info != infos_.end()) info->second.set_serving_version(version);
}

bool WorkerRegistry::Detach(int gpu, WorkerChannel* channel) {
  auto it = attached_.find(gpu);
  if (it == attached_.end() || it->second.channel != channel) return false;
  attached_.erase(it);
  return true;
}

absl::Status WorkerRegistry::CheckWindowId(int gpu, const craft::v1::GpuWindow& window) {
  if (window.gpu() != gpu) {
    return absl::InvalidArgumentError(
        absl::StrCat("window for gpu ", window.gpu(), " on the stream of gpu ", gpu));
  }
  auto it = attached_.find(gpu);
  if (it == attached_.end()) {
    return absl::FailedPreconditionError(absl::StrCat("gpu ", gpu, " is not attached"));
  }
  Attached& entry = it->second;
  if (entry.seen_window && window.window_id() <= entry.last_window_id) {
    return absl::InvalidArgumentError(absl::StrCat("gpu ", gpu, ": window_id ", window.window_id(),
                                                   " is not above the previous ",
                                                   entry.last_window_id));
  }
  entry.seen_window = true;
  entry.last_window_id = window.window_id();
  return absl::OkStatus();
}

WorkerChannel* WorkerRegistry::channel(int gpu) const {
  auto it = attached_.find(gpu);
  return it == attached_.end() ? nullptr : it->second.channel;
}

std::string WorkerRegistry::ServingVersion(int gpu) const {
  auto it = attached_.find(gpu);
  return it == attached_.end() ? "" : it->second.committed_version;
}

std::vector<int> WorkerRegistry::AttachedGpus() const {
  std::vector<int> gpus;
  for (const auto& [gpu, entry] : attached_) gpus.push_back(gpu);
  return gpus;
}

std::vector<int> WorkerRegistry::MissingGpus() const {
  std::vector<int> missing;
  for (int gpu : gpus_) {
    if (attached_.count(gpu) == 0) missing.push_back(gpu);
  }
  return missing;
}

std::vector<craft::v1::GpuInfo> WorkerRegistry::GpuInfos() const {
  std::vector<craft::v1::GpuInfo> infos;
  for (int gpu : gpus_) {
    auto it = infos_.find(gpu);
    if (it != infos_.end()) {
      infos.push_back(it->second);
    } else {
      infos.emplace_back().set_rank(gpu);
    }
  }
  return infos;
}

std::string WorkerRegistry::CommonWorkerVersion() const {
  std::string common;
  for (const auto& [gpu, entry] : attached_) {
    if (common.empty()) {
      common = entry.committed_version;
    } else if (entry.committed_version != common) {
      return "";
    }
  }
  return common;
}

}  // namespace craft::agent
