"""Runs each delivered instruction at most once and carries every outcome to the hub as one reply."""

import asyncio
import collections
import inspect
import json
import logging
import threading
import uuid
from dataclasses import dataclass, field

from .errors import HANDLER_FAILED, HandlerError, reply_error

log = logging.getLogger("fleetlink_node")

MAX_JSON_DEPTH = 128
DEFAULT_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024


@dataclass
class Context:
    """What a handler is told about the instruction it runs."""

    instruction_id: str
    run_id: str
    method: str
    attempts: int
    node_id: str
    #: Set when the node stops without waiting for handlers any longer.
    cancelled: threading.Event = field(repr=False)


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

    def __init__(self, handlers, outbox, node_id, max_payload_bytes, cancelled):
        self._handlers = dict(handlers)
        self._outbox = outbox
        self._node_id = node_id
        self._max_payload_bytes = max_payload_bytes
        self._cancelled = cancelled
        self._running = {}
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

    def accept(self, ins):
        """An instruction arrived (perhaps again). False if it was not taken (the node is stopping): the node
        must then not acknowledge it, so the hub gives it to another attempt."""
        iid = ins["id"]
        done = self._outbox.done(iid)
        if done is not None:
            self._outbox.queue(done)
            return True
        with self._cond:
            if iid in self._running or self._outbox.has(iid):
                return True
            if not self.accepting:
                return False
            t = threading.Thread(target=self._run, args=(ins,), name=f"fleetlink-run-{iid[:8]}", daemon=True)
            self._running[iid] = t
        t.start()
        return True

    def _run(self, ins):
        try:
            payload, error = None, None
            try:
                payload = self._call(ins)
            except Exception as e:  # noqa: BLE001 - every handler failure becomes an error reply
                error = reply_error(e)
                if not isinstance(e, HandlerError):
                    log.warning("handler %s failed on %s: %s", ins.get("method"), ins["id"], error["message"][:256])
            if error is None:
                payload, error = check_result(payload, self._max_payload_bytes())
            self._outbox.queue(
                {
                    "id": str(uuid.uuid4()),
                    "runId": ins["runId"],
                    "replyTo": ins["id"],
                    "payload": payload,
                    "error": error,
                },
                inline=True,
            )
        finally:
            with self._cond:
                self._running.pop(ins["id"], None)
                self._cond.notify_all()

    def _call(self, ins):
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
            cancelled=self._cancelled,
        )
        out = handler(ins.get("payload"), ctx)
        if inspect.isawaitable(out):
            out = self._async.run(_awaited(out))
        return out


async def _awaited(aw):
    return await aw
