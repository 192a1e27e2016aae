#include "tools/evaluate/throughput_vs_budget.h"

#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "tools/evaluate/measure.h"

namespace craft::evaluate {
namespace {

using planner::Algorithm;

// The layouts measured once per workload and D, whatever the memory.
struct BaseLayouts {
  Measured none, craft, eplb, eplb_global;
};

ThroughputPoint PointOf(const Measured& measured, const planner::MemoryModel& memory, int budget) {
  ThroughputPoint point;
  point.budget = budget;
  point.slots_per_gpu = MaxSlotsPerGpu(measured.plan.layout);
  point.kv_tokens_per_gpu = KvTokensPerGpu(memory, point.slots_per_gpu);
  point.step_time = measured.on_eval.step_time;
  return point;
}

void Normalise(ThroughputRow& row) {
  const double base = row.none.kv_tokens_per_gpu / row.none.step_time;
  for (ThroughputPoint* p : {&row.none, &row.craft, &row.automatic, &row.eplb, &row.eplb_global}) {
    p->relative_throughput = base > 0 ? p->kv_tokens_per_gpu / p->step_time / base : 0;
  }
}

absl::StatusOr<BaseLayouts> MeasureFixed(const ScaleConfig& config, const Workload& workload,
                                         int gpus) {
  BaseLayouts fixed;
  planner::PlanOptions craft_options = OptionsFor(Algorithm::kCraft, gpus);
  craft_options.budget = config.focus_budget;
  CRAFT_ASSIGN_OR_RETURN(fixed.none, PlanAndMeasure(workload, OptionsFor(Algorithm::kNone, gpus)));
  CRAFT_ASSIGN_OR_RETURN(fixed.craft, PlanAndMeasure(workload, craft_options));
  CRAFT_ASSIGN_OR_RETURN(fixed.eplb, PlanAndMeasure(workload, OptionsFor(Algorithm::kEplb, gpus)));
  CRAFT_ASSIGN_OR_RETURN(
      fixed.eplb_global,
      PlanAndMeasure(workload, OptionsFor(Algorithm::kEplb, gpus, EplbPolicy::kGlobal)));
  return fixed;
}

// One workload, D and GPU memory: auto-R's plan (with its sweep) and the
// measured points.
absl::Status AddCell(const ScaleConfig& config, const Workload& workload, int gpus,
                     const GpuMemory& gpu, const BaseLayouts& fixed, ThroughputResult& result) {
  ThroughputRow row;
  row.workload = workload.key;
  row.gpu = gpu.key;
  row.gpus = gpus;
  planner::PlanOptions options = OptionsFor(Algorithm::kCraft, gpus);
  options.memory = MemoryFor(config, gpu, workload.non_expert_bytes);
  row.none = PointOf(fixed.none, options.memory, 0);
  row.fits = row.none.kv_tokens_per_gpu > 0;
  if (!row.fits) {
    result.rows.push_back(row);  // the model's weights alone fill the GPU
    return absl::OkStatus();
  }
  CRAFT_ASSIGN_OR_RETURN(Measured automatic, PlanAndMeasure(workload, options));
  row.auto_budget = automatic.plan.budget;
  for (const planner::BudgetPoint& point : automatic.plan.budget_sweep) {
    result.sweep.push_back({workload.key, gpu.key, gpus, point});
    if (point.budget == row.auto_budget) row.auto_predicted = point.relative_throughput;
  }
  row.craft = PointOf(fixed.craft, options.memory, config.focus_budget);
  row.automatic = PointOf(automatic, options.memory, row.auto_budget);
  row.eplb = PointOf(fixed.eplb, options.memory, workload.num_layers());
  row.eplb_global = PointOf(fixed.eplb_global, options.memory, workload.num_layers());
  Normalise(row);
  result.rows.push_back(row);
  return absl::OkStatus();
}

std::string Percent(double fraction) { return absl::StrFormat("%+.0f%%", 100 * fraction); }

// a's throughput over b's, or why there is none.
std::string Ratio(const ThroughputPoint& a, const ThroughputPoint& b) {
  return b.relative_throughput > 0 ? Fixed(a.relative_throughput / b.relative_throughput, 3)
                                   : "baseline does not fit";
}

}  // namespace

absl::StatusOr<ThroughputResult> RunThroughputVsBudget(const ScaleConfig& config,
                                                       const std::vector<Workload>& workloads) {
  ThroughputResult result;
  for (const Workload& workload : workloads) {
    if (!workload.synthetic) continue;
    for (int gpus : workload.gpu_counts) {
      CRAFT_ASSIGN_OR_RETURN(BaseLayouts fixed, MeasureFixed(config, workload, gpus));
      for (const GpuMemory& gpu : config.gpus) {
        CRAFT_RETURN_IF_ERROR(AddCell(config, workload, gpus, gpu, fixed, result));
      }
      std::cerr << "  throughput: " << workload.key << " D=" << gpus << "\n";
    }
  }
  return result;
}

Table SweepTable(const ThroughputResult& result) {
  Table table({"workload", "gpu", "gpus", "budget", "redundant_slots", "predicted_balancedness",
               "predicted_step_time", "kv_tokens_per_gpu", "relative_throughput"});
  for (const SweepRow& row : result.sweep) {
    const planner::BudgetPoint& p = row.point;
    table.AddRow({row.workload, row.gpu, absl::StrCat(row.gpus), absl::StrCat(p.budget),
                  absl::StrCat(p.redundant_slots), Fixed(p.predicted_balancedness, 4),
                  Fixed(p.predicted_step_time, 0), Fixed(p.kv_tokens_per_gpu, 0),
                  Fixed(p.relative_throughput, 4)});
  }
  return table;
}

Table ThroughputTable(const ThroughputResult& result) {
  Table table({"workload", "gpu", "gpus", "fits", "layout", "budget", "slots_per_gpu",
               "kv_tokens_per_gpu", "eval_step_time", "relative_throughput"});
  for (const ThroughputRow& row : result.rows) {
    if (!row.fits) {
      table.AddRow({row.workload, row.gpu, absl::StrCat(row.gpus), "0", "", "", "", "", "", ""});
      continue;
    }
    const std::pair<const char*, const ThroughputPoint*> points[] = {
        {"none", &row.none},
        {"craft", &row.craft},
        {"auto", &row.automatic},
        {"eplb", &row.eplb},
        {"eplb-global", &row.eplb_global}};
    for (const auto& [name, p] : points) {
      table.AddRow({row.workload, row.gpu, absl::StrCat(row.gpus), "1", name,
                    absl::StrCat(p->budget), absl::StrCat(p->slots_per_gpu),
                    Fixed(p->kv_tokens_per_gpu, 0), Fixed(p->step_time, 0),
                    Fixed(p->relative_throughput, 4)});
    }
  }
  return table;
}

Table ThroughputSummary(const ThroughputResult& result) {
  Table table({"workload", "GPU", "D", "KV tokens/GPU (R=0)", "EPLB KV", "CRA8 KV", "auto-R",
               "thr. CRA8", "thr. auto-R", "thr. EPLB", "thr. EPLB global", "CRA8 / EPLB",
               "CRA8 / EPLB global"});
  for (const ThroughputRow& row : result.rows) {
    if (!row.fits) {
      std::vector<std::string> cells = {row.workload, row.gpu, absl::StrCat(row.gpus),
                                        "weights do not fit"};
      cells.resize(table.columns().size(), "-");
      table.AddRow(cells);
      continue;
    }
    const double kv0 = row.none.kv_tokens_per_gpu;
    table.AddRow(
        {row.workload, row.gpu, absl::StrCat(row.gpus), absl::StrFormat("%.0fk", kv0 / 1000),
         Percent(row.eplb.kv_tokens_per_gpu / kv0 - 1),
         Percent(row.craft.kv_tokens_per_gpu / kv0 - 1), absl::StrCat(row.auto_budget),
         Fixed(row.craft.relative_throughput, 3), Fixed(row.automatic.relative_throughput, 3),
         Fixed(row.eplb.relative_throughput, 3), Fixed(row.eplb_global.relative_throughput, 3),
         Ratio(row.craft, row.eplb), Ratio(row.craft, row.eplb_global)});
  }
  return table;
}

}  // namespace craft::evaluate
