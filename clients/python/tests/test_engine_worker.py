"""EngineWorker: the version rules against a scripted agent, then 2 nodes x 2 GPUs of
in-memory engines attached to real craft-agents and a real planner: skewed windows, a
forced replan commits a new version, every engine flips with the right expert bytes,
and workers reattach after an agent restart."""

import collections
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import craft  # noqa: E402
from craft.v1 import agent_pb2, worker_pb2  # noqa: E402
from cluster import Cluster, wait_for  # noqa: E402
from engine import InMemoryEngine, Traffic  # noqa: E402

MODEL = dict(num_layers=2, num_experts=8, top_k=2, bytes_per_expert=4096)


class ScriptedEngine(craft.Engine):
    def __init__(self):
        self.version = "0.0"
        self.staged = set()
        self.calls = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail = set()

    def current_version(self):
        return self.version

    def stage(self, prepare, cancelled):
        version = prepare.layout.version
        self.calls.append(("stage", version))
        while not self.gate.wait(0.01):
            if cancelled.is_set():
                raise craft.StagingCancelled()
        if version in self.fail:
            raise RuntimeError("no memory for %s" % version)
        self.staged.add(version)
        return craft.StageResult(bytes_received=4096)

    def flip(self, version):
        self.calls.append(("flip", version))
        self.staged.discard(version)
        self.version = version

    def drop(self, version):
        self.calls.append(("drop", version))
        self.staged.discard(version)


class VersionRulesTest(unittest.TestCase):
    """The worker's answers, driven command by command as the agent would."""

    def setUp(self):
        self.engine = ScriptedEngine()
        self.worker = craft.EngineWorker(self.engine, "unix:/nonexistent", 0, model=MODEL)
        self.sent = collections.deque()
        self.worker._out = self.sent  # as if a stream were open
        control = threading.Thread(target=self.worker._control_loop, daemon=True)
        control.start()
        self.worker._threads.append(control)
        self.addCleanup(self.worker.stop)

    def command(self, kind, version, **kwargs):
        if kind == "prepare":
            body = agent_pb2.Prepare(**kwargs)
            body.layout.version = version
            self.worker._handle_command(worker_pb2.WorkerCommand(prepare=body))
        elif kind == "commit":
            self.worker._handle_command(
                worker_pb2.WorkerCommand(commit=agent_pb2.Commit(version=version)))
        else:
            self.worker._handle_command(
                worker_pb2.WorkerCommand(abort=agent_pb2.Abort(version=version)))

    def answers(self, n, timeout=5):
        self.assertTrue(wait_for(lambda: len(self.sent) >= n, timeout),
                        "expected %d answers, got %s" % (n, list(self.sent)))
        time.sleep(0.05)  # and no more
        out = [(m.status.version, worker_pb2.WorkerState.Name(m.status.state), m.status.error)
               for m in self.sent]
        self.sent.clear()
        return out

    def test_prepare_commit_abort(self):
        self.command("prepare", "0.0")  # the serving version: READY at once
        self.assertEqual(self.answers(1), [("0.0", "READY", "")])
        self.assertEqual(self.engine.calls, [])
        self.command("commit", "1.1")  # never prepared
        [(v, state, error)] = self.answers(1)
        self.assertEqual((v, state), ("1.1", "FAILED"))
        self.assertIn("not staged", error)
        self.command("abort", "1.9")  # never prepared
        self.assertEqual(self.answers(1)[0][:2], ("1.9", "FAILED"))
        self.command("prepare", "1.1")
        self.assertEqual(self.answers(1), [("1.1", "READY", "")])
        self.command("prepare", "1.1")  # already staged: READY without staging again
        self.assertEqual(self.answers(1), [("1.1", "READY", "")])
        self.assertEqual(self.engine.calls, [("stage", "1.1")])
        self.command("commit", "1.1")
        self.assertEqual(self.answers(1), [("1.1", "FLIPPED", "")])
        self.command("commit", "1.1")  # serving: FLIPPED again
        self.assertEqual(self.answers(1), [("1.1", "FLIPPED", "")])
        self.command("abort", "1.1")  # serving
        self.assertEqual(self.answers(1)[0][:2], ("1.1", "FAILED"))
        self.command("prepare", "1.2")
        self.command("abort", "1.2")  # staged: dropped
        self.assertEqual(self.answers(2), [("1.2", "READY", ""), ("1.2", "DROPPED", "")])
        self.command("abort", "1.2")  # prepared before, no longer staged
        self.assertEqual(self.answers(1), [("1.2", "DROPPED", "")])
        self.engine.fail.add("1.3")
        self.command("prepare", "1.3")
        self.assertEqual(self.answers(1), [("1.3", "FAILED", "no memory for 1.3")])
        self.assertEqual(self.worker.stats().flips, 1)

    def test_newer_prepare_cancels_staging(self):
        self.engine.gate.clear()  # staging blocks until cancelled
        self.command("prepare", "2.1")
        self.assertTrue(wait_for(lambda: ("stage", "2.1") in self.engine.calls, 5))
        self.engine.gate.set()
        self.engine.gate.clear()
        self.command("prepare", "2.2")  # cancels 2.1: no answer for it
        self.engine.gate.set()
        self.assertEqual(self.answers(1), [("2.2", "READY", "")])
        self.assertIn(("drop", "2.1"), self.engine.calls)
        self.command("commit", "2.1")
        self.assertEqual(self.answers(1)[0][:2], ("2.1", "FAILED"))
        self.command("commit", "2.2")
        self.assertEqual(self.answers(1), [("2.2", "FLIPPED", "")])

    def test_abort_cancels_staging(self):
        self.engine.gate.clear()
        self.command("prepare", "3.1")
        self.assertTrue(wait_for(lambda: ("stage", "3.1") in self.engine.calls, 5))
        self.command("abort", "3.1")
        self.assertEqual(self.answers(1), [("3.1", "DROPPED", "")])

    def test_resync_holds_windows(self):
        self.command("prepare", "4.1", load_missing_from_checkpoint=True)
        self.assertEqual(self.answers(1), [("4.1", "READY", "")])
        self.assertTrue(self.worker.holding)
        self.worker.report_window(1, [[1, 2], [3, 4]], "0.0")
        self.assertEqual(self.worker.stats().windows_held, 1)
        self.command("commit", "4.1")
        self.assertEqual(self.answers(1), [("4.1", "FLIPPED", "")])
        self.assertFalse(self.worker.holding)
        self.worker.report_window(2, [[1, 2], [3, 4]])
        [window] = list(self.sent)
        self.assertEqual((window.window.layout_version, window.window.window_id,
                          window.window.start_unix_ms), ("4.1", 2, 2000))
        with self.assertRaises(ValueError):
            self.worker.report_window(3, [[1, 2]])


class EngineWorkerClusterTest(unittest.TestCase):
    WINDOW_MS = 200

    def setUp(self):
        self.cluster = Cluster(num_nodes=2, gpus_per_node=2, **MODEL)
        self.addCleanup(self.cluster.close)
        self.cluster.start_planner()
        for node in range(2):
            self.cluster.start_agent(node)
        self.client = craft.PlacementClient(self.cluster.address, timeout_s=10,
                                            **self.cluster.tls("ops"))
        self.addCleanup(self.client.close)
        self.watched, self.watch_errors = [], []

        def watch():
            try:
                for status in self.client.watch():
                    self.watched.append(status.committed.version)
            except Exception as e:  # recorded for the assertions
                self.watch_errors.append(e)

        threading.Thread(target=watch, daemon=True).start()
        initial = craft.contiguous_layout(MODEL["num_layers"], MODEL["num_experts"], 4, 2)
        traffic = Traffic(MODEL["num_layers"], MODEL["num_experts"], MODEL["top_k"], tokens=256,
                          skew=2.0)
        self.engines, self.workers = {}, {}
        for gpu in range(4):
            engine = InMemoryEngine(gpu, initial, MODEL["bytes_per_expert"], self.engines,
                                    traffic, self.WINDOW_MS)
            worker = craft.EngineWorker(engine, "unix:" + self.cluster.socket_path(gpu // 2), gpu,
                                        model=MODEL, transfer_endpoint="127.0.0.1:%d" % (1 + gpu),
                                        memory_bytes=1 << 30, window_ms=self.WINDOW_MS,
                                        max_backoff_s=1.0)
            self.engines[gpu], self.workers[gpu] = engine, worker
        for gpu in range(4):
            self.workers[gpu].start()
            self.engines[gpu].start(self.workers[gpu])
            self.addCleanup(self.workers[gpu].stop)
            self.addCleanup(self.engines[gpu].stop)

    def run(self, result=None):
        failures = len(result.failures) + len(result.errors) if result else 0
        outcome = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > failures:
            sys.stderr.write(getattr(self, "_logs", "") + "\n")
        return outcome

    def keep_logs(self):
        self._logs = self.cluster.logs()

    def commit_everywhere(self, previous):
        # Until every GPU reported a window id, the planner has no complete window to plan
        # from and says so.
        responses = []

        def replan():
            responses.append(self.client.replan(force=True))
            return responses[-1].version

        if not wait_for(replan, 20, interval=0.2):
            self.keep_logs()
        response = responses[-1]
        self.assertTrue(response.version, "no apply started: %s" % response.decision)
        self.assertNotEqual(response.version, previous)
        committed = wait_for(
            lambda: self.client.layout().committed.version == response.version
            and all(e.current_version() == response.version for e in self.engines.values()), 30)
        if not committed:
            self.keep_logs()
        self.assertTrue(committed, "version %s not committed on every engine: %s (planner: %s)"
                        % (response.version, [e.current_version() for e in self.engines.values()],
                           self.client.layout().committed.version))
        for gpu, engine in self.engines.items():
            version, checked = engine.verify()
            self.assertEqual(version, response.version)
            self.assertGreater(checked, 0)
        return response.version

    def test_attach_report_replan_flip_reconnect(self):
        attached = all(w.wait_attached(20) for w in self.workers.values())
        if not attached:
            self.keep_logs()
        self.assertTrue(attached, [w.stats() for w in self.workers.values()])
        self.assertTrue(wait_for(lambda: len([a for a in self.client.agents() if a.connected
                                              and len(a.gpus) == 2]) == 2, 20),
                        self.client.agents())
        self.assertTrue(wait_for(lambda: self.client.layout().windows_ingested >= 8, 20),
                        "no windows ingested: %s" % self.client.layout())
        before = self.client.layout()

        first = self.commit_everywhere("0.0")
        after = self.client.layout()
        layers = after.committed.layers
        self.assertGreater(sum(len(l.phy2log) for l in layers),
                           MODEL["num_layers"] * MODEL["num_experts"],
                           "the skewed load added no replica")
        self.assertEqual(sum(w.stats().flips for w in self.workers.values()), 4)
        # Replicas came from other GPUs' engines, as the Prepares' transfers said.
        self.assertGreater(sum(w.stats().bytes_received for w in self.workers.values()), 0)
        self.assertTrue(all(w.stats().prepares_ready >= 1 for w in self.workers.values()))
        self.assertGreater(after.epoch, 0)
        self.assertEqual(before.committed.version, "0.0")

        # A planner restart and an agent restart: the agent's workers reattach with backoff,
        # announce the version they serve, and take part in the next apply; the watch
        # reconnects by itself and shows that commit.
        self.assertTrue(wait_for(lambda: self.watched and self.watched[-1] == first, 10),
                        self.watched)
        attaches = [self.workers[g].stats().attaches for g in (0, 1)]
        self.cluster.agents[0].stop()
        self.cluster.stop_planner()
        self.cluster.start_planner()
        self.cluster.start_agent(0)
        self.assertTrue(wait_for(lambda: all(self.workers[g].stats().attaches > attaches[g]
                                             and self.workers[g].attached for g in (0, 1)), 20),
                        [self.workers[g].stats() for g in (0, 1)])
        self.assertTrue(wait_for(lambda: len([a for a in self.client.agents() if a.connected
                                              and a.committed_version == first]) == 2, 20))
        second = self.commit_everywhere(first)
        self.assertTrue(wait_for(lambda: self.watched[-1] == second, 10), self.watched)
        self.assertEqual(self.watch_errors, [])


if __name__ == "__main__":
    unittest.main()
