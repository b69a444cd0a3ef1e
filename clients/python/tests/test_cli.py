"""`python3 -m fleetlink_node` as a real process: env fallbacks, the conformance handlers, SIGTERM → exit 0."""

import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))

from fake_hub import ENROLL_TOKEN, FakeHub  # noqa: E402

PKG = os.path.join(os.path.dirname(__file__), "..")


class CliTest(unittest.TestCase):
    def setUp(self):
        self.hub = FakeHub()
        self.work = tempfile.mkdtemp()

    def tearDown(self):
        self.hub.close()

    def start(self, *args, env=None):
        p = subprocess.Popen(
            [sys.executable, "-m", "fleetlink_node", *args],
            cwd=PKG,
            env={**os.environ, "PYTHONPATH": PKG, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.addCleanup(lambda: p.poll() is None and p.kill())
        return p

    def test_conformance_handlers_log_each_start_and_sigterm_exits_0_after_leave(self):
        p = self.start(
            "--handlers",
            "fleetlink_node.conformance",
            "--heartbeat-ms",
            "500",
            env={
                "FLEETLINK_HUB": self.hub.url,
                "FLEETLINK_ENROLL_TOKEN": ENROLL_TOKEN,
                "FLEETLINK_NODE_NAME": "py-cli",
                "FLEETLINK_WORK_DIR": self.work,
            },
        )
        line = p.stdout.readline()
        self.assertRegex(line, r"^node py-cli online as [0-9a-f-]{36}$")
        self.assertTrue(os.path.exists(os.path.join(self.work, "identity.json")))
        echo = self.hub.push("echo", {"a": 1})
        fail = self.hub.push("fail", {"message": "on purpose"})
        sleep = self.hub.push("sleep", {"ms": 50})
        self.hub.wait_for(lambda: all(self.hub.replies_to(i) for i in (echo, fail, sleep)))
        self.assertEqual(self.hub.replies_to(echo)[0]["payload"], {"a": 1})
        self.assertIn("on purpose", self.hub.replies_to(fail)[0]["error"]["message"])
        self.assertEqual(self.hub.replies_to(sleep)[0]["payload"], {"slept": 50})
        with open(os.path.join(self.work, "calls.log")) as f:
            lines = sorted(f.read().splitlines())
        self.assertEqual(lines, sorted([f"start {echo} echo", f"start {fail} fail", f"start {sleep} sleep"]))
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(10), 0)
        self.assertEqual(len(self.hub.sent("leave")), 1)

    def test_sigterm_while_a_handler_runs_waits_for_its_reply(self):
        token = os.path.join(self.work, "token")
        with open(token, "w") as f:
            f.write(ENROLL_TOKEN + "\n")
        p = self.start(
            "--hub", self.hub.url, "--token-file", token, "--handlers", "fleetlink_node.conformance",
            "--name", "py-cli-2", "--identity", os.path.join(self.work, "id.json"),
        )
        p.stdout.readline()
        ins = self.hub.push("sleep", {"ms": 800})
        self.hub.wait_for(lambda: ins in self.hub.acks)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(10), 0)
        self.assertGreater(time.monotonic() - t0, 0.3)
        self.assertEqual(self.hub.replies_to(ins)[0]["payload"], {"slept": 800})

    def test_handlers_come_from_a_file_or_module_its_handlers_dict_else_its_own_public_functions(self):
        sys.path.insert(0, PKG)
        from fleetlink_node.cli import load_handlers

        path = os.path.join(self.work, "mine.py")
        with open(path, "w") as f:
            f.write("from os.path import join\ndef square(x, ctx):\n    return x * x\n"
                    "async def later(x, ctx):\n    return x\ndef _helper():\n    pass\n")
        self.assertEqual(sorted(load_handlers(path)), ["later", "square"])  # not join (imported), not _helper
        self.assertEqual(sorted(load_handlers("fleetlink_node.conformance")), ["echo", "fail", "sleep"])

    def test_a_missing_hub_is_a_usage_error(self):
        p = self.start("--handlers", "fleetlink_node.conformance", env={"FLEETLINK_HUB": ""})
        self.assertEqual(p.wait(10), 2)
        self.assertIn("--hub", p.stderr.read())

    def test_an_identity_file_of_another_node_name_exits_64_naming_both_names(self):
        path = os.path.join(self.work, "id.json")
        with open(path, "w") as f:
            f.write('{"nodeId": "0193a000-0000-7000-8000-00000000beef", "credential": "x", "name": "alpha"}')
        p = self.start(
            "--hub", self.hub.url, "--handlers", "fleetlink_node.conformance", "--name", "beta", "--identity", path
        )
        self.assertEqual(p.wait(10), 64)
        err = p.stderr.read()
        self.assertIn("FLEETLINK_E_INVALID_ARGUMENT", err)
        self.assertIn('is node "alpha"', err)
        self.assertIn("--name alpha", err)
        self.assertEqual(self.hub.sent("open"), [])


if __name__ == "__main__":
    unittest.main()
