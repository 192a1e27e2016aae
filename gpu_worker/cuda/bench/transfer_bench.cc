// transfer_bench: the worker's NCCL staging (NcclStagingEngine, what
// craft-worker-cuda runs for a Prepare) on a realistic rebalance, against
// NCCL's own point-to-point rate measured in the same run.
//
//   transfer_bench --moves 12 --resident 16      # every visible GPU, DeepSeek-sized experts
//
// Every GPU holds `resident` slots of 3 x hidden x inter bf16 experts and
// receives `moves` experts from the other GPUs in turn (an all-to-all
// rebalance, as a re-plan that changes `moves` slots per GPU produces). One
// process drives all GPUs, one thread per GPU, each with a DeviceExpertStore
// and an engine (its own communicator) plus a second communicator for the
// raw measurements. Rates are bytes received per GPU over that GPU's time:
//   - NCCL raw, one pair: GPU 0 sends `peak_mb` to GPU 1, nothing else moves;
//   - NCCL raw, same pattern: every pair exchanges the plan's bytes as one
//     contiguous buffer per pair, in one group (the executor's ceiling);
//   - NCCL raw, one op per expert: the plan's sends and receives as the
//     executor posts them, between plain buffers (NCCL's own cost of many ops);
//   - staging: the engine's Execute of the plan as a worker stages a Prepare
//     (one send/recv per expert into staging buffers): its transfer (device
//     time), transfer plus the checksum verification of every received
//     expert, and the whole call on the host clock.
// Raw and staging repetitions alternate, and medians are reported. After the
// last repetition the staged version is flipped and every slot of every GPU
// is checked against the checksum of the expert it must hold.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/flags.h"
#include "common/status_macros.h"
#include "gpu_worker/cuda/barrier.h"
#include "gpu_worker/cuda/device.h"
#include "gpu_worker/cuda/device_buffer.h"
#include "gpu_worker/cuda/device_expert_store.h"
#include "gpu_worker/cuda/median.h"
#include "gpu_worker/cuda/nccl_staging_engine.h"
#include "gpu_worker/cuda/nccl_transfer.h"
#include "gpu_worker/stager.h"
#include "wire/version.h"

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

// One expert to move, as a Prepare's Transfer.
struct Move {
  int expert, src, src_slot, dst, dst_slot;
};

// Every GPU receives `moves` experts, the i-th from GPU (g + 1 + i mod (D-1))
// mod D, into its slot i.
std::vector<Move> MakeMoves(const Config& c) {
  std::vector<Move> moves;
  for (int i = 0; i < c.moves; ++i) {
    for (int dst = 0; dst < c.gpus; ++dst) {
      const int src = (dst + 1 + i % (c.gpus - 1)) % c.gpus;
      const int src_slot = (i / (c.gpus - 1) + dst) % c.resident;
      moves.push_back({InitialExpert(c, src, src_slot), src, src_slot, dst, i});
    }
  }
  return moves;
}

gpu_worker::LocalLayout InitialLayout(const Config& c, int gpu) {
  gpu_worker::LocalLayout layout{kInitialVersion, {{gpu * c.resident, {}}}};
  for (int s = 0; s < c.resident; ++s) layout.layers[0].experts.push_back(InitialExpert(c, gpu, s));
  return layout;
}

// What PlanStaging makes of a Prepare with `moves` on GPU `gpu`.
gpu_worker::StagePlan StagePlanOf(const Config& c, int gpu, const std::vector<Move>& moves,
                                  const std::string& version, const NcclId& group) {
  using gpu_worker::SlotSource;
  gpu_worker::StagePlan plan;
  plan.version = version;
  plan.local = InitialLayout(c, gpu);
  plan.local.version = version;
  plan.transfer_group_id.assign(group.bytes.begin(), group.bytes.end());
  for (int s = 0; s < c.resident; ++s) {
    SlotSource keep;
    keep.kind = SlotSource::Kind::kKeep;
    keep.slot = keep.serving_slot = s;
    keep.expert = InitialExpert(c, gpu, s);
    plan.sources.push_back(keep);
  }
  for (size_t i = 0; i < moves.size(); ++i) {
    const Move& m = moves[i];
    if (m.src == gpu) {
      plan.sends.push_back({static_cast<int>(i), 0, m.expert, m.dst, m.src_slot});
    }
    if (m.dst != gpu) continue;
    SlotSource& fetch = plan.sources[m.dst_slot];
    fetch.kind = SlotSource::Kind::kFetch;
    fetch.expert = m.expert;
    fetch.serving_slot = -1;
    fetch.fetch.src_gpu = m.src;
    fetch.transfer_index = static_cast<int>(i);
    plan.local.layers[0].experts[m.dst_slot] = m.expert;
  }
  return plan;
}

// Per-GPU results.
struct GpuResult {
  absl::Status status;
  std::vector<double> pair_seconds, raw_seconds, per_expert_seconds, stage_seconds,
      stage_total_seconds, execute_seconds;
  int64_t received = 0;
  int checked_slots = 0;
};

absl::Status RunGpu(const Config& c, int rank, const NcclId& raw_id, const NcclId& group,
                    const std::vector<Move>& moves, Barrier& barrier, GpuResult& out) {
  TransferOptions options;
  options.timeout = c.timeout;
  CRAFT_ASSIGN_OR_RETURN(
      std::unique_ptr<DeviceExpertStore> store,
      DeviceExpertStore::Create(rank, c.shape, (c.resident + c.moves + 1) * c.shape.bytes()));
  CRAFT_RETURN_IF_ERROR(store->LoadServing(InitialLayout(c, rank)));
  NcclStagingEngine engine(store.get(), rank, c.gpus, options);
  CRAFT_ASSIGN_OR_RETURN(auto raw,
                         NcclTransferExecutor::Create(rank, raw_id, c.gpus, rank, options));
  // Raw buffers: one send buffer (the same bytes go to every peer) and one
  // receive buffer per peer, each as large as the plan moves on that pair.
  const int64_t expert_bytes = c.shape.bytes();
  std::vector<int64_t> send_to(c.gpus, 0), receive_from(c.gpus, 0);
  for (const Move& m : moves) {
    if (m.src == rank) send_to[m.dst] += expert_bytes;
    if (m.dst == rank) receive_from[m.src] += expert_bytes;
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
  for (const Move& m : moves) {
    if (m.src == rank) per_expert.push_back({m.dst, true, send.data(), expert_bytes});
    if (m.dst == rank) {
      char* at = static_cast<char*>(receive[m.src].data()) + received_from[m.src];
      per_expert.push_back({m.src, false, at, expert_bytes});
      received_from[m.src] += expert_bytes;
    }
  }
  std::vector<P2pOp> pair;
  if (rank == 0) pair.push_back({1, true, send.data(), c.peak_bytes});
  if (rank == 1) pair.push_back({0, false, receive[0].data(), c.peak_bytes});

  const std::atomic<bool> never{false};
  const auto stage = [&](int rep) -> absl::StatusOr<gpu_worker::StageResult> {
    const std::string version = absl::StrCat("1.", rep + 1);
    return engine.Execute(StagePlanOf(c, rank, moves, version, group), absl::InfiniteFuture(),
                          never);
  };
  // Warm-up: connections, then one of each measurement untimed.
  barrier.Wait();
  CRAFT_RETURN_IF_ERROR(stage(-1).status());
  CRAFT_RETURN_IF_ERROR(store->DropStaging("1.0"));
  CRAFT_RETURN_IF_ERROR(raw->Exchange(pattern).status());
  CRAFT_RETURN_IF_ERROR(raw->Exchange(per_expert).status());
  CRAFT_RETURN_IF_ERROR(raw->Exchange(pair).status());

  for (int rep = 0; rep < c.reps; ++rep) {
    barrier.Wait();
    CRAFT_ASSIGN_OR_RETURN(double pair_seconds, raw->Exchange(pair));
    if (!pair.empty()) out.pair_seconds.push_back(pair_seconds);
    barrier.Wait();
    CRAFT_ASSIGN_OR_RETURN(double raw_seconds, raw->Exchange(pattern));
    out.raw_seconds.push_back(raw_seconds);
    barrier.Wait();
    CRAFT_ASSIGN_OR_RETURN(double per_expert_seconds, raw->Exchange(per_expert));
    out.per_expert_seconds.push_back(per_expert_seconds);
    barrier.Wait();
    CRAFT_ASSIGN_OR_RETURN(gpu_worker::StageResult staged, stage(rep));
    out.stage_seconds.push_back(absl::ToDoubleSeconds(staged.transfer_time));
    out.stage_total_seconds.push_back(
        absl::ToDoubleSeconds(staged.transfer_time + staged.verify_time));
    out.execute_seconds.push_back(absl::ToDoubleSeconds(staged.elapsed));
    out.received = staged.bytes_received;
    const std::string version = absl::StrCat("1.", rep + 1);
    if (rep + 1 < c.reps) {
      CRAFT_RETURN_IF_ERROR(store->DropStaging(version));
    } else {
      CRAFT_RETURN_IF_ERROR(store->Flip(version));
    }
  }

  // Every slot holds the expert of the new layout.
  const gpu_worker::LocalLayout after =
      StagePlanOf(c, rank, moves, absl::StrCat("1.", c.reps), group).local;
  for (int s = 0; s < c.resident; ++s) {
    const int expert = after.layers[0].experts[s];
    CRAFT_ASSIGN_OR_RETURN(uint64_t sum, store->SlotChecksum(after.version, 0, s));
    if (sum != store->ExpectedChecksum(0, expert)) {
      return absl::DataLossError(
          absl::StrCat("GPU ", rank, " slot ", s, " does not hold expert ", expert));
    }
  }
  out.checked_slots = c.resident;
  barrier.Wait();
  return raw->Close();
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
  const std::vector<Move> moves = MakeMoves(c);
  CRAFT_ASSIGN_OR_RETURN(NcclId raw_id, NewNcclId());
  CRAFT_ASSIGN_OR_RETURN(NcclId group, NewNcclId());
  CRAFT_ASSIGN_OR_RETURN(int nccl_version, NcclVersion());
  Barrier barrier(c.gpus);
  std::vector<GpuResult> results(c.gpus);
  std::vector<std::thread> threads;
  for (int g = 0; g < c.gpus; ++g) {
    threads.emplace_back([&, g] {
      results[g].status = RunGpu(c, g, raw_id, group, moves, barrier, results[g]);
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
  const Rate execute = rate(&GpuResult::execute_seconds);
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
  row("worker staging: transfer", stage, true);
  row("worker staging: transfer + checksum verify", total, true);
  row("worker staging: whole Execute (host clock)", execute, true);
  std::cout << absl::StrFormat("  after the flip: %d of %d slots hold their expert (checksums)\n",
                               checked, c.gpus * c.resident);
  std::cout << absl::StrFormat(
      "CSV transfer_bench,gpus=%d,moves=%d,expert_mb=%.1f,pair_gbps=%.1f,raw_gbps=%.1f,"
      "raw_per_expert_gbps=%.1f,stage_gbps=%.1f,stage_verify_gbps=%.1f,execute_gbps=%.1f,"
      "ratio=%.3f,verify_ratio=%.3f,slots_ok=%d/%d\n",
      c.gpus, c.moves, c.shape.bytes() / 1e6, pair_rate, raw.mean, per_expert.mean, stage.mean,
      total.mean, execute.mean, stage.mean / raw.mean, total.mean / raw.mean, checked,
      c.gpus * c.resident);
  return absl::OkStatus();
}

}  // namespace
}  // namespace craft::gpu

int main(int argc, char** argv) {
  craft::ParseFlags(
      argc, argv,
      "transfer_bench: the worker's NCCL staging on a rebalance, against NCCL's own rate\n\n"
      "usage: transfer_bench [--gpus N] [--moves 12] [--resident 16]");
  const absl::Status status = craft::gpu::Main();
  if (!status.ok()) {
    std::cerr << "transfer_bench: " << status << std::endl;
    return 1;
  }
  return 0;
}
