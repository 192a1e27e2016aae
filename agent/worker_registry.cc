#include "agent/worker_registry.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "planner/initial_layout.h"

namespace craft::agent {
namespace {

constexpr size_t kMaxStringField = 256;
// A version, as the planner takes it in an AgentHello (server's
// kMaxVersionBytes): a longer one here would get every hello of this node
// refused, the worker's own GPU info being kept after it detaches.
constexpr size_t kMaxVersionBytes = 128;

absl::Status CheckField(const char* name, int worker_value, int configured, const char* flag) {
  if (configured != 0 && worker_value != configured) {
    return absl::InvalidArgumentError(absl::StrCat("worker model ", name, "=", worker_value,
                                                   " does not match --", flag, "=", configured));
  }
  return absl::OkStatus();
}

}  // namespace

std::string NormalizeVersion(const std::string& version) {
  return version.empty() ? std::string(planner::kInitialLayoutVersion) : version;
}

WorkerRegistry::WorkerRegistry(std::vector<int> gpus, ModelCheck check)
    : gpus_(std::move(gpus)), check_(check) {}

bool WorkerRegistry::IsConfigured(int gpu) const {
  return std::binary_search(gpus_.begin(), gpus_.end(), gpu);
}

absl::Status WorkerRegistry::CheckModel(const craft::v1::ModelShape& model) const {
  if (model.num_layers() <= 0 || model.num_experts() <= 0 || model.top_k() <= 0 ||
      model.top_k() > model.num_experts() || model.bytes_per_expert() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid worker model: num_layers=", model.num_layers(),
        " num_experts=", model.num_experts(), " top_k=", model.top_k(), " bytes_per_expert=",
        model.bytes_per_expert(), " (need positive counts and 1 <= top_k <= num_experts)"));
  }
  if (absl::Status s =
          CheckField("num_layers", model.num_layers(), check_.num_layers, "num_layers");
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CheckField("num_experts", model.num_experts(), check_.num_experts, "num_experts");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckField("top_k", model.top_k(), check_.top_k, "top_k"); !s.ok()) {
    return s;
  }
  if (model_.has_value() &&
      (model.num_layers() != model_->num_layers() || model.num_experts() != model_->num_experts() ||
       model.top_k() != model_->top_k() ||
       model.bytes_per_expert() != model_->bytes_per_expert())) {
    return absl::InvalidArgumentError(absl::StrCat("worker model (", model.ShortDebugString(),
                                                   ") differs from this node's (",
                                                   model_->ShortDebugString(), ")"));
  }
  return absl::OkStatus();
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
  if (hello.transfer_endpoint().size() > kMaxStringField ||
      hello.committed_version().size() > kMaxVersionBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gpu ", gpu, ": transfer_endpoint longer than ", kMaxStringField,
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
  if (absl::Status s = CheckModel(hello.model()); !s.ok()) {
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
  if (!model_.has_value()) model_ = hello.model();
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
  entry.committed_version = NormalizeVersion(hello.committed_version());
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

std::optional<craft::v1::ModelShape> WorkerRegistry::model() const {
  if (model_.has_value()) return model_;
  if (check_.num_layers == 0 && check_.num_experts == 0 && check_.top_k == 0) return std::nullopt;
  craft::v1::ModelShape shape;
  shape.set_num_layers(check_.num_layers);
  shape.set_num_experts(check_.num_experts);
  shape.set_top_k(check_.top_k);
  return shape;
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
