"""The Python node against a fake hub (tests/fake_hub.py): its duties, one at a time."""

import asyncio
import json
import os
import stat
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from fake_hub import ENROLL_TOKEN, FakeHub  # noqa: E402

from fleetlink_node import HandlerError, Node  # noqa: E402


async def async_double(payload, ctx):
    await asyncio.sleep(0.01)
    return payload * 2


def boom(payload, ctx):
    raise RuntimeError("it broke")


def refuse(payload, ctx):
    raise HandlerError("APP_E_NOPE", "not today")


class NodeTest(unittest.TestCase):
    def setUp(self):
        self.hub = FakeHub()
        self.dir = tempfile.mkdtemp()
        self.nodes = []
        self.runs = []
        self.gate = threading.Event()

        def slow(payload, ctx):
            self.runs.append(ctx.instruction_id)
            self.gate.wait(10)
            return "done"

        def echo(payload, ctx):
            self.runs.append(ctx.instruction_id)
            return payload

        self.handlers = {"echo": echo, "slow": slow, "double": async_double, "boom": boom, "refuse": refuse,
                         "bad": lambda p, c: {1, 2}}

    def tearDown(self):
        self.gate.set()
        for n in self.nodes:
            n.stop(timeout=2)
        self.hub.close()

    def node(self, hubs=None, **kw):
        n = Node(
            hubs=hubs or [self.hub.url],
            name=kw.pop("name", "py-1"),
            handlers=self.handlers,
            enroll_token=ENROLL_TOKEN,
            identity_file=os.path.join(self.dir, "identity.json"),
            heartbeat_ms=kw.pop("heartbeat_ms", 300),
            **kw,
        )
        self.nodes.append(n)
        return n

    def reply(self, ins_id):
        self.hub.wait_for(lambda: any(r["replyTo"] == ins_id for r in self.hub.replies.values()))
        return self.hub.replies_to(ins_id)[0]

    def test_echo_round_trip_hello_names_protocol_and_agent_and_the_identity_file_is_private(self):
        n = self.node()
        self.assertTrue(n.start(timeout=10))
        hello = self.hub.sent("hello")[0]
        self.assertEqual(hello["protocol"], 1)
        self.assertEqual(hello["agent"]["name"], "fleetlink-py")
        self.assertEqual(hello["heartbeatIntervalMs"], 300)
        ins = self.hub.push("echo", {"x": [1, 2]})
        r = self.reply(ins)
        self.assertEqual(r["payload"], {"x": [1, 2]})
        self.assertIsNone(r["error"])
        self.hub.wait_for(lambda: ins in self.hub.acks)
        mode = stat.S_IMODE(os.stat(os.path.join(self.dir, "identity.json")).st_mode)
        self.assertEqual(mode, 0o600)
        self.hub.wait_for(lambda: len(self.hub.sent("heartbeat")) >= 2)

    def test_a_traced_instruction_hands_its_traceparent_to_the_handler_and_the_reply_carries_it_back(self):
        tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        self.handlers["trace"] = lambda p, ctx: ctx.traceparent
        n = self.node()
        self.assertTrue(n.start(timeout=10))
        traced = self.reply(self.hub.push("trace", traceparent=tp))
        self.assertEqual(traced["payload"], tp)
        self.assertEqual(traced["traceparent"], tp)
        # Untraced, or malformed (ignored, not refused): no context, and none in the reply.
        for extra in ({}, {"traceparent": tp.upper()}):
            r = self.reply(self.hub.push("trace", **extra))
            self.assertIsNone(r["payload"])
            self.assertNotIn("traceparent", r)

    def test_handler_errors_become_typed_error_replies(self):
        n = self.node()
        n.start(timeout=10)
        cases = {
            "boom": ("FLEETLINK_E_HANDLER_FAILED", "it broke"),
            "refuse": ("APP_E_NOPE", "not today"),
            "nosuch": ("FLEETLINK_E_INVALID_ARGUMENT", "no handler for method nosuch"),
            "bad": ("FLEETLINK_E_HANDLER_FAILED", "cannot be encoded as JSON"),
        }
        ids = {m: self.hub.push(m, 1) for m in cases}
        for m, (code, text) in cases.items():
            e = self.reply(ids[m])["error"]
            self.assertEqual(e["code"], code, m)
            self.assertIn(text, e["message"], m)

    def test_async_handlers_run_on_an_event_loop(self):
        n = self.node()
        n.start(timeout=10)
        self.assertEqual(self.reply(self.hub.push("double", 21))["payload"], 42)

    def test_an_instruction_delivered_again_runs_once_and_gets_the_same_reply_id(self):
        n = self.node()
        n.start(timeout=10)
        ins = self.hub.push("echo", "once")
        first = self.reply(ins)
        # Once the node knows its reply was acknowledged (a redelivery racing the acknowledgement is ignored:
        # the reply is still being sent then).
        deadline = time.monotonic() + 5
        while n._outbox.done(ins) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        self.hub.push("echo", "once", ins_id=ins, attempts=2)
        self.hub.wait_for(lambda: len([b for b in self.hub.sent("reply") if b["replyTo"] == ins]) >= 2)
        self.assertEqual(self.runs.count(ins), 1)
        self.assertEqual({b["id"] for b in self.hub.sent("reply") if b["replyTo"] == ins}, {first["id"]})

    def test_a_reply_whose_answer_is_lost_is_resent_with_the_same_id_and_stored_once(self):
        self.hub.drop_reply_answers = 2
        n = self.node()
        n.start(timeout=10)
        ins = self.hub.push("echo", 7)
        self.hub.wait_for(lambda: len([b for b in self.hub.sent("reply") if b["replyTo"] == ins]) >= 3)
        self.assertEqual(len(self.hub.replies_to(ins)), 1)
        self.assertEqual(len({b["id"] for b in self.hub.sent("reply") if b["replyTo"] == ins}), 1)

    def test_after_the_session_ends_the_node_opens_another_and_names_its_running_instructions(self):
        n = self.node()
        n.start(timeout=10)
        ins = self.hub.push("slow")
        self.hub.wait_for(lambda: ins in self.runs)
        self.hub.end_sessions(1001, "replica going away")
        self.hub.wait_for(lambda: len(self.hub.sent("hello")) >= 2)
        self.assertEqual(self.hub.sent("hello")[1]["inflight"], [ins])
        self.gate.set()
        self.assertEqual(self.reply(ins)["payload"], "done")
        self.assertEqual(self.runs.count(ins), 1)

    def test_progress_is_reported_while_a_handler_runs(self):
        self.hub.lease_ms = 300
        n = self.node()
        n.start(timeout=10)
        ins = self.hub.push("slow")
        self.hub.wait_for(lambda: len(self.hub.sent("progress")) >= 2)
        self.assertEqual(self.hub.sent("progress")[0]["ids"], [ins])

    def test_an_unsupported_protocol_stops_the_node_without_retrying(self):
        self.hub.protocols = [2]
        n = self.node()
        self.assertFalse(n.start(timeout=10))
        self.assertIn("does not speak node protocol 1", n.failure)
        time.sleep(0.5)
        self.assertEqual(len(self.hub.sent("hello")), 1)

    def test_a_replaced_session_backs_off_hard(self):
        n = self.node()
        n.start(timeout=10)
        self.hub.end_sessions(4000, "replaced")
        time.sleep(1.0)
        self.assertEqual(len(self.hub.sent("open")), 1)  # the first retry waits at least 1.5 s
        self.hub.wait_for(lambda: len(self.hub.sent("open")) >= 2, timeout=5)

    def test_a_dead_hub_url_is_skipped_for_the_next(self):
        n = self.node(hubs=["http://127.0.0.1:9", self.hub.url])
        self.assertTrue(n.start(timeout=10))
        self.assertEqual(self.reply(self.hub.push("echo", "x"))["payload"], "x")

    def test_graceful_stop_finishes_the_handler_gets_its_reply_acknowledged_then_leaves_and_closes(self):
        n = self.node()
        n.start(timeout=10)
        ins = self.hub.push("slow")
        self.hub.wait_for(lambda: ins in self.runs)
        stopper = threading.Thread(target=n.stop)
        stopper.start()
        time.sleep(0.3)
        self.assertEqual(self.hub.sent("leave"), [])
        self.gate.set()
        stopper.join(10)
        self.assertEqual(self.hub.replies_to(ins)[0]["payload"], "done")
        methods = [m for m, _ in self.hub.calls]
        self.assertLess(methods.index("reply"), methods.index("leave"))
        self.assertLess(methods.index("leave"), methods.index("close"))
        self.assertEqual(n.state, "stopped")

    def test_a_node_waiting_for_approval_asks_again_gently_and_comes_online_once_approved(self):
        self.hub.pending = True
        n = self.node()
        n.start(wait=False)
        self.hub.wait_for(lambda: len(self.hub.sent("open")) >= 1)
        time.sleep(0.5)
        self.assertEqual(n.state, "pending")
        self.assertEqual(len(self.hub.sent("open")), 1)  # the next ask comes 1 to 2 s later, not at once
        self.hub.pending = False
        self.assertTrue(n.wait_online(timeout=10))

    def test_a_rate_limited_poll_is_retried_with_backoff_and_its_acks_are_not_lost(self):
        n = self.node()
        n.start(timeout=10)
        self.hub.wait_for(lambda: len(self.hub.sent("poll")) >= 1)
        time.sleep(0.2)  # that poll is parked now
        self.hub.rate_limit_polls = 3  # the parked poll takes the instruction; the next three, with its ack, get 429
        ins = self.hub.push("echo", 1)
        self.reply(ins)
        self.hub.wait_for(lambda: ins in self.hub.acks)
        self.assertEqual(self.hub.rate_limit_polls, 0)
        self.assertEqual([p.get("acks") for p in self.hub.sent("poll")].count([ins]), 4)
        self.assertEqual(len(self.hub.sent("open")), 1)  # the session was kept

    def test_while_stopping_a_new_instruction_is_neither_run_nor_acknowledged(self):
        n = self.node()
        n.start(timeout=10)
        slow = self.hub.push("slow")
        self.hub.wait_for(lambda: slow in self.hub.acks)
        stopper = threading.Thread(target=n.stop)
        stopper.start()
        time.sleep(0.2)
        late = self.hub.push("echo", "too late")
        self.hub.wait_for(lambda: len(self.hub.sent("poll")) >= 5)  # it came in several answers meanwhile
        self.gate.set()
        stopper.join(10)
        self.assertNotIn(late, self.runs)
        self.assertNotIn(late, self.hub.acks)
        self.assertEqual(self.hub.replies_to(late), [])
        self.assertEqual(self.hub.replies_to(slow)[0]["payload"], "done")
        self.assertEqual(len(self.hub.sent("leave")), 1)

    def test_an_identity_the_hub_does_not_know_stops_the_node_and_says_so(self):
        with open(os.path.join(self.dir, "identity.json"), "w") as f:
            f.write('{"nodeId": "0193a000-0000-7000-8000-00000000dead", "credential": "x"}')
        n = self.node()
        self.assertFalse(n.start(timeout=10))
        self.assertIn("FLEETLINK_E_UNAUTHORIZED", n.failure)
        self.assertIn("--reenroll", n.failure)


class IdentityTest(unittest.TestCase):
    """One identity, one name and one process (the TypeScript agent's test/node/identity.test.ts)."""

    setUp = NodeTest.setUp
    tearDown = NodeTest.tearDown
    node = NodeTest.node

    def identity_path(self):
        return os.path.join(self.dir, "identity.json")

    def test_enrolling_keeps_the_node_name_in_the_identity_file(self):
        n = self.node()
        self.assertTrue(n.start(timeout=10))
        with open(self.identity_path()) as f:
            self.assertEqual(json.load(f), {"nodeId": n.node_id, "credential": self.hub.nodes[n.node_id], "name": "py-1"})

    def test_an_identity_file_of_another_name_is_refused_naming_both_names_and_the_fix(self):
        n = self.node()
        self.assertTrue(n.start(timeout=10))
        n.stop(timeout=2)
        with self.assertRaises(ValueError) as cm:
            self.node(name="py-2")
        msg = str(cm.exception)
        self.assertIn(f'is node "py-1" ({n.node_id}), not "py-2"', msg)
        self.assertIn("--name py-1", msg)
        self.assertIn("--identity .fleetlink/node-py-2.json", msg)
        self.assertIn(f"fleetlink nodes unregister {n.node_id}", msg)

    def test_an_older_identity_file_without_a_name_the_hello_answer_names_the_node_and_another_name_stops(self):
        n = self.node()
        self.assertTrue(n.start(timeout=10))
        n.stop(timeout=2)
        with open(self.identity_path()) as f:
            d = json.load(f)
        with open(self.identity_path(), "w") as f:
            json.dump({"nodeId": d["nodeId"], "credential": d["credential"]}, f)
        other = self.node(name="py-2")
        self.assertFalse(other.start(timeout=10))
        self.assertEqual(other.failure_code, "FLEETLINK_E_INVALID_ARGUMENT")
        self.assertIn('is node "py-1"', other.failure)
        self.assertIn('not "py-2"', other.failure)
        last = list(self.hub.sessions)[-1]
        self.assertEqual(self.hub.sent("leave")[-1]["session"], last)
        self.assertEqual(self.hub.sent("close")[-1]["session"], last)

    def test_replaced_max_conflicts_times_in_a_row_the_node_gives_the_identity_up_with_conflict(self):
        n = self.node(max_conflicts=2)
        self.assertTrue(n.start(timeout=10))
        self.hub.end_sessions(4000, "replaced")
        self.hub.wait_for(lambda: len(self.hub.sent("open")) >= 2, timeout=5)
        self.assertTrue(n.wait_online(timeout=5))
        self.hub.end_sessions(4000, "replaced")
        self.hub.wait_for(lambda: n.state == "rejected", timeout=5)
        self.assertEqual(n.failure_code, "FLEETLINK_E_CONFLICT")
        self.assertIn("replaced 2 times in a row", n.failure)
        time.sleep(0.3)
        self.assertEqual(len(self.hub.sent("open")), 2)

    def test_the_replacement_of_a_settled_session_starts_a_new_count(self):
        # A single counted replacement would stop it; one after 0.5 s online, with 0.2 s to settle, is not counted.
        n = self.node(max_conflicts=1, conflict_settle_ms=200)
        self.assertTrue(n.start(timeout=10))
        time.sleep(0.5)
        self.hub.end_sessions(4000, "replaced")
        self.hub.wait_for(lambda: len(self.hub.sent("open")) >= 2, timeout=5)
        self.assertTrue(n.wait_online(timeout=5))
        self.assertIsNone(n.failure)


if __name__ == "__main__":
    unittest.main()
