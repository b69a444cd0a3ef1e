"""A small in-process stand-in for a hub's HTTP node API (enroll, open, hello, poll, reply, heartbeat, progress,
leave, close), recording what the node sends. Unit tests of the client use it; the end-to-end tests in
test/clients/*.test.ts run the client against the real hub."""

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fake_blobs import FakeBlobs

ENROLL_TOKEN = "enroll-secret"


class FakeHub:
    def __init__(self, lease_ms=30_000, protocols=(1,)):
        self.lease_ms = lease_ms
        self.protocols = list(protocols)
        self.cond = threading.Condition()
        self.nodes = {}  # node id → credential
        self.names = set()
        self.name_of = {}  # node id → the name it enrolled with (the hello answer says it)
        self.sessions = {}  # session → {"node", "ended": close dict or None, "said_hello", "delivered": {id: ins}}
        self.queue = []  # instructions pushed, not yet delivered
        self.replies = {}  # reply id → body
        self.calls = []  # (method, body)
        self.acks = []
        self.drop_reply_answers = 0  # answer this many stored replies by cutting the connection instead
        self.pending = False  # refuse open with NODE_PENDING (an admin has not approved the node yet)
        self.rate_limit_polls = 0  # refuse this many polls with 429 RATE_LIMITED
        self.features = ["progress", "leave", "http", "blobs", "cancel"]
        self.frames = []  # events ({m, b}, as a stream's evt frames) for the next poll answer
        self.blobs = FakeBlobs(self._authorized)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    # -- what tests drive ---------------------------------------------------------------------------------------

    def push(self, method, payload=None, ins_id=None, attempts=1, **extra):
        ins = {
            **extra,
            "id": ins_id or str(uuid.uuid4()),
            "runId": "0193a000-0000-7000-8000-000000000001",
            "method": method,
            "payload": payload,
            "groupId": None,
            "attempts": attempts,
            "expiresAt": 4_000_000_000_000,
        }
        with self.cond:
            self.queue.append(ins)
            self.cond.notify_all()
        return ins["id"]

    def cancel(self, ids, code="FLEETLINK_E_CANCELLED"):
        """Ends delivered instructions before their reply, as the hub does on a withdraw: a cancel event frame."""
        with self.cond:
            self.frames.append({"m": "cancel", "b": {"ids": list(ids), "code": code}})
            for s in self.sessions.values():
                for i in ids:
                    s["delivered"].pop(i, None)
            self.cond.notify_all()

    def _authorized(self, auth):
        nid, _, cred = (auth or "").partition(".")
        return self.nodes.get(nid) == cred

    def end_sessions(self, code, reason="test"):
        with self.cond:
            for s in self.sessions.values():
                if not s["ended"]:
                    s["ended"] = {"code": code, "reason": reason}
            self.cond.notify_all()

    def wait_for(self, pred, timeout=10.0):
        with self.cond:
            ok = self.cond.wait_for(pred, timeout)
        if not ok:
            raise AssertionError(f"timed out waiting; calls so far: {[m for m, _ in self.calls]}")

    def replies_to(self, ins_id):
        with self.cond:
            return [r for r in self.replies.values() if r["replyTo"] == ins_id]

    def sent(self, method):
        with self.cond:
            return [b for m, b in self.calls if m == method]

    # -- the API ------------------------------------------------------------------------------------------------

    def _serve(self, path, auth, body):
        """(status, body) or None to cut the connection."""
        if path == "/v1/nodes/enroll":
            if auth != ENROLL_TOKEN:
                return 401, err("UNAUTHORIZED", "wrong enrollment token")
            if body.get("name") in self.names:
                return 409, err("NAME_TAKEN", f"a live node is named {body.get('name')}")
            self.names.add(body.get("name"))
            nid, cred = str(uuid.uuid4()), uuid.uuid4().hex
            self.nodes[nid] = cred
            self.name_of[nid] = body.get("name")
            return 201, {"node": {"id": nid, "name": body.get("name")}, "credential": cred}
        method = path.rsplit("/", 1)[-1]
        nid, _, cred = (auth or "").partition(".")
        if self.nodes.get(nid) != cred:
            return 401, err("UNAUTHORIZED", "wrong credential")
        with self.cond:
            self.calls.append((method, body))
            self.cond.notify_all()
            if method == "open" and self.pending:
                return 403, err("NODE_PENDING", "waiting for approval")
            if method == "poll" and self.rate_limit_polls > 0:
                self.rate_limit_polls -= 1
                return 429, err("RATE_LIMITED", "too many parked polls")
            if method == "open":
                sid = uuid.uuid4().hex
                self.sessions[sid] = {"node": nid, "ended": None, "delivered": {}}
                return 200, {"session": sid, "maxWaitMs": 30_000}
            s = self.sessions.get(body.get("session"))
            if s is None:
                return ended({"code": 1001, "reason": "unknown session"})
            if s["ended"]:
                return ended(s["ended"])
            if method == "hello":
                if body.get("protocol", 1) not in self.protocols:
                    s["ended"] = {"code": 4002, "reason": "unsupported protocol"}
                    return 400, err("UNSUPPORTED_PROTOCOL", f"node speaks {body.get('protocol')}, hub {self.protocols}")
                return 200, {
                    "nodeId": nid,
                    "name": self.name_of.get(nid),
                    "onlineUntil": None,
                    "maxInflight": 32,
                    "maxPayloadBytes": 1 << 20,
                    "leaseMs": self.lease_ms,
                    "protocol": 1,
                    "protocols": self.protocols,
                    "features": list(self.features),
                    "hub": {"version": "fake"},
                }
            if method == "poll":
                for a in body.get("acks") or ():
                    self.acks.append(a)
                    s["delivered"].pop(a, None)
                self.cond.wait_for(
                    lambda: s["ended"] or s["delivered"] or self.queue or self.frames,
                    body.get("waitMs", 20_000) / 1000,
                )
                if s["ended"]:
                    return ended(s["ended"])
                while self.queue:
                    ins = self.queue.pop(0)
                    s["delivered"][ins["id"]] = ins
                frames, self.frames = self.frames, []
                answer = {"instructions": list(s["delivered"].values())}
                if frames:
                    answer["events"] = frames
                return 200, answer
            if method == "reply":
                dup = body["id"] in self.replies
                self.replies[body["id"]] = body
                self.cond.notify_all()
                if self.drop_reply_answers > 0:
                    self.drop_reply_answers -= 1
                    return None
                return 200, {"ok": True, "duplicate": dup}
            if method == "heartbeat":
                return 200, {"onlineUntil": None}
            if method == "progress":
                return 200, {"extended": body.get("ids", [])}
            if method == "leave":
                s["ended"] = {"code": 1000, "reason": "left"}
                return 200, {"left": True}
            if method == "close":
                s["ended"] = {"code": 1000, "reason": "closed"}
                return 200, {"closed": True}
        return 404, err("ROUTE_NOT_FOUND", path)

    def _handler(self):
        hub = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                hub.blobs.handle(self, "GET") or self.send_error(404)

            def do_HEAD(self):
                hub.blobs.handle(self, "HEAD") or self.send_error(404)

            def do_PUT(self):
                hub.blobs.handle(self, "PUT") or self.send_error(404)

            def do_POST(self):
                if hub.blobs.handle(self, "POST"):
                    return
                n = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                auth = (self.headers.get("authorization") or "").removeprefix("Bearer ")
                out = hub._serve(self.path, auth, body)
                if out is None:
                    self.close_connection = True
                    self.connection.close()
                    return
                status, obj = out
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return H


def err(name, message):
    return {"error": {"code": f"FLEETLINK_E_{name}", "message": message, "definite": True}}


def ended(close):
    return 410, {**err("SESSION_ENDED", "session ended"), "close": close}
