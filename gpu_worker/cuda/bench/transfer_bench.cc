// transfer_bench: the NCCL transfer executor's rate on a realistic rebalance,
// against NCCL's own point-to-point rate measured in the same run.
//
//   transfer_bench --moves 12 --resident 16      # every visible GPU, DeepSeek-sized experts
//
// Every GPU holds `resident` slots of 3 x hidden x inter bf16 experts and
// receives `moves` experts from the other GPUs in turn (an all-to-all
// rebalance, as a re-plan that changes `moves` slots per GPU produces). One
// process drives all GPUs, one thread and one communicator rank each. Rates
// are bytes received per GPU over that GPU's device time:
//   - NCCL raw, one pair: GPU 0 sends `peak_mb` to GPU 1, nothing else moves;
//   - NCCL raw, same pattern: every pair exchanges the plan's bytes as one
//     contiguous buffer per pair, in one group (the executor's ceiling);
//   - NCCL raw, one op per expert: the plan's sends and receives as the
//     executor posts them, between plain buffers (NCCL's own cost of many ops);
//   - executor: Stage() of the plan (one send/recv per expert into staging),
//     with and without the checksum verification of every received expert.
// Raw and executor repetitions alternate, and medians are reported. After the
// last repetition the plan is committed and every slot of every GPU is checked
// against the checksum of the expert it must hold.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "gpu_worker/cuda/barrier.h"
#include "gpu_worker/cuda/device.h"
#include "gpu_worker/cuda/device_buffer.h"
#include "gpu_worker/cuda/device_slots.h"
#include "gpu_worker/cuda/median.h"
#include "gpu_worker/cuda/nccl_transfer.h"

ABSL_FLAG(int, gpus, 0, "GPUs to use (0: every visible one)");
ABSL_FLAG(int, moves, 12, "experts every GPU receives");
ABSL_FLAG(int, resident, 16, "expert slots per GPU (>= moves)");
ABSL_FLAG(int64_t, hidden, 7168, "expert hidden dim");
ABSL_FLAG(int64_t, inter, 2048, "expert intermediate dim");
ABSL_FLAG(int, reps, 5, "timed repetitions of each measurement");
ABSL_FLAG(int64_t, peak_mb, 1024, "buffer of the one-pair raw measurement, MiB");
ABSL_FLAG(int, timeout_s, 120, "deadline of every NCCL step");

namespace craft::gpu {
namespace {

struct Config {
  int gpus = 0;
  int moves = 0;
  int resident = 0;
  ExpertShape shape;
  int reps = 0;
  int64_t peak_bytes = 0;
  absl::Duration timeout;
};

// GPU g's slot s holds expert g * resident + s of layer 0.
int InitialExpert(const Config& c, int gpu, int slot) { return gpu * c.resident + slot; }

// Every GPU receives `moves` experts, the i-th from GPU (g + 1 + i mod (D-1))
// mod D, into its slot i.
std::vector<TransferItem> MakePlan(const Config& c) {
  std::vector<TransferItem> plan;
  for (int i = 0; i < c.moves; ++i) {
    for (int dst = 0; dst < c.gpus; ++dst) {
      const int src = (dst + 1 + i % (c.gpus - 1)) % c.gpus;
      const int src_slot = (i / (c.gpus - 1) + dst) % c.resident;
      plan.push_back({0, InitialExpert(c, src, src_slot), src, dst, src_slot, i, 0});
    }
  }
  return plan;
}

// Per-GPU results.
struct GpuResult {
  absl::Status status;
  std::vector<double> pair_seconds, raw_seconds, per_expert_seconds, stage_seconds,
      stage_total_seconds, verify_seconds;
  int64_t received = 0;
  int checked_slots = 0;
};

absl::Status RunGpu(const Config& c, int rank, const NcclId& id,
                    const std::vector<TransferItem>& plan, DeviceSlots* slots, Barrier& barrier,
                    GpuResult& out) {
  TransferOptions options;
  options.timeout = c.timeout;
  CRAFT_ASSIGN_OR_RETURN(auto executor,
                         NcclTransferExecutor::Create(slots, id, c.gpus, rank, options));
  // Raw buffers: one send buffer (the same bytes go to every peer) and one
  // receive buffer per peer, each as large as the plan moves on that pair.
  const int64_t expert_bytes = c.shape.bytes();
  std::vector<int64_t> send_to(c.gpus, 0), receive_from(c.gpus, 0);
  for (const TransferItem& item : plan) {
    if (item.src_rank == rank) send_to[item.dst_rank] += expert_bytes;
    if (item.dst_rank == rank) receive_from[item.src_rank] += expert_bytes;
  }
  CRAFT_ASSIGN_OR_RETURN(
      DeviceBuffer send,
      DeviceBuffer::Allocate(
          rank, std::max(*std::max_element(send_to.begin(), send_to.end()), c.peak_bytes)));
  std::vector<DeviceBuffer> receive(c.gpus);
  std::vector<P2pOp> pattern;
  for (int peer = 0; peer < c.gpus; ++peer) {
    if (peer == rank) continue;
    CRAFT_ASSIGN_OR_RETURN(
        receive[peer],
        DeviceBuffer::Allocate(rank, std::max(receive_from[peer], rank == 1 ? c.peak_bytes : 0)));
    if (send_to[peer] > 0) pattern.push_back({peer, true, send.data(), send_to[peer]});
    if (receive_from[peer] > 0) {
      pattern.push_back({peer, false, receive[peer].data(), receive_from[peer]});
    }
  }
  // The plan's own ops between the same buffers: receives from a peer land
  // one after another in its buffer; sends reuse the send buffer.
  std::vector<P2pOp> per_expert;
  std::vector<int64_t> received_from(c.gpus, 0);
  for (const TransferItem& item : plan) {
    if (item.src_rank == item.dst_rank) continue;
    if (item.src_rank == rank)
      per_expert.push_back({item.dst_rank, true, send.data(), expert_bytes});
    if (item.dst_rank == rank) {
      char* at = static_cast<char*>(receive[item.src_rank].data()) + received_from[item.src_rank];
      per_expert.push_back({item.src_rank, false, at, expert_bytes});
      received_from[item.src_rank] += expert_bytes;
    }
  }
  std::vector<P2pOp> pair;
  if (rank == 0) pair.push_back({1, true, send.data(), c.peak_bytes});
  if (rank == 1) pair.push_back({0, false, receive[0].data(), c.peak_bytes});

  // Warm-up: connections, then one of each measurement untimed.
  barrier.Wait();
  CRAFT_ASSIGN_OR_RETURN(StagedTransfer warm, executor->Stage(plan));
  CRAFT_RETURN_IF_ERROR(executor->Discard(warm));
  CRAFT_RETURN_IF_ERROR(executor->Exchange(pattern).status());
  CRAFT_RETURN_IF_ERROR(executor->Exchange(per_expert).status());
  CRAFT_RETURN_IF_ERROR(executor->Exchange(pair).status());

  for (int rep = 0; rep < c.reps; ++rep) {
    barrier.Wait();
    CRAFT_ASSIGN_OR_RETURN(double pair_seconds, executor->Exchange(pair));
    if (!pair.empty()) out.pair_seconds.push_back(pair_seconds);
    barrier.Wait();
    CRAFT_ASSIGN_OR_RETURN(double raw_seconds, executor->Exchange(pattern));
    out.raw_seconds.push_back(raw_seconds);
    barrier.Wait();
    CRAFT_ASSIGN_OR_RETURN(double per_expert_seconds, executor->Exchange(per_expert));
    out.per_expert_seconds.push_back(per_expert_seconds);
    barrier.Wait();
    CRAFT_ASSIGN_OR_RETURN(StagedTransfer staged, executor->Stage(plan));
    out.stage_seconds.push_back(staged.transfer_seconds);
    out.stage_total_seconds.push_back(staged.transfer_seconds + staged.verify_seconds);
    out.verify_seconds.push_back(staged.verify_seconds);
    out.received = staged.bytes_received;
    if (rep + 1 < c.reps) {
      CRAFT_RETURN_IF_ERROR(executor->Discard(staged));
    } else {
      CRAFT_RETURN_IF_ERROR(executor->Commit(plan, staged));
    }
  }

  // Every slot holds the expert of the new layout.
  std::vector<int> expected(c.resident);
  for (int s = 0; s < c.resident; ++s) expected[s] = InitialExpert(c, rank, s);
  for (const TransferItem& item : plan) {
    if (item.dst_rank == rank) expected[item.dst_slot] = item.expert;
  }
  std::vector<void*> buffers;
  std::vector<ExpertId> ids;
  for (int s = 0; s < c.resident; ++s) {
    buffers.push_back(slots->slot_data(0, s));
    ids.push_back({0, expected[s]});
  }
  CRAFT_ASSIGN_OR_RETURN(std::vector<uint64_t> sums, slots->Checksums(buffers));
  CRAFT_ASSIGN_OR_RETURN(std::vector<uint64_t> want, slots->ExpectedChecksums(ids));
  for (int s = 0; s < c.resident; ++s) {
    if (sums[s] != want[s]) {
      return absl::DataLossError(
          absl::StrCat("GPU ", rank, " slot ", s, " does not hold expert ", expected[s]));
    }
  }
  out.checked_slots = c.resident;
  barrier.Wait();
  return executor->Close();
}

absl::Status Main() {
  const CudaAvailability cuda = ProbeCuda();
  Config c;
  c.gpus = absl::GetFlag(FLAGS_gpus) > 0 ? absl::GetFlag(FLAGS_gpus) : cuda.devices;
  c.moves = absl::GetFlag(FLAGS_moves);
  c.resident = absl::GetFlag(FLAGS_resident);
  c.shape.hidden = absl::GetFlag(FLAGS_hidden);
  c.shape.inter = absl::GetFlag(FLAGS_inter);
  c.reps = absl::GetFlag(FLAGS_reps);
  c.peak_bytes = absl::GetFlag(FLAGS_peak_mb) << 20;
  c.timeout = absl::Seconds(absl::GetFlag(FLAGS_timeout_s));
  if (c.gpus < 2 || c.gpus > cuda.devices) {
    return absl::FailedPreconditionError(
        absl::StrCat("needs 2 to ", cuda.devices, " GPUs, asked for ", c.gpus, "; ", cuda.reason));
  }
  if (c.moves <= 0 || c.moves > c.resident || c.reps <= 0) {
    return absl::InvalidArgumentError("needs 0 < moves <= resident and reps > 0");
  }
  CRAFT_RETURN_IF_ERROR(c.shape.Validate());
  const std::vector<TransferItem> base_plan = MakePlan(c);

  std::vector<std::unique_ptr<DeviceSlots>> slots;
  for (int g = 0; g < c.gpus; ++g) {
    SlotsConfig config;
    config.device = g;
    config.shape = c.shape;
    config.slots_per_layer = {c.resident};
    config.staging_buffers = c.moves;
    CRAFT_ASSIGN_OR_RETURN(slots.emplace_back(), DeviceSlots::Create(config));
    for (int s = 0; s < c.resident; ++s) {
      CRAFT_RETURN_IF_ERROR(slots[g]->FillSlot(0, s, InitialExpert(c, g, s)));
    }
  }
  // What every moved expert must hash to, computed on GPU 0 from the fill rule.
  std::vector<ExpertId> ids;
  for (const TransferItem& item : base_plan) ids.push_back({item.layer, item.expert});
  CRAFT_ASSIGN_OR_RETURN(std::vector<uint64_t> checksums, slots[0]->ExpectedChecksums(ids));
  std::vector<TransferItem> plan = base_plan;
  for (size_t i = 0; i < plan.size(); ++i) plan[i].checksum = checksums[i];

  CRAFT_ASSIGN_OR_RETURN(NcclId id, NewNcclId());
  CRAFT_ASSIGN_OR_RETURN(int nccl_version, NcclVersion());
  Barrier barrier(c.gpus);
  std::vector<GpuResult> results(c.gpus);
  std::vector<std::thread> threads;
  for (int g = 0; g < c.gpus; ++g) {
    threads.emplace_back([&, g] {
      results[g].status = RunGpu(c, g, id, plan, slots[g].get(), barrier, results[g]);
      if (!results[g].status.ok()) {
        std::cerr << "GPU " << g << ": " << results[g].status << std::endl;
        std::_Exit(2);  // the others would wait at the barrier for ever
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  const double gb = 1e9;
  const double pair_rate = c.peak_bytes / Median(results[0].pair_seconds) / gb;
  // Mean and minimum over GPUs of bytes received / median seconds.
  struct Rate {
    double mean = 0, min = 1e300;
  };
  const auto rate = [&](std::vector<double> GpuResult::*seconds) {
    Rate r;
    for (int g = 0; g < c.gpus; ++g) {
      const double v = results[g].received / Median(results[g].*seconds) / gb;
      r.mean += v / c.gpus;
      r.min = std::min(r.min, v);
    }
    return r;
  };
  const Rate raw = rate(&GpuResult::raw_seconds);
  const Rate per_expert = rate(&GpuResult::per_expert_seconds);
  const Rate stage = rate(&GpuResult::stage_seconds);
  const Rate total = rate(&GpuResult::stage_total_seconds);
  const Rate verify = rate(&GpuResult::verify_seconds);
  int checked = 0;
  for (int g = 0; g < c.gpus; ++g) checked += results[g].checked_slots;
  std::cout << absl::StrFormat(
      "transfer_bench: %d GPUs, NCCL %d, %d experts of %.1f MB (3 x %d x %d bf16) into every "
      "GPU from the others: %.2f GB per GPU; median of %d\n",
      c.gpus, nccl_version, c.moves, c.shape.bytes() / 1e6, c.shape.hidden, c.shape.inter,
      c.moves * c.shape.bytes() / gb, c.reps);
  std::cout << absl::StrFormat("  %-44s %10s %10s\n", "received per GPU", "mean GB/s", "min GB/s");
  std::cout << absl::StrFormat(
      "  %-44s %10.1f %10s\n",
      absl::StrCat("NCCL raw, one pair 0->1, ", c.peak_bytes >> 20, " MiB"), pair_rate, "-");
  const auto row = [&](absl::string_view what, const Rate& r, bool ratio) {
    std::cout << absl::StrFormat("  %-44s %10.1f %10.1f", what, r.mean, r.min);
    if (ratio) {
      std::cout << absl::StrFormat("   (%.1f%% of raw same pattern)", 100 * r.mean / raw.mean);
    }
    std::cout << "\n";
  };
  row("NCCL raw, same pattern, one buffer per pair", raw, false);
  row("NCCL raw, same pattern, one op per expert", per_expert, true);
  row("executor Stage, transfer", stage, true);
  row("executor Stage, transfer + checksum verify", total, true);
  row("checksum verify alone (received bytes)", verify, false);
  std::cout << absl::StrFormat("  after commit: %d of %d slots hold their expert (checksums)\n",
                               checked, c.gpus * c.resident);
  std::cout << absl::StrFormat(
      "CSV transfer_bench,gpus=%d,moves=%d,expert_mb=%.1f,pair_gbps=%.1f,raw_gbps=%.1f,"
      "raw_per_expert_gbps=%.1f,stage_gbps=%.1f,stage_verify_gbps=%.1f,verify_gbps=%.1f,"
      "ratio=%.3f,slots_ok=%d/%d\n",
      c.gpus, c.moves, c.shape.bytes() / 1e6, pair_rate, raw.mean, per_expert.mean, stage.mean,
      total.mean, verify.mean, stage.mean / raw.mean, checked, c.gpus * c.resident);
  return absl::OkStatus();
}

}  // namespace
}  // namespace craft::gpu

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = craft::gpu::Main();
  if (!status.ok()) {
    std::cerr << "transfer_bench: " << status << std::endl;
    return 1;
  }
  return 0;
}
