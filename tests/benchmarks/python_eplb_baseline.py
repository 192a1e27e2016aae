#!/usr/bin/env python3
"""A plain Python EPLB on a trace's aggregate: the speed yardstick for `craftctl plan`.

The global policy of DeepSeek's EPLB, written from its description: each layer
gets E + D slots; every redundant slot goes to the expert with the highest load
per replica, then replicas are packed, heaviest first, onto the least loaded
GPU that still has a free slot. Standard library only, so that it runs
wherever craft builds.

    python3 tests/benchmarks/python_eplb_baseline.py TRACE.json --gpus 64

Prints the time to read the trace, the time to plan, and the balancedness
(mean over max GPU load, averaged over layers) as a check that it planned.
"""

import argparse
import heapq
import json
import time


def replicate(loads, slots):
    """Replica counts: each extra slot to the expert with the most load per replica."""
    counts = [1] * len(loads)
    heap = [(-load, e) for e, load in enumerate(loads)]
    heapq.heapify(heap)
    for _ in range(slots - len(loads)):
        _, e = heapq.heappop(heap)
        counts[e] += 1
        heapq.heappush(heap, (-loads[e] / counts[e], e))
    return counts


def pack(loads, counts, gpus):
    """GPU loads after packing replicas, heaviest first, onto the least loaded GPU with room."""
    per_gpu = sum(counts) // gpus
    replicas = sorted((loads[e] / c for e, c in enumerate(counts) for _ in range(c)), reverse=True)
    heap = [(0.0, g, 0) for g in range(gpus)]  # (load, gpu, slots used)
    gpu_loads = [0.0] * gpus
    for load in replicas:
        total, g, used = heapq.heappop(heap)
        gpu_loads[g] = total + load
        if used + 1 < per_gpu:
            heapq.heappush(heap, (gpu_loads[g], g, used + 1))
    return gpu_loads


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace")
    parser.add_argument("--gpus", type=int, default=64)
    args = parser.parse_args()

    start = time.perf_counter()
    with open(args.trace, encoding="utf-8") as f:
        aggregate = json.load(f)["counts"]
    read = time.perf_counter()
    balance = 0.0
    for loads in aggregate:
        gpu_loads = pack(loads, replicate(loads, len(loads) + args.gpus), args.gpus)
        balance += sum(gpu_loads) / len(gpu_loads) / max(max(gpu_loads), 1e-9)
    planned = time.perf_counter()
    print(f"read {1e3 * (read - start):.1f} ms, plan {1e3 * (planned - read):.1f} ms, "
          f"balancedness {balance / len(aggregate):.4f}")


if __name__ == "__main__":
    main()
