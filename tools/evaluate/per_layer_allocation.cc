#include "tools/evaluate/per_layer_allocation.h"

#include <iostream>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "tools/evaluate/measure.h"

namespace craft::evaluate {
namespace {

using planner::Algorithm;

// Skew buckets of the summary, by the hottest expert over the mean.
struct Bucket {
  const char* key;
  const char* label;
  double low;
  double high;
};
constexpr Bucket kBuckets[] = {
    {"low", "< 3x", 0, 3}, {"mid", "3-10x", 3, 10}, {"high", ">= 10x", 10, 1e300}};

// The bucket of the layers [begin, end) of one workload (layers == 0: empty).
SkewBucket Summarise(const std::vector<LayerRow>& rows, size_t begin, size_t end,
                     const Bucket& bucket) {
  SkewBucket out;
  out.workload = rows[begin].workload;
  out.gpus = rows[begin].gpus;
  out.key = bucket.key;
  out.label = bucket.label;
  for (size_t i = begin; i < end; ++i) {
    const LayerRow& r = rows[i];
    if (r.hot_ratio < bucket.low || r.hot_ratio >= bucket.high) continue;
    ++out.layers;
    out.craft_replicas += r.craft_replicas;
    out.paper_replicas += r.paper_replicas;
    out.eplb_replicas += r.eplb_replicas;
    out.none_balancedness += r.none_balancedness;
    out.craft_balancedness += r.craft_balancedness;
    if (r.craft_replicas > 0) {
      ++out.replicated;
      if (r.craft_balancedness < r.none_balancedness) ++out.worse_on_held_out;
    }
  }
  if (out.layers > 0) {
    for (double* mean : {&out.craft_replicas, &out.paper_replicas, &out.eplb_replicas,
                         &out.none_balancedness, &out.craft_balancedness}) {
      *mean /= out.layers;
    }
  }
  return out;
}

absl::Status AddWorkload(const ScaleConfig& config, const Workload& workload,
                         PerLayerResult& result) {
  const int gpus = FocusGpus(workload, config.focus_gpus);
  planner::PlanOptions craft_options = OptionsFor(Algorithm::kCraft, gpus);
  craft_options.budget = config.focus_budget;
  CRAFT_ASSIGN_OR_RETURN(Measured none,
                         PlanAndMeasure(workload, OptionsFor(Algorithm::kNone, gpus)));
  CRAFT_ASSIGN_OR_RETURN(Measured craft, PlanAndMeasure(workload, craft_options));
  CRAFT_ASSIGN_OR_RETURN(Measured paper,
                         PlanAndMeasure(workload, OptionsFor(Algorithm::kCraftPaper, gpus)));
  CRAFT_ASSIGN_OR_RETURN(Measured eplb,
                         PlanAndMeasure(workload, OptionsFor(Algorithm::kEplb, gpus)));
  const std::vector<double> hot = HotRatios(workload.plan);
  for (int l = 0; l < workload.num_layers(); ++l) {
    LayerRow row;
    row.workload = workload.key;
    row.gpus = gpus;
    row.layer = l;
    row.hot_ratio = hot[l];
    row.none_balancedness = none.on_eval.layers[l].balancedness;
    row.craft_replicas = craft.plan.replicas_per_layer[l];
    row.craft_balancedness = craft.on_eval.layers[l].balancedness;
    row.paper_replicas = paper.plan.replicas_per_layer[l];
    row.paper_balancedness = paper.on_eval.layers[l].balancedness;
    row.eplb_replicas = eplb.plan.replicas_per_layer[l];
    row.eplb_balancedness = eplb.on_eval.layers[l].balancedness;
    result.layers.push_back(row);
    result.curves.push_back({workload.key, gpus, l, hot[l], craft.plan.curves[l]});
  }
  std::cerr << "  per-layer: " << workload.key << " D=" << gpus << "\n";
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<PerLayerResult> RunPerLayerAllocation(const ScaleConfig& config,
                                                     const std::vector<Workload>& workloads) {
  PerLayerResult result;
  result.budget = config.focus_budget;
  for (const Workload& workload : workloads) {
    if (workload.gpu_counts.empty()) continue;
    CRAFT_RETURN_IF_ERROR(AddWorkload(config, workload, result));
  }
  return result;
}

Table LayerTable(const PerLayerResult& result) {
  Table table({"workload", "gpus", "layer", "hot_ratio", "none_balancedness", "craft_replicas",
               "craft_balancedness", "paper_replicas", "paper_balancedness", "eplb_replicas",
               "eplb_balancedness", "craft_budget"});
  for (const LayerRow& r : result.layers) {
    table.AddRow({r.workload, absl::StrCat(r.gpus), absl::StrCat(r.layer), Fixed(r.hot_ratio, 2),
                  Fixed(r.none_balancedness, 4), absl::StrCat(r.craft_replicas),
                  Fixed(r.craft_balancedness, 4), absl::StrCat(r.paper_replicas),
                  Fixed(r.paper_balancedness, 4), absl::StrCat(r.eplb_replicas),
                  Fixed(r.eplb_balancedness, 4), absl::StrCat(result.budget)});
  }
  return table;
}

Table CurveTable(const PerLayerResult& result) {
  Table table(
      {"workload", "gpus", "layer", "hot_ratio", "replicas", "balancedness", "max_gpu_load"});
  for (const PerLayerResult::Curve& c : result.curves) {
    for (size_t k = 0; k < c.curve.replicas.size(); ++k) {
      table.AddRow({c.workload, absl::StrCat(c.gpus), absl::StrCat(c.layer), Fixed(c.hot_ratio, 2),
                    absl::StrCat(c.curve.replicas[k]), Fixed(c.curve.balancedness[k], 4),
                    Fixed(c.curve.max_gpu_load[k], 1)});
    }
  }
  return table;
}

std::vector<SkewBucket> SkewBuckets(const PerLayerResult& result) {
  std::vector<SkewBucket> buckets;
  const std::vector<LayerRow>& rows = result.layers;
  size_t begin = 0;
  while (begin < rows.size()) {
    size_t end = begin;
    while (end < rows.size() && rows[end].workload == rows[begin].workload) ++end;
    for (const Bucket& bucket : kBuckets) {
      SkewBucket summary = Summarise(rows, begin, end, bucket);
      if (summary.layers > 0) buckets.push_back(summary);
    }
    begin = end;
  }
  return buckets;
}

Table LayerSummary(const PerLayerResult& result) {
  Table table({"workload", "D", "layer skew", "layers", "CRAFT replicas/layer",
               "heuristic replicas/layer", "EPLB replicas/layer", "placement-only bal", "CRAFT bal",
               "replicated (of which worse held-out)"});
  for (const SkewBucket& b : SkewBuckets(result)) {
    table.AddRow({b.workload, absl::StrCat(b.gpus), b.label, absl::StrCat(b.layers),
                  Fixed(b.craft_replicas, 1), Fixed(b.paper_replicas, 1), Fixed(b.eplb_replicas, 1),
                  Fixed(b.none_balancedness, 3), Fixed(b.craft_balancedness, 3),
                  absl::StrCat(b.replicated, " (", b.worse_on_held_out, ")")});
  }
  return table;
}

}  // namespace craft::evaluate
