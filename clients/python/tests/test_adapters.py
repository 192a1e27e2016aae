"""The SGLang and vLLM adapters against each engine's documented contract, with a real
craft-planner and craft-agents behind them (layouts come through PlacementClient, loads go in
through EngineWorker), and the SGLang map against `craftctl plan --format sglang`."""

import json
import os
import subprocess
import sys
import types
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402
import torch  # noqa: E402

import craft  # noqa: E402
from craft import adapters  # noqa: E402
from craft.adapters import sglang, vllm  # noqa: E402
from cluster import Cluster, runfile, wait_for  # noqa: E402

MODEL = dict(num_layers=2, num_experts=8, top_k=2, bytes_per_expert=4096)
E = MODEL["num_experts"]
# Two MoE layers of a three-layer model: decoder layer 0 is dense (DeepSeek-style).
NUM_HIDDEN = 3
MOE = [1, 2]
LOADS = [[400, 50, 20, 10, 5, 5, 5, 5], [10, 10, 10, 10, 10, 10, 10, 300]]


class _CountingEngine(craft.Engine):
    """Reports windows only; no apply happens in these tests."""

    def current_version(self):
        return craft.INITIAL_VERSION

    def stage(self, prepare, cancelled):
        raise RuntimeError("this engine does not stage")

    def flip(self, version):
        pass

    def drop(self, version):
        pass


class AdapterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster(num_nodes=2, gpus_per_node=2, **MODEL)
        try:
            cls.cluster.start_planner()
            for node in range(2):
                cls.cluster.start_agent(node)
        except Exception:
            cls.cluster.close()
            raise
        cls.client = craft.PlacementClient(cls.cluster.address, **cls.cluster.tls("reader"))

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.cluster.close()

    def run(self, result=None):
        failures = len(result.failures) + len(result.errors) if result else 0
        outcome = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > failures:
            sys.stderr.write(self.cluster.logs() + "\n")
        return outcome

    def planned(self, algorithm, budget=-1):
        """A layout from the real planner's dry run on LOADS."""
        return self.client.plan({"layers": [{"counts": c} for c in LOADS],
                                 "algorithm": algorithm, "budget": budget}).layout

    def craftctl(self, *args):
        return subprocess.run([runfile("tools/craftctl/craftctl")] + list(args),
                              capture_output=True, text=True)

    # --- the engines' layout contracts ---------------------------------------------------------

    def assert_sglang_map(self, table, layout):
        """What SGLang's ExpertLocationMetadata needs of a map."""
        width = len(layout.layers[0].phy2log)
        self.assertEqual(len(table), NUM_HIDDEN)
        self.assertTrue(all(len(row) == width for row in table))
        self.assertEqual(width % layout.num_gpus, 0)  # _init_common: P % ep_size == 0
        for row in table:  # every expert somewhere, or SGLang's dispatch tables break
            self.assertEqual(set(row), set(range(E)))
        self.assertEqual(table[0], [p % E for p in range(width)])  # dense: trivial
        self.assertEqual(table[1], list(layout.layers[0].phy2log))
        self.assertEqual(table[2], list(layout.layers[1].phy2log))

    def assert_vllm_maps(self, maps, num_layers, num_replicas):
        """vLLM's rebalance_experts return contract (policy/abstract.py, eplb_state.py)."""
        phy2log, log2phy, logcnt = maps
        for t in maps:
            self.assertIsInstance(t, torch.Tensor)
            self.assertEqual(t.dtype, torch.int64)
        self.assertEqual(tuple(phy2log.shape), (num_layers, num_replicas))
        self.assertEqual(tuple(log2phy.shape), (num_layers, E, num_replicas - E + 1))
        self.assertEqual(tuple(logcnt.shape), (num_layers, E))
        self.assertTrue(bool((logcnt >= 1).all()), "an expert without a replica")
        self.assertEqual(logcnt.sum(dim=1).tolist(), [num_replicas] * num_layers)
        self.assertTrue(torch.equal((log2phy != -1).sum(dim=-1), logcnt))
        for l in range(num_layers):
            for e in range(E):
                n = int(logcnt[l, e])
                slots = log2phy[l, e].tolist()
                self.assertEqual(slots[n:], [-1] * (len(slots) - n))  # padded at the end
                self.assertEqual([int(phy2log[l, p]) for p in slots[:n]], [e] * n)

    # --- SGLang --------------------------------------------------------------------------------

    def test_sglang_map_agrees_with_craftctl(self):
        trace = os.path.join(self.cluster.dir, "trace.json")
        with open(trace, "w") as f:
            json.dump({"num_layers": 2, "num_experts": E, "counts": LOADS}, f)
        common = ["plan", "--loads", trace, "--gpus", "4", "--nodes", "2"]
        craft_json = os.path.join(self.cluster.dir, "layout.json")
        sglang_json = os.path.join(self.cluster.dir, "sglang.json")
        for algorithm in (["eplb"], ["craft", "--uniform", "--budget", "1"]):
            run = self.craftctl(*common, "--algorithm", *algorithm, "--out", craft_json)
            self.assertEqual(run.returncode, 0, run.stderr)
            run = self.craftctl(*common, "--algorithm", *algorithm, "--format", "sglang",
                                "--num-hidden-layers", str(NUM_HIDDEN), "--moe-layers", "1-2",
                                "--out", sglang_json)
            self.assertEqual(run.returncode, 0, run.stderr)
            with open(craft_json) as f:
                layout = adapters.layout_from_json(f.read())
            with open(sglang_json) as f:
                expected = f.read().strip()
            self.assertEqual(sglang.init_expert_location_json(layout, NUM_HIDDEN, "1-2"),
                             expected, algorithm)
            args = sglang.launch_args(layout)
            self.assertIn("--ep-num-redundant-experts %d --ep-size %d"
                          % (args["ep_num_redundant_experts"], args["ep_size"]), run.stderr)
        out = os.path.join(self.cluster.dir, "written.json")
        self.assertEqual(sglang.write_init_expert_location(out, layout, NUM_HIDDEN, MOE), args)
        with open(out) as f:
            self.assertEqual(json.load(f), json.loads(expected))

        # CRAFT's per-layer counts: both refuse, and both say why.
        craft_json = os.path.join(self.cluster.dir, "craft.json")
        run = self.craftctl(*common, "--algorithm", "craft", "--budget", "1", "--out", craft_json)
        self.assertEqual(run.returncode, 0, run.stderr)
        run = self.craftctl(*common, "--algorithm", "craft", "--budget", "1", "--format",
                            "sglang", "--num-hidden-layers", str(NUM_HIDDEN), "--moe-layers",
                            "1-2")
        self.assertNotEqual(run.returncode, 0)
        self.assertIn("same number of slots", run.stderr)
        with open(craft_json) as f:
            layout = adapters.layout_from_json(f.read())
        with self.assertRaisesRegex(ValueError, "not uniform.*--uniform"):
            sglang.init_expert_location_json(layout, NUM_HIDDEN, MOE)

    def test_sglang_layout_out_from_the_planner(self):
        committed = self.client.layout().committed  # "0.0", one replica per expert
        layout = self.planned("eplb")  # redundant slots, uniform
        for layout in (committed, layout):
            width = len(layout.layers[0].phy2log)
            checks = dict(ep_size=4, num_redundant_experts=width - E, num_logical_experts=E)
            table = sglang.physical_to_logical_map(layout, NUM_HIDDEN, MOE, **checks)
            self.assert_sglang_map(table, layout)
            args = sglang.update_expert_location_args(layout, NUM_HIDDEN, "1-2", **checks)
            self.assertEqual(args["physical_to_logical_map"].dtype, torch.int64)
            self.assertEqual(args["physical_to_logical_map"].tolist(), table)
            self.assertEqual(args["update_layer_ids"], MOE)
            self.assertEqual(args["version"], layout.version)
            self.assertEqual(list(json.loads(sglang.init_expert_location_json(
                layout, NUM_HIDDEN, MOE))), ["physical_to_logical_map"])
        self.assertGreater(len(layout.layers[0].phy2log), E)

        # The engine-side hook reads the committed layout from a watch.
        client = craft.PlacementClient(self.cluster.address, **self.cluster.tls("reader"))
        seen = []
        watcher = adapters.LayoutWatcher(client, on_commit=seen.append)
        try:
            got = watcher.wait(10)
            self.assertIsNotNone(got, watcher.error)
            self.assertEqual(got.version, committed.version)
            self.assertEqual([l.version for l in seen], [committed.version])
        finally:
            watcher.close()

    def test_sglang_refuses_what_it_cannot_load(self):
        uniform = self.planned("eplb")
        width = len(uniform.layers[0].phy2log)
        with self.assertRaisesRegex(ValueError, "not uniform.*--uniform"):
            sglang.physical_to_logical_map(self.planned("craft", 1), NUM_HIDDEN, MOE)
        with self.assertRaisesRegex(ValueError, "ep_size 8 .* 4 GPUs"):
            sglang.physical_to_logical_map(uniform, NUM_HIDDEN, MOE, ep_size=8)
        with self.assertRaisesRegex(ValueError, "--ep-num-redundant-experts %d" % (width - E)):
            sglang.physical_to_logical_map(uniform, NUM_HIDDEN, MOE, num_redundant_experts=2)
        with self.assertRaisesRegex(ValueError, "16 routed experts, the layout 8"):
            sglang.physical_to_logical_map(uniform, num_logical_experts=16)
        with self.assertRaisesRegex(ValueError, "2 MoE layers but the model has 3"):
            sglang.physical_to_logical_map(uniform, NUM_HIDDEN, "0-2")
        with self.assertRaisesRegex(ValueError, "ascend"):
            sglang.physical_to_logical_map(uniform, NUM_HIDDEN, [2, 1])
        with self.assertRaisesRegex(ValueError, "dimensions"):
            sglang.logical_count_to_trace(torch.ones(4, dtype=torch.int64))
        with self.assertRaisesRegex(ValueError, "negative"):
            sglang.logical_count_to_trace(-torch.ones(1, 2, E, dtype=torch.int64))
        with self.assertRaisesRegex(ValueError, "every window is empty"):
            sglang.logical_count_to_trace(torch.zeros(2, NUM_HIDDEN, E), MOE)

    # --- loads in (both engines, through EngineWorker) -----------------------------------------

    def test_loads_in_through_engine_workers(self):
        layout = self.client.layout().committed  # what both engines serve at start
        # SGLang's recorder: [B, N, E], all decoder layers (dense row 0 is zero), a pass of the
        # circular buffer still unfilled.
        count = torch.zeros(3, NUM_HIDDEN, E, dtype=torch.int32)
        count[0, 1:] = torch.tensor(LOADS)
        count[1, 1:] = torch.tensor(LOADS).flip(-1)
        trace = sglang.logical_count_to_trace(count, "1-2", top_k=2, src="recorder.pt")
        # An [N, E] dump is one pass.
        self.assertEqual(sglang.logical_count_to_trace(count[0], "1-2")["windows"], [LOADS])
        self.assertEqual((trace["num_layers"], trace["num_experts"]), (2, E))
        self.assertEqual(trace["windows"], [LOADS, [row[::-1] for row in LOADS]])
        self.assertEqual(trace["sglang_layers"], MOE)
        path = os.path.join(self.cluster.dir, "recorded.json")
        with open(path, "w") as f:
            json.dump(trace, f)
        run = self.craftctl("plan", "--loads", path, "--gpus", "4", "--algorithm", "eplb",
                            "--format", "sglang", "--num-hidden-layers", "3", "--moe-layers",
                            "1-2")
        self.assertEqual(run.returncode, 0, run.stderr)  # the C++ reader takes the trace

        workers = []
        try:
            for gpu in range(4):
                workers.append(craft.EngineWorker(
                    _CountingEngine(), "unix:" + self.cluster.socket_path(gpu // 2), gpu,
                    model=MODEL, transfer_endpoint="127.0.0.1:%d" % (1 + gpu)).start())
            self.assertTrue(all(w.wait_attached(20) for w in workers))
            before = self.client.layout().windows_ingested
            window_id = workers[0].window_id()
            sent = [sglang.report_logical_count(w, count, "1-2", layout, window_id)
                    for w in workers]
            # Every GPU's slots together hold exactly the recorder's tokens.
            for l in range(2):
                self.assertEqual(sum(sum(s[l]) for s in sent), int(count[:, 1 + l].sum()))
            self.assertTrue(wait_for(
                lambda: self.client.layout().windows_ingested > before, 20),
                "the planner ingested no SGLang window")

            # vLLM: expert_load_window [W, L, P] per physical expert, summed over ranks.
            window = torch.randint(0, 50, (4, 2, E), dtype=torch.int32)
            before = self.client.layout().windows_ingested
            sent = [vllm.report_load_window(w, window, layout, window_id=window_id + 1)
                    for w in workers]
            self.assertEqual(sum(sum(map(sum, s)) for s in sent), int(window.sum()))
            self.assertEqual(sent[1][0], window[:, 0, 2:4].sum(dim=0).tolist())
            self.assertTrue(wait_for(
                lambda: self.client.layout().windows_ingested > before, 20),
                "the planner ingested no vLLM window")
        finally:
            for w in workers:
                w.stop()

    def test_vllm_load_window_to_logical(self):
        layout = self.planned("eplb")
        phy2log = torch.tensor([list(l.phy2log) for l in layout.layers])
        window = torch.randint(0, 100, (5, 2, phy2log.shape[1]), dtype=torch.int32)
        window[3] = 0  # an unrecorded pass
        # What EplbState.rearrange does with the window: scatter_add by physical_to_logical_map.
        expected = torch.zeros(5, 2, E, dtype=torch.int32).scatter_add_(
            -1, phy2log.unsqueeze(0).expand_as(window), window)
        self.assertEqual(vllm.logical_load(window, phy2log, E), expected.tolist())
        trace = vllm.load_window_to_trace(window, phy2log, E)
        self.assertEqual(trace["windows"], expected[[0, 1, 2, 4]].tolist())
        counts = [vllm.gpu_slot_counts(window, g, 4) for g in range(4)]
        self.assertEqual([sum(c[1]) for c in counts],
                         window[:, 1].view(5, 4, -1).sum(dim=(0, 2)).tolist())
        with self.assertRaisesRegex(ValueError, "do not divide over 5 ranks"):
            vllm.gpu_slot_counts(window, 0, 5)
        with self.assertRaisesRegex(ValueError, "physical_to_logical_map is not"):
            vllm.logical_load(window, phy2log[:1], E)
        with self.assertRaisesRegex(ValueError, "outside"):
            vllm.logical_load(window, phy2log, 4)

    # --- vLLM policy ---------------------------------------------------------------------------

    def test_vllm_policy_returns_crafts_map(self):
        layout = self.planned("eplb")
        width = len(layout.layers[0].phy2log)
        policy = vllm.CraftEplbPolicy(lambda: layout, fallback=False)
        weight = torch.randint(0, 1000, (2, E))
        old = torch.arange(width).repeat(2, 1) % E
        for extra in ((), (old,)):  # add_model passes five arguments, rearrange six
            maps = policy.rebalance_experts(weight, width, 1, 2, 4, *extra)
            self.assert_vllm_maps(maps, 2, width)
            self.assertEqual(maps[0].tolist(), [list(l.phy2log) for l in layout.layers])
            self.assertEqual(policy.last_source, "craft " + layout.version)

        # Straight from the planner's committed layout (GetLayout on every rebalance).
        policy = vllm.CraftEplbPolicy(self.client, fallback=False)
        maps = policy.rebalance_experts(weight, E, 1, 2, 4)
        self.assert_vllm_maps(maps, 2, E)
        self.assertEqual(maps[0].tolist(), [list(range(E))] * 2)
        self.assertEqual(policy.last_source, "craft 0.0")

    def test_vllm_policy_falls_back(self):
        uniform = self.planned("eplb")
        width = len(uniform.layers[0].phy2log)
        calls = []

        class Fallback:  # a policy of the five-argument contract
            @classmethod
            def rebalance_experts(cls, weight, num_replicas, num_groups, num_nodes, num_ranks):
                calls.append(num_replicas)
                phy2log = torch.arange(num_replicas).repeat(weight.shape[0], 1) % weight.shape[1]
                return phy2log, None, None

        weight = torch.ones(2, E, dtype=torch.int64)
        policy = vllm.CraftEplbPolicy(uniform, fallback=Fallback)
        # The engine runs 16 physical experts; craft planned 12.
        result = policy.rebalance_experts(weight, 16, 1, 2, 4, torch.zeros(2, 16))
        self.assertEqual(calls, [16])
        self.assertEqual(tuple(result[0].shape), (2, 16))
        self.assertIn("16 physical experts", policy.last_source)
        with self.assertRaisesRegex(ValueError, "16 physical experts.*has %d" % width):
            vllm.CraftEplbPolicy(uniform, fallback=False).rebalance_experts(weight, 16, 1, 2, 4)
        with self.assertRaisesRegex(ValueError, "8 EP ranks"):
            vllm.layout_maps(uniform, num_ranks=8)

        # A non-uniform layout (CRAFT's per-layer counts) never reaches vLLM.
        nonuniform = self.planned("craft", 1)
        with self.assertRaisesRegex(ValueError, "not uniform.*--uniform"):
            vllm.layout_maps(nonuniform)
        policy = vllm.CraftEplbPolicy(nonuniform, fallback=Fallback)
        policy.rebalance_experts(weight, len(nonuniform.layers[0].phy2log) // 4 * 4, 1, 2, 4)
        self.assertIn("not uniform", policy.last_source)
        with self.assertRaisesRegex(ValueError, "not uniform"):
            vllm.CraftEplbPolicy(nonuniform, fallback=False).rebalance_experts(weight, 8, 1, 2, 4)

        # The planner gone: the last layout it gave stands; none at all falls back.
        answers = [uniform]

        def source():
            if not answers:
                raise craft.CraftError("GetLayout", grpc.StatusCode.UNAVAILABLE, "gone")
            return answers.pop()

        policy = vllm.CraftEplbPolicy(source, fallback=False)
        first = policy.rebalance_experts(weight, width, 1, 2, 4)
        second = policy.rebalance_experts(weight, width, 1, 2, 4)
        self.assertTrue(torch.equal(first[0], second[0]))
        with self.assertRaisesRegex(ValueError, "craft has no layout"):
            vllm.CraftEplbPolicy(source, fallback=False).rebalance_experts(weight, 8, 1, 2, 4)

        with self.assertRaisesRegex(ValueError, r"\[layers, logical experts\]"):
            policy.rebalance_experts(torch.ones(2, 3, E), width, 1, 2, 4)
        with self.assertRaisesRegex(ValueError, "multiple of num_ranks"):
            policy.rebalance_experts(weight, 10, 1, 2, 4)

    def test_vllm_register(self):
        policy = vllm.CraftEplbPolicy(self.client)
        state = types.SimpleNamespace(policy="DefaultEplbPolicy")
        self.assertEqual(vllm.register(policy, eplb_state=state), "DefaultEplbPolicy")
        self.assertIs(state.policy, policy)
        if "vllm" not in sys.modules:
            with self.assertRaisesRegex(ImportError, "not importable"):
                vllm.register(policy)
        # Where vLLM is importable, the policy takes the place of a name in EPLB_POLICIES
        # (vllm/distributed/eplb/policy/__init__.py); a stand-in package shows the mechanics.
        names = ["vllm", "vllm.distributed", "vllm.distributed.eplb",
                 "vllm.distributed.eplb.policy"]
        saved = {n: sys.modules.get(n) for n in names}
        try:
            for n in names:
                sys.modules[n] = types.ModuleType(n)
            for parent, child in zip(names, names[1:]):
                setattr(sys.modules[parent], child.rsplit(".", 1)[1], sys.modules[child])
            table = {"default": "DefaultEplbPolicy"}
            sys.modules[names[-1]].EPLB_POLICIES = table
            self.assertEqual(vllm.register(policy), "DefaultEplbPolicy")
            self.assertIs(table["default"], policy)
            with self.assertRaisesRegex(ValueError, "no EPLB policy 'craft'"):
                vllm.register(policy, name="craft")
        finally:
            for n, module in saved.items():
                if module is None:
                    sys.modules.pop(n, None)
                else:
                    sys.modules[n] = module


if __name__ == "__main__":
    unittest.main()
