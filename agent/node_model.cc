#include "agent/node_model.h"

#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace craft::agent {
namespace {

// The fields of `b` that contradict `a`'s, where both set them; "" if none.
std::string Contradictions(const craft::v1::ModelShape& a, const craft::v1::ModelShape& b) {
  std::string fields;
  auto check = [&](const char* name, int64_t x, int64_t y) {
    if (x > 0 && y > 0 && x != y) {
      absl::StrAppend(&fields, fields.empty() ? "" : ", ", name, " ", y, " (not ", x, ")");
    }
  };
  check("num_layers", a.num_layers(), b.num_layers());
  check("num_experts", a.num_experts(), b.num_experts());
  check("top_k", a.top_k(), b.top_k());
  check("bytes_per_expert", a.bytes_per_expert(), b.bytes_per_expert());
  return fields;
}

absl::Status ValidatePlannerShape(const craft::v1::ModelShape& shape) {
  if (shape.num_layers() <= 0 || shape.num_experts() <= 0 || shape.top_k() < 0 ||
      shape.top_k() > shape.num_experts() || shape.bytes_per_expert() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the planner's model (", shape.ShortDebugString(),
                     ") is malformed: it needs positive layer and expert counts, 0 <= top_k <= "
                     "num_experts and non-negative bytes_per_expert"));
  }
  return absl::OkStatus();
}

}  // namespace

NodeModel::NodeModel(ModelCheck flags, std::optional<craft::v1::ModelShape> persisted)
    : configured_(flags) {
  if (!persisted.has_value()) return;
  if (absl::Status s = ValidatePlannerShape(*persisted); !s.ok()) {
    CRAFT_LOG(WARNING) << "ignoring the persisted model: " << s.message();
    return;
  }
  if (const std::string fields = Contradictions(configured(), *persisted); !fields.empty()) {
    CRAFT_LOG(WARNING) << "ignoring the persisted model of an earlier planner: " << fields
                       << " contradicts this agent's flags";
    return;
  }
  planner_ = std::move(persisted);
}

craft::v1::ModelShape NodeModel::configured() const {
  craft::v1::ModelShape shape;
  shape.set_num_layers(configured_.num_layers);
  shape.set_num_experts(configured_.num_experts);
  shape.set_top_k(configured_.top_k);
  return shape;
}

std::optional<craft::v1::ModelShape> NodeModel::shape() const {
  craft::v1::ModelShape shape = configured();
  if (planner_.has_value()) {
    if (shape.num_layers() <= 0) shape.set_num_layers(planner_->num_layers());
    if (shape.num_experts() <= 0) shape.set_num_experts(planner_->num_experts());
    if (shape.top_k() <= 0) shape.set_top_k(planner_->top_k());
    shape.set_bytes_per_expert(planner_->bytes_per_expert());
  }
  if (shape.num_layers() <= 0 || shape.num_experts() <= 0) return std::nullopt;
  return shape;
}

absl::Status NodeModel::AdoptPlannerShape(const craft::v1::ModelShape& planner) {
  if (absl::Status s = ValidatePlannerShape(planner); !s.ok()) return s;
  if (const std::string fields = Contradictions(configured(), planner); !fields.empty()) {
    contradiction_ =
        absl::StrCat("the planner's model says ", fields,
                     ", contradicting this agent's --num_layers/--num_experts/--top_k");
    return absl::InvalidArgumentError(contradiction_);
  }
  contradiction_.clear();
  planner_ = planner;
  return absl::OkStatus();
}

absl::Status CheckWorkerModel(const craft::v1::ModelShape& worker,
                              const craft::v1::ModelShape& shape) {
  if (worker.num_layers() <= 0 || worker.num_experts() <= 0 || worker.top_k() <= 0 ||
      worker.top_k() > worker.num_experts() || worker.bytes_per_expert() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid worker model: num_layers=", worker.num_layers(),
        " num_experts=", worker.num_experts(), " top_k=", worker.top_k(), " bytes_per_expert=",
        worker.bytes_per_expert(), " (need positive counts and 1 <= top_k <= num_experts)"));
  }
  // Every field the node knows, exactly: a worker that leaves one at 0 does
  // not know what it runs.
  const bool differs =
      (shape.num_layers() > 0 && worker.num_layers() != shape.num_layers()) ||
      (shape.num_experts() > 0 && worker.num_experts() != shape.num_experts()) ||
      (shape.top_k() > 0 && worker.top_k() != shape.top_k()) ||
      (shape.bytes_per_expert() > 0 && worker.bytes_per_expert() != shape.bytes_per_expert());
  if (differs) {
    return absl::InvalidArgumentError(absl::StrCat("worker model (", worker.ShortDebugString(),
                                                   ") differs from this node's (",
                                                   shape.ShortDebugString(), ")"));
  }
  return absl::OkStatus();
}

}  // namespace craft::agent
