"""The torch MoE engine end to end: 2 nodes x 2 GPU ranks (CPU processes in one gloo group),
a real craft-planner and two craft-agents (tests/cluster.py). Skewed traffic on the initial
layout, a forced re-plan, every rank flips to the new version with every slot's weights equal to
its expert's checkpoint weights (moved by torch.distributed), the measured balancedness rises,
and the forward on a fixed batch gives the same output before and after."""

import datetime
import multiprocessing
import os
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_CLIENT = os.path.abspath(os.path.join(HERE, "..", ".."))
for path in (HERE, PYTHON_CLIENT, os.path.join(PYTHON_CLIENT, "tests")):
    if path not in sys.path:
        sys.path.insert(0, path)

import numpy  # noqa: E402

import craft  # noqa: E402
from cluster import Cluster, free_port, wait_for  # noqa: E402
from moe_engine import Checkpoint, TorchMoEEngine, tag_salt  # noqa: E402
from moe_ranks import Ranks  # noqa: E402

NODES, GPUS_PER_NODE = 2, 2
MODEL = dict(num_layers=3, num_experts=16, top_k=2)
WINDOW_MS = 250
WINDOWS = 8  # measured per layout


def balancedness(ranks, windows):
    """Mean over windows and layers of mean / max per-GPU tokens (README, "balancedness")."""
    values = []
    for w in windows:
        for loads in ranks.gpu_loads(w):
            if max(loads):
                values.append(sum(loads) / len(loads) / max(loads))
    return sum(values) / len(values)


class TorchMoETest(unittest.TestCase):
    def setUp(self):
        checkpoint = Checkpoint(**MODEL)
        self.cluster = Cluster(num_nodes=NODES, gpus_per_node=GPUS_PER_NODE,
                               bytes_per_expert=checkpoint.bytes_per_expert, budget=4, **MODEL)
        self.addCleanup(self.cluster.close)
        self.cluster.start_planner()
        for node in range(NODES):
            self.cluster.start_agent(node)
        self.client = craft.PlacementClient(self.cluster.address, timeout_s=10,
                                            **self.cluster.tls("ops"))
        self.addCleanup(self.client.close)
        self.ranks = Ranks(NODES * GPUS_PER_NODE, NODES,
                           [self.cluster.socket_path(n) for n in range(NODES)], MODEL, WINDOW_MS,
                           free_port())
        self.addCleanup(self.ranks.stop)

    def run(self, result=None):
        failures = len(result.failures) + len(result.errors) if result else 0
        outcome = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > failures:
            sys.stderr.write(getattr(self, "_logs", "") + "\n")
        return outcome

    def check(self, condition, message):
        if not condition:
            self._logs = self.cluster.logs()
        self.assertTrue(condition, message)

    def probe(self, count):
        """The forward of the fixed batch, from every rank (all ranks run it at one step)."""
        self.ranks.send("probe")
        self.check(self.ranks.wait(lambda r: all(len(p) >= count for p in r.probes.values()), 20),
                   "no probe output from every rank: %s" % {r: len(p) for r, p
                                                            in self.ranks.probes.items()})
        outputs = [p[count - 1] for p in self.ranks.probes.values()]
        for output in outputs[1:]:  # the combine leaves every rank with the same output
            numpy.testing.assert_array_equal(output, outputs[0])
        return outputs[0]

    def verify(self, version):
        self.ranks.send("verify")
        self.check(self.ranks.wait(lambda r: len(r.verifies) == r.world_size, 10),
                   "not every rank verified: %s" % self.ranks.verifies)
        for rank, v in sorted(self.ranks.verifies.items()):
            self.assertEqual(v["version"], version, "rank %d" % rank)
            self.assertGreater(v["checked"], 0)
            self.assertEqual(v["bad"], [], "rank %d: slots whose weights are not their expert's"
                             % rank)
        return self.ranks.verifies

    def measure(self, version):
        self.check(self.ranks.wait(lambda r: len(r.windows(version)) > WINDOWS, 30),
                   "fewer than %d windows on %s: %s" % (WINDOWS, version, self.ranks.versions))
        # The first window on a version may be the one it flipped in; measure the ones after.
        return balancedness(self.ranks, self.ranks.windows(version)[1: WINDOWS + 1])

    def test_skewed_traffic_replan_moves_weights_and_balances(self):
        start = time.monotonic()
        self.check(self.ranks.wait(lambda r: len(r.versions) == r.world_size, 60),
                   "not every rank stepped: %s" % self.ranks.versions)
        self.check(wait_for(lambda: len([a for a in self.client.agents() if a.connected
                                         and len(a.gpus) == GPUS_PER_NODE]) == NODES, 20),
                   "agents: %s" % self.client.agents())
        before_output = self.probe(1)
        self.verify("0.0")
        before = self.measure("0.0")
        self.check(wait_for(lambda: self.client.layout().windows_ingested >= WINDOWS, 20),
                   "the planner ingested no windows: %s" % self.client.layout())

        response = self.client.replan(force=True)
        self.check(response.version, "no apply started: %s" % response.decision)
        version = response.version
        self.check(self.ranks.wait(lambda r: all(r.versions.get(g) == version
                                                 for g in range(r.world_size)), 30),
                   "not every rank flipped to %s: %s" % (version, self.ranks.versions))
        self.check(wait_for(lambda: self.client.layout().committed.version == version, 10),
                   "the planner did not commit %s" % version)
        layout = self.client.layout().committed
        slots = sum(len(l.phy2log) for l in layout.layers)
        self.assertGreater(slots, MODEL["num_layers"] * MODEL["num_experts"],
                           "the skewed load added no replica")

        verified = self.verify(version)
        # Replicas came over torch.distributed from the ranks the Prepares named.
        self.assertGreater(sum(v["bytes_received"] for v in verified.values()), 0)
        self.assertEqual([v["flips"] for v in verified.values()], [1] * len(verified))
        after = self.measure(version)
        after_output = self.probe(2)
        numpy.testing.assert_allclose(after_output, before_output, rtol=1e-4, atol=1e-5)
        # The planner measures it too, from the windows the ranks reported on the new version.
        planner = []
        wait_for(lambda: planner.append(self.client.layout().measured_balancedness)
                 or planner[-1] > before + 0.05, 10)
        sys.stderr.write("balancedness %.4f -> %.4f on %s (%d slots; the planner measures "
                         "%.4f), output max diff %.2e, %.1f s\n"
                         % (before, after, version, slots, planner[-1],
                            float(abs(after_output - before_output).max()),
                            time.monotonic() - start))
        self.assertGreater(after, before + 0.05)
        self.assertGreater(planner[-1], before + 0.05)


def staging_drill(rank, port, results):
    """One of two ranks staging Prepares by hand (no agent): 1.1 is cancelled on rank 0 while
    rank 1 never sends (its Abort came first), 1.3 passes its deadline on rank 1 while rank 0
    never receives, and 1.2 and 1.4 then move the expert as if nothing had been left behind."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:%d" % port, rank=rank,
                            world_size=2, timeout=datetime.timedelta(seconds=30))
    group = dist.new_group(backend="gloo", timeout=datetime.timedelta(days=1))
    engine = TorchMoEEngine(rank, 2, 1, Checkpoint(num_layers=1, num_experts=4, top_k=2), group,
                            window_ms=250)
    outcomes = []
    for version, stagers in (("1.1", {0}), ("1.2", {0, 1}), ("1.3", {1}), ("1.4", {0, 1})):
        if rank not in stagers:
            continue
        # GPU 0 gets a replica of expert 2, which GPU 1 holds in global slot 2 of 0.0.
        prepare = craft.agent_pb2.Prepare(timeout_ms=500 if version == "1.3" else 10000)
        prepare.layout.CopyFrom(craft.layout_pb2.Layout(version=version, num_experts=4,
                                                        num_gpus=2, num_nodes=1))
        prepare.layout.layers.add(slots_per_gpu=[3, 2], phy2log=[0, 1, 2, 2, 3])
        prepare.transfers.add(layer=0, expert=2, dst_gpu=0, dst_slot=2, src_gpu=1, src_slot=2,
                              src_version="0.0")
        cancelled = threading.Event()
        if version == "1.1":
            threading.Timer(0.5, cancelled.set).start()
        try:
            result = engine.stage(prepare, cancelled)
            outcomes.append((version, "staged", result.bytes_received))
        except craft.StagingCancelled:
            outcomes.append((version, "cancelled", 0))
        except RuntimeError as e:
            outcomes.append((version, "failed: %s" % e, 0))
    results.put((rank, outcomes, engine.abandoned_exchanges))
    # The abandoned operations are still posted: tearing gloo down would abort the process.
    results.close()
    results.join_thread()
    os._exit(0)


class StagingAbandonTest(unittest.TestCase):
    """An exchange one side gives up on (an Abort, a deadline) leaves gloo operations posted that
    nothing can cancel; the next versions' transfers must still match and carry the right
    bytes (stage checks every expert's checksum)."""

    def test_cancelled_and_timed_out_exchanges_do_not_disturb_later_ones(self):
        self.assertEqual(len({tag_salt(v) for v in ("1.1", "1.2", "1.3", "1.4")}), 4)
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        port = free_port()
        ranks = [context.Process(target=staging_drill, args=(r, port, results), daemon=True)
                 for r in range(2)]
        for p in ranks:
            p.start()
        try:
            got = dict((rank, (outcomes, abandoned)) for rank, outcomes, abandoned
                       in (results.get(timeout=60) for _ in ranks))
        finally:
            for p in ranks:
                p.join(10)
                if p.is_alive():
                    p.terminate()
        self.assertEqual([p.exitcode for p in ranks], [0, 0])
        nbytes = Checkpoint(num_layers=1, num_experts=4, top_k=2).bytes_per_expert
        self.assertEqual(got[0], ([("1.1", "cancelled", 0), ("1.2", "staged", nbytes),
                                   ("1.4", "staged", nbytes)], 1))
        self.assertEqual(got[1][0][0], ("1.2", "staged", 0))
        self.assertEqual(got[1][0][1][0], "1.3")
        self.assertIn("not done within 0.5 s", got[1][0][1][1])
        self.assertEqual(got[1][0][2:], [("1.4", "staged", 0)])
        self.assertEqual(got[1][1], 1)


if __name__ == "__main__":
    unittest.main()
