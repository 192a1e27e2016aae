"""PlacementClient against a real craft-planner (mutual TLS) with real agents."""

import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import craft  # noqa: E402
from cluster import Cluster, wait_for  # noqa: E402


class PlacementClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster(num_nodes=2, gpus_per_node=2)
        try:
            cls.cluster.start_planner()
            for node in range(2):
                cls.cluster.start_agent(node)
        except Exception:
            cls.cluster.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def client(self, name="ops", **kwargs):
        c = craft.PlacementClient(self.cluster.address, **self.cluster.tls(name), **kwargs)
        self.addCleanup(c.close)
        return c

    def run(self, result=None):
        failures = len(result.failures) + len(result.errors) if result else 0
        outcome = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > failures:
            sys.stderr.write(self.cluster.logs() + "\n")
        return outcome

    def test_layout_agents_explain(self):
        client = self.client()
        status = client.layout()
        self.assertEqual(status.committed.version, "0.0")
        self.assertEqual(status.committed.num_gpus, 4)
        self.assertEqual(len(status.committed.layers), 2)
        self.assertGreaterEqual(status.epoch, 1)
        wait_for(lambda: len([a for a in client.agents() if a.connected]) == 2, 20)
        agents = [a for a in client.agents() if a.connected]
        self.assertEqual(sorted(a.node for a in agents), ["node0", "node1"])
        self.assertEqual(sorted(g for a in agents for g in a.gpus), [0, 1, 2, 3])
        self.assertIsInstance(client.explain(), craft.placement_pb2.ExplainResponse)

    def test_plan_dry_run(self):
        client = self.client("reader")
        loads = [[100, 50, 20, 10, 5, 5, 5, 5], [10, 10, 10, 10, 10, 10, 10, 80]]
        response = client.plan({"layers": [{"counts": c} for c in loads], "algorithm": "craft",
                                "budget": 4})
        self.assertEqual(len(response.layout.layers), 2)
        self.assertEqual(len(response.replicas_per_layer), 2)
        self.assertGreater(response.predicted_balancedness, 0)

    def test_plan_bad_input_is_a_clean_error(self):
        client = self.client()
        # Layers of different widths, and a negative count: the planner refuses.
        with self.assertRaises(craft.CraftError) as e:
            client.plan(craft.placement_pb2.PlanRequest(
                layers=[craft.placement_pb2.LayerLoads(counts=[1, 2, 3]),
                        craft.placement_pb2.LayerLoads(counts=[1, -2])]))
        self.assertEqual(e.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("Plan", str(e.exception))
        self.assertTrue(e.exception.details)
        # Not a PlanRequest at all: refused before any call.
        with self.assertRaises(ValueError):
            client.plan({"layers": "nonsense"})
        with self.assertRaises(TypeError):
            client.plan([[1, 2]])

    def test_replan_needs_admin(self):
        with self.assertRaises(craft.CraftError) as e:
            self.client("reader").replan()
        self.assertEqual(e.exception.code, grpc.StatusCode.PERMISSION_DENIED)
        # The bearer token grants the admin role to a reader's certificate.
        response = self.client("reader", token_file=self.cluster.token_file).replan()
        self.assertIsInstance(response, craft.placement_pb2.ReplanResponse)
        self.assertTrue(response.decision)
        self.assertTrue(self.client("ops").replan().decision)

    def test_transport_errors(self):
        # A certificate for another server name: the handshake fails, UNAVAILABLE.
        client = self.client("ops", server_name="not-the-planner", timeout_s=2)
        with self.assertRaises(craft.CraftError) as e:
            client.layout()
        self.assertEqual(e.exception.code, grpc.StatusCode.UNAVAILABLE)
        with self.assertRaises(ValueError):
            craft.PlacementClient(self.cluster.address, tls_cert="x.pem")
        with self.assertRaises(ValueError):
            craft.PlacementClient(self.cluster.address, insecure=True, **self.cluster.tls("ops"))
        bad_token = os.path.join(self.cluster.dir, "bad-token")
        with open(bad_token, "w") as f:
            f.write("two words\n")
        with self.assertRaises(ValueError):
            craft.PlacementClient(self.cluster.address, token_file=bad_token,
                                  **self.cluster.tls("ops"))

    def test_zz_planner_restart(self):  # last: it restarts the shared planner
        client = self.client(timeout_s=10)
        first = client.layout()
        seen = []

        errors = []

        def watch():
            try:
                for status in client.watch():
                    seen.append(status)
            except Exception as e:  # recorded for the assertion below
                errors.append(e)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        self.assertTrue(wait_for(lambda: seen, 10), "watch sent nothing")
        self.assertEqual(seen[0].committed.version, first.committed.version)

        self.cluster.stop_planner()
        with self.assertRaises(craft.CraftError) as e:
            craft.PlacementClient(self.cluster.address, timeout_s=0.5,
                                  **self.cluster.tls("ops")).layout()
        self.assertEqual(e.exception.code, grpc.StatusCode.UNAVAILABLE)
        self.cluster.start_planner()

        # The same client's next call works on the new planner (a new epoch).
        after = client.layout()
        self.assertGreater(after.epoch, first.epoch)
        # The watch outlived the restart (it reconnects from the last version seen; the
        # engine test sees a commit arrive on such a watch).
        time.sleep(0.5)
        self.assertTrue(watcher.is_alive(), "the watch ended: %s" % errors)
        self.assertEqual(errors, [])

if __name__ == "__main__":
    unittest.main()
