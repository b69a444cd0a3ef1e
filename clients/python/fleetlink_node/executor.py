"""Runs each delivered instruction at most once and carries every outcome to the hub as one reply."""

import asyncio
import collections
import inspect
import json
import logging
import re
import threading
import uuid
from dataclasses import dataclass, field

from . import codec
from .errors import HANDLER_FAILED, HandlerError, reply_error

log = logging.getLogger("fleetlink_node")

MAX_JSON_DEPTH = 128
#: A W3C traceparent (version 00), as the hub checks it: lowercase hex, ids not all zeros.
TRACEPARENT = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")
DEFAULT_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024


@dataclass
class Context:
    """What a handler is told about the instruction it runs."""

    instruction_id: str
    run_id: str
    method: str
    attempts: int
    node_id: str
    #: Set when the hub cancelled the instruction (withdrawn, TTL, deadline: its result is then dropped, no
    #: reply) or when the node stops without waiting for handlers any longer.
    cancelled: threading.Event = field(repr=False)
    #: The W3C trace context the call was made in (None for an untraced call): hand it to your tracer to
    #: continue the caller's trace. The reply carries it back to the coordinator.
    traceparent: str | None = None

    def is_cancelled(self):
        return self.cancelled.is_set()


class AsyncRunner:
    """One event loop thread for every async handler of a node, started on first use."""

    def __init__(self):
        self._loop = None
        self._lock = threading.Lock()

    def run(self, coro):
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, name="fleetlink-async", daemon=True).start()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()


def too_deep(value, limit=MAX_JSON_DEPTH):
    stack = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list, tuple)):
            if d >= limit:
                return True
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return False


def check_result(payload, max_payload_bytes):
    """(payload, error): a result that cannot travel becomes an error reply, never a reply the hub refuses."""
    try:
        size = len(json.dumps(payload, separators=(",", ":"), allow_nan=False).encode())
    except (TypeError, ValueError, RecursionError) as e:
        return None, {"code": HANDLER_FAILED, "message": f"handler result cannot be encoded as JSON: {e}"[:600]}
    if too_deep(payload):
        return None, {
            "code": "FLEETLINK_E_PAYLOAD_TOO_LARGE",
            "message": f"handler result nests deeper than {MAX_JSON_DEPTH} levels",
        }
    if size > max_payload_bytes:
        return None, {
            "code": "FLEETLINK_E_PAYLOAD_TOO_LARGE",
            "message": f"handler result of {size} bytes exceeds the hub's payload limit of {max_payload_bytes}",
        }
    return payload, None


class Outbox:
    """Replies on their way to the hub: each is sent, and resent with the same id, until a hub acknowledges it or
    refuses it for good (`deliver(reply)` does that and returns). Acknowledged replies are remembered, so an
    instruction delivered again after its reply was stored is answered again instead of run twice."""

    def __init__(self, deliver, remember=10_000):
        self._deliver = deliver
        self._remember = remember
        self._waiting = {}  # instruction id → reply
        self._completed = collections.OrderedDict()
        self._cond = threading.Condition()

    def queue(self, reply, inline=False):
        """Sends the reply in a thread of its own, or with inline in the caller's (a handler's thread, which has
        nothing else to do: one thread start less per instruction)."""
        with self._cond:
            if reply["replyTo"] in self._waiting:
                return
            self._waiting[reply["replyTo"]] = reply
        if inline:
            self._send(reply)
        else:
            threading.Thread(target=self._send, args=(reply,), name="fleetlink-reply", daemon=True).start()

    def _send(self, reply):
        try:
            self._deliver(reply)
        finally:
            with self._cond:
                self._waiting.pop(reply["replyTo"], None)
                self._completed[reply["replyTo"]] = reply
                while len(self._completed) > self._remember:
                    self._completed.popitem(last=False)
                self._cond.notify_all()

    def has(self, instruction_id):
        with self._cond:
            return instruction_id in self._waiting

    def done(self, instruction_id):
        with self._cond:
            return self._completed.get(instruction_id)

    def keys(self):
        with self._cond:
            return list(self._waiting)

    def drained(self, timeout):
        """True once no reply waits (within timeout seconds)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._waiting, timeout)


class Executor:
    """Runs instructions, each at most once per process: one redelivered while running is ignored, one already
    answered gets its same reply resent. Every outcome becomes one reply in the outbox, sent from the handler's
    thread: an instruction counts as running until its reply is acknowledged (so progress keeps its lease)."""

    def __init__(self, handlers, outbox, node_id, max_payload_bytes, blobs=None, inline_bytes=None, blob_mode="bytes"):
        self._handlers = dict(handlers)
        self._outbox = outbox
        self._node_id = node_id
        self._max_payload_bytes = max_payload_bytes
        self._blobs = blobs
        self._inline_bytes = codec.DEFAULT_INLINE_BYTES if inline_bytes is None else inline_bytes
        self._blob_mode = blob_mode
        self._running = {}
        self._events = {}  # instruction id → its ctx.cancelled, while it runs
        # Instructions the hub cancelled: their results are dropped. Bounded: a cancel of an id that never ran
        # here is kept only in case its delivery is still on its way.
        self._dropped = collections.OrderedDict()
        self._cond = threading.Condition()
        self._async = AsyncRunner()
        self.accepting = True

    def running_ids(self):
        with self._cond:
            return list(self._running)

    @property
    def busy(self):
        with self._cond:
            return len(self._running)

    def settled(self, timeout):
        """True once no handler runs (within timeout seconds)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._running, timeout)

    def cancel(self, ids, code="FLEETLINK_E_CANCELLED"):
        """The hub ended these instructions before their reply: their handlers see ctx.cancelled set and
        whatever they return is dropped (the hub would refuse it: INSTRUCTION_ENDED)."""
        with self._cond:
            for iid in ids:
                self._dropped[iid] = code
                while len(self._dropped) > 10_000:
                    self._dropped.popitem(last=False)
                ev = self._events.get(iid)
                if ev is not None:
                    ev.set()
                    log.info("instruction %s cancelled by the hub (%s)", iid, code)

    def cancel_all(self):
        """The node stops without waiting: every running handler sees ctx.cancelled (their replies still go)."""
        with self._cond:
            for ev in self._events.values():
                ev.set()

    def accept(self, ins):
        """An instruction arrived (perhaps again). False if it was not taken (the node is stopping): the node
        must then not acknowledge it, so the hub gives it to another attempt."""
        iid = ins["id"]
        done = self._outbox.done(iid)
        if done is not None:
            self._outbox.queue(done)
            return True
        with self._cond:
            if iid in self._running or self._outbox.has(iid) or iid in self._dropped:
                return True
            if not self.accepting:
                return False
            t = threading.Thread(target=self._run, args=(ins,), name=f"fleetlink-run-{iid[:8]}", daemon=True)
            self._running[iid] = t
            self._events[iid] = threading.Event()
        t.start()
        return True

    def _run(self, ins):
        held = []  # blobs of the payload this handler reads from the cache (file mode): kept from eviction
        try:
            payload, error = None, None
            try:
                payload = self._call(ins, held)
            except Exception as e:  # noqa: BLE001 - every handler failure becomes an error reply
                error = reply_error(e)
                if not isinstance(e, HandlerError):
                    log.warning("handler %s failed on %s: %s", ins.get("method"), ins["id"], error["message"][:256])
            if error is None and codec.has_bytes(payload) and not self._is_dropped(ins["id"]):
                try:
                    payload = self._encode(ins, payload)
                except Exception as e:  # noqa: BLE001 - a result that cannot be sent becomes an error reply
                    payload, error = None, reply_error(e)
            if error is None:
                payload, error = check_result(payload, self._max_payload_bytes())
            if self._is_dropped(ins["id"]):
                log.info("dropping the result of cancelled instruction %s", ins["id"])
                return
            reply = {
                "id": str(uuid.uuid4()),
                "runId": ins["runId"],
                "replyTo": ins["id"],
                "payload": payload,
                "error": error,
            }
            trace = _traceparent(ins)
            if trace:
                reply["traceparent"] = trace
            self._outbox.queue(reply, inline=True)
        finally:
            for sha256 in held:
                self._blobs.release(sha256)
            with self._cond:
                self._running.pop(ins["id"], None)
                self._events.pop(ins["id"], None)
                self._cond.notify_all()

    def _call(self, ins, held):
        method = ins.get("method")
        handler = self._handlers.get(method)
        if handler is None:
            raise HandlerError("FLEETLINK_E_INVALID_ARGUMENT", f"no handler for method {method}")
        ctx = Context(
            instruction_id=ins["id"],
            run_id=ins["runId"],
            method=method,
            attempts=ins.get("attempts", 0),
            node_id=self._node_id(),
            cancelled=self._event(ins["id"]),
            traceparent=_traceparent(ins),
        )
        payload = ins.get("payload")
        if isinstance(payload, (dict, list)):
            payload = codec.decode(payload, lambda sha, size: self._fetch(sha, size, ctx.cancelled, held))
        out = handler(payload, ctx)
        if inspect.isawaitable(out):
            out = self._async.run(_awaited(out))
        return out

    def _event(self, iid):
        with self._cond:
            return self._events.get(iid) or threading.Event()

    def _is_dropped(self, iid):
        with self._cond:
            return iid in self._dropped

    def _fetch(self, sha256, size, cancelled, held):
        if self._blobs is None:
            raise HandlerError(codec.INVALID, "the payload references a blob and this node has no blob transfers")
        if self._blob_mode == "file":
            # Held until the handler and its result's upload are done: the file must outlive other downloads'
            # eviction while the handler reads it (or returns it, to be sent again).
            self._blobs.hold(sha256)
            held.append(sha256)
            return codec.CachedBlob(self._blobs.download(sha256, size, cancelled), sha256)
        return self._blobs.fetch(sha256, size, cancelled)

    def _encode(self, ins, payload):
        def upload(source):
            if self._blobs is None:
                raise HandlerError(HANDLER_FAILED, "the result holds bytes over the inline size and no blob transfers")
            return self._blobs.upload(source, ins["runId"], self._event(ins["id"]))

        return codec.encode(payload, upload, self._inline_bytes)


def _traceparent(ins):
    """The instruction's trace context, or None (absent, or malformed: ignored rather than refused)."""
    t = ins.get("traceparent")
    return t if isinstance(t, str) and TRACEPARENT.match(t) else None


async def _awaited(aw):
    return await aw
