"""The node's handlers and the hub's cancel events and blobs, through the fake hub: a cancelled handler sees
ctx.cancelled and sends no reply; bytes in and out of a handler travel as $bytes or blobs."""

import base64
import hashlib
import os
import shutil
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from fake_hub import ENROLL_TOKEN, FakeHub  # noqa: E402

from fleetlink_node import BlobFile, CachedBlob, Node  # noqa: E402


class NodeBlobsAndCancelTest(unittest.TestCase):
    def setUp(self):
        self.hub = FakeHub()
        self.dir = tempfile.mkdtemp()
        self.seen = {}
        self.started = threading.Event()
        self.finished = threading.Event()

        def wait_cancel(payload, ctx):
            self.started.set()
            self.seen["cancelled"] = ctx.cancelled.wait(10)
            self.seen["is_cancelled"] = ctx.is_cancelled()
            self.finished.set()
            return "too late"

        def sizes(payload, ctx):
            self.seen["payload"] = payload
            out = os.path.join(self.dir, "out.bin")
            with open(out, "wb") as f:
                f.write(b"f" * 300_000)
            return {"small": payload["small"][::-1], "big": payload["big"] + b"!", "file": BlobFile(out)}

        self.node = Node(
            hubs=[self.hub.url],
            name="py-b",
            handlers={"wait_cancel": wait_cancel, "sizes": sizes, "echo": lambda p, c: p},
            enroll_token=ENROLL_TOKEN,
            identity_file=os.path.join(self.dir, "identity.json"),
            heartbeat_ms=300,
            blob_dir=os.path.join(self.dir, "cache"),
        )
        self.assertTrue(self.node.start(timeout=10))

    def tearDown(self):
        self.node.stop(timeout=2)
        self.hub.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_a_cancel_event_sets_ctx_cancelled_and_the_result_is_dropped_without_a_reply(self):
        iid = self.hub.push("wait_cancel", {})
        self.assertTrue(self.started.wait(5))
        self.hub.cancel([iid])
        self.assertTrue(self.finished.wait(5))
        self.assertEqual(self.seen, {"cancelled": True, "is_cancelled": True})
        # The node keeps working, and the cancelled one never replied.
        other = self.hub.push("echo", "after")
        self.hub.wait_for(lambda: any(r["replyTo"] == other for r in self.hub.replies.values()))
        self.assertEqual(self.hub.replies_to(iid), [])

    def test_an_instruction_cancelled_in_the_same_poll_answer_is_acknowledged_but_never_run(self):
        with self.hub.cond:
            iid = "0193a000-0000-7000-8000-0000000000c1"
            self.hub.queue.append({"id": iid, "runId": "0193a000-0000-7000-8000-000000000001", "method": "wait_cancel",
                                   "payload": {}, "groupId": None, "attempts": 1, "expiresAt": 4_000_000_000_000})
            self.hub.frames.append({"m": "cancel", "b": {"ids": [iid], "code": "FLEETLINK_E_CANCELLED"}})
            self.hub.cond.notify_all()
        self.hub.wait_for(lambda: iid in self.hub.acks)
        other = self.hub.push("echo", 1)
        self.hub.wait_for(lambda: any(r["replyTo"] == other for r in self.hub.replies.values()))
        self.assertFalse(self.started.is_set())
        self.assertEqual(self.hub.replies_to(iid), [])

    def test_bytes_arrive_as_bytes_and_go_back_inline_or_as_uploaded_blobs(self):
        big = bytes(range(256)) * 2048  # 512 KiB
        sha = self.hub.blobs.put_blob(big)
        iid = self.hub.push(
            "sizes", {"small": {"$bytes": base64.b64encode(b"abc").decode()}, "big": {"$blob": f"sha256:{sha}", "size": len(big)}}
        )
        self.hub.wait_for(lambda: any(r["replyTo"] == iid for r in self.hub.replies.values()))
        reply = self.hub.replies_to(iid)[0]
        self.assertIsNone(reply["error"])
        self.assertEqual(self.seen["payload"], {"small": b"abc", "big": big})
        out = reply["payload"]
        self.assertEqual(out["small"], {"$bytes": base64.b64encode(b"cba").decode()})
        big_sha = hashlib.sha256(big + b"!").hexdigest()
        self.assertEqual(out["big"], {"$blob": f"sha256:{big_sha}", "size": len(big) + 1})
        self.assertEqual(self.hub.blobs.blobs[big_sha], big + b"!")
        file_sha = hashlib.sha256(b"f" * 300_000).hexdigest()
        self.assertEqual(out["file"], {"$blob": f"sha256:{file_sha}", "size": 300_000})
        begins = self.hub.blobs.requests("POST")
        self.assertEqual(len(begins), 2)
        # The download landed in the node's cache under its hash.
        self.assertTrue(os.path.isfile(os.path.join(self.dir, "cache", sha)))

    def test_in_file_mode_a_blob_reaches_the_handler_as_a_cached_file_and_goes_back_by_reference(self):
        seen = {}

        def keep(payload, ctx):
            seen["blob"] = payload
            seen["head"] = payload.read()[:4]
            return {"same": payload}

        self.node.stop(timeout=2)  # the fake hub's queue is shared: only the file-mode node takes instructions
        node = Node(hubs=[self.hub.url], name="py-file", handlers={"keep": keep}, enroll_token=ENROLL_TOKEN,
                    identity_file=os.path.join(self.dir, "file-identity.json"), heartbeat_ms=300,
                    blob_dir=os.path.join(self.dir, "cache2"), blob_mode="file")
        self.assertTrue(node.start(timeout=10))
        try:
            big = b"\x01\x02\x03\x04" * 100_000
            sha = self.hub.blobs.put_blob(big)
            iid = self.hub.push("keep", {"$blob": f"sha256:{sha}", "size": len(big)})
            self.hub.wait_for(lambda: any(r["replyTo"] == iid for r in self.hub.replies.values()))
            reply = self.hub.replies_to(iid)[0]
            self.assertIsNone(reply["error"])
            self.assertIsInstance(seen["blob"], CachedBlob)
            self.assertEqual((seen["blob"].sha256, seen["blob"].size, seen["head"]), (sha, len(big), b"\x01\x02\x03\x04"))
            self.assertEqual(reply["payload"], {"same": {"$blob": f"sha256:{sha}", "size": len(big)}})
            # The hub already has it: one begin answered "present", no PUT.
            self.assertEqual(len(self.hub.blobs.requests("POST")), 1)
            self.assertEqual(self.hub.blobs.requests("PUT"), [])
        finally:
            node.stop(timeout=2)

    def test_a_reference_to_a_missing_blob_becomes_an_error_reply(self):
        iid = self.hub.push("echo", {"m": {"$blob": "sha256:" + "ee" * 32, "size": 4}})
        self.hub.wait_for(lambda: any(r["replyTo"] == iid for r in self.hub.replies.values()))
        self.assertEqual(self.hub.replies_to(iid)[0]["error"]["code"], "FLEETLINK_E_BLOB_NOT_FOUND")


if __name__ == "__main__":
    unittest.main()
