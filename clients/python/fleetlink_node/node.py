"""A fleetlink node over the HTTP node API: enrolls, opens a session, long-polls for instructions, runs their
handlers once each and replies until the hub acknowledges, with the duties of docs/protocol.md."""

import logging
import re
import os
import signal
import tempfile
import threading
import time

from . import __version__
from .blob_http import DEFAULT_CACHE_BYTES, BlobTransfers
from .codec import DEFAULT_INLINE_BYTES
from .backoff import Backoff, pending_backoff, reconnect_backoff, replaced_backoff, reply_backoff
from .errors import HubError, NodeStopped, Unreachable
from .executor import DEFAULT_MAX_PAYLOAD_BYTES, Executor, Outbox
from .transport import HubClient
from .identity import enroll, load_identity, name_mismatch, save_identity
from .session import Close, Link, Loss, Session

log = logging.getLogger("fleetlink_node")

PROTOCOL_VERSION = 1
AGENT_NAME = "fleetlink-py"
#: Open refusals that mean the hub does not know this identity (as opposed to "not yet" or "not now").
REFUSED_FOR_GOOD = ("FLEETLINK_E_UNAUTHORIZED", "FLEETLINK_E_NODE_UNREGISTERED")

#: Exit codes of `python3 -m fleetlink_node`, as `fleetlink node`'s (src/cli/exit-codes.ts) where they apply.
EXIT_BY_CODE = {"FLEETLINK_E_CONFLICT": 6, "FLEETLINK_E_INVALID_ARGUMENT": 64}


class Node:
    """A fleet node. `handlers` maps method names to `handler(payload, ctx)`, plain or async functions; a handler's
    return value is the reply, an exception an error reply (HandlerError(code, message) chooses the code).

    hubs: hub replica URLs, used in turn when one fails. enroll_token: to enroll when there is no identity yet.
    identity_file: keeps the node id and credential across restarts (read if present, written after enrolling).
    heartbeat_ms: heartbeat interval (default 5000). reenroll: enroll again as a new node when the hub refuses the
    identity (default False: stop and say why). stop_timeout: seconds a graceful stop waits for running handlers
    and their replies (default 30). poll_wait_ms: how long a poll may be parked (default 20000, capped by the hub).
    blob_dir: the cache of downloaded blobs, by sha256 (default $FLEETLINK_WORK_DIR/blobs, else a new temporary
    directory). inline_bytes: result bytes up to this size travel inline, larger ones are uploaded as blobs
    (default 262144). blob_mode: how a handler receives a blob of its payload: "bytes" (in memory, default) or
    "file" (a CachedBlob: the verified file in the cache, read as the handler chooses; memory stays bounded).
    blob_cache_bytes: bytes of complete blobs the cache keeps; past it the least recently used ones not in use
    are removed (default 4 GiB). max_conflicts: replacements in a row by another process using this identity
    after which the node gives the identity up and stops (failure_code FLEETLINK_E_CONFLICT; default 3); a
    replacement of a session that had been online for conflict_settle_ms (default 60000) restarts the count, so
    the node that was there first outlasts a newcomer.

    An identity (file) that belongs to a node of another name than `name` is refused: ValueError at once if the
    file says its name, else the node stops (failure_code FLEETLINK_E_INVALID_ARGUMENT) when the hub's hello
    answer names the node.
    """

    def __init__(
        self,
        hubs,
        name,
        handlers,
        enroll_token=None,
        identity_file=None,
        identity=None,
        heartbeat_ms=5000,
        reenroll=False,
        stop_timeout=30.0,
        poll_wait_ms=20_000,
        protocol=PROTOCOL_VERSION,
        blob_dir=None,
        inline_bytes=DEFAULT_INLINE_BYTES,
        blob_mode="bytes",
        blob_cache_bytes=DEFAULT_CACHE_BYTES,
        max_conflicts=3,
        conflict_settle_ms=60_000,
    ):
        if isinstance(hubs, str):
            hubs = hubs.split(",")
        self.hubs = [h.strip().rstrip("/") for h in hubs if h.strip()]
        if not self.hubs:
            raise ValueError("hubs: at least one hub URL")
        self.name = name
        self.enroll_token = enroll_token
        self.identity_file = identity_file
        self.heartbeat_ms = int(heartbeat_ms)
        self.reenroll = reenroll
        self.stop_timeout = stop_timeout
        self.poll_wait_ms = int(poll_wait_ms)
        self.protocol = protocol
        self.identity = identity or (load_identity(identity_file) if identity_file else None)
        why = name_mismatch(self.identity, name, None if identity else identity_file)
        if why:
            raise ValueError(why)
        self.max_conflicts = int(max_conflicts)
        self.conflict_settle_ms = int(conflict_settle_ms)
        #: The failure as an error code (FLEETLINK_E_CONFLICT, FLEETLINK_E_INVALID_ARGUMENT), else None.
        self.failure_code = None
        #: idle, enrolling, connecting, online, offline, pending, stopping, stopped, rejected
        self.state = "idle"
        #: Why the node stopped on its own (identity or protocol refused), else None.
        self.failure = None
        self._client = HubClient()
        self._link = Link(self._client, self._auth)
        self._stop = threading.Event()  # a stop was asked for (or the node failed)
        self._closing = threading.Event()  # the session loop ends: leave was sent, or the node failed
        self._state_cond = threading.Condition()
        self._threads = []
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self._outbox = Outbox(self._deliver)
        if blob_mode not in ("bytes", "file"):
            raise ValueError(f"blob_mode: 'bytes' or 'file', not {blob_mode!r}")
        if blob_dir is None:
            work = os.environ.get("FLEETLINK_WORK_DIR")
            blob_dir = os.path.join(work, "blobs") if work else tempfile.mkdtemp(prefix="fleetlink-blobs-")
        self.blobs = BlobTransfers(
            self._blob_hub, self._auth, self._features, blob_dir, cache_bytes=blob_cache_bytes
        )
        self._executor = Executor(
            handlers, self._outbox, self._node_id, self._max_payload, self.blobs, int(inline_bytes), blob_mode
        )

    # -- public ------------------------------------------------------------------------------------------------

    @property
    def node_id(self):
        return self.identity["nodeId"] if self.identity else None

    def start(self, wait=True, timeout=None):
        """Starts enrolling and connecting in the background; with wait, returns once online (True), or False if
        the node failed or stopped first (see `failure`) or timeout seconds passed."""
        with self._stop_lock:
            if not self._threads:
                for target, name in (
                    (self._connect_loop, "session"),
                    (self._heartbeats, "heartbeat"),
                    (self._progress, "progress"),
                ):
                    t = threading.Thread(target=target, name=f"fleetlink-{name}", daemon=True)
                    t.start()
                    self._threads.append(t)
        return self.wait_online(timeout) if wait else True

    def wait_online(self, timeout=None):
        """True once the node is online; False if it failed or stopped first, or timeout seconds passed."""
        with self._state_cond:
            self._state_cond.wait_for(lambda: self.state in ("online", "rejected", "stopped"), timeout)
            return self.state == "online"

    def run(self):
        """Runs until SIGTERM or SIGINT (a graceful stop) or a refusal for good; returns the exit code (0, or 1
        when the node failed). Call from the main thread."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        self.start(wait=False)
        while not self._stop.wait(0.5):
            pass
        self.stop()
        return EXIT_BY_CODE.get(self.failure_code, 1) if self.failure else 0

    def stop(self, timeout=None):
        """Stops gracefully: takes no new instructions, lets running handlers finish and their replies be
        acknowledged (up to `timeout` seconds, default stop_timeout), says `leave`, then closes the session."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            self._stop.set()
            self._executor.accepting = False
            if self.failure is None:
                self._set_state("stopping")
            deadline = time.monotonic() + (self.stop_timeout if timeout is None else timeout)
            if not self._executor.settled(max(0.0, deadline - time.monotonic())):
                log.warning("stopping with handlers still running: %s", self._executor.running_ids())
            if not self._outbox.drained(max(0.0, deadline - time.monotonic())):
                log.warning("stopping with replies not acknowledged: %s", self._outbox.keys())
            self._closing.set()
            sess = self._link.current
            if sess is not None:
                for method in ("leave", "close") if "leave" in sess.features else ("close",):
                    try:
                        self._client.post(sess.hub, f"/v1/node/{method}", {"session": sess.id}, self._auth(), 2.0)
                    except (HubError, Unreachable) as e:
                        if not (method == "close" and isinstance(e, HubError) and e.status == 410):
                            log.info("%s on stop: %s", method, e)  # after leave the session is already over
                self._link.lose(sess, Close.NORMAL, "node stopping")
            self._executor.cancel_all()
            self._link.close()
            for t in self._threads:
                t.join(5.0)
            self._client.close()
            if self.failure is None:
                self._set_state("stopped")
            self._stopped.set()

    # -- the session loop -------------------------------------------------------------------------------------

    def _connect_loop(self):
        try:
            if not self.identity:
                self._enroll()
            self._sessions()
        except NodeStopped as e:
            if not self._stop.is_set():
                self._fail(str(e), e.code)
        except Exception as e:  # noqa: BLE001 - a bug must still end the process, said loudly
            log.exception("session loop failed")
            self._fail(f"internal error: {e}")

    def _sessions(self):
        backoff, pending, replaced = reconnect_backoff(), pending_backoff(), replaced_backoff()
        conflicts = 0
        i = 0
        while not self._closing.is_set():
            hub = self.hubs[i % len(self.hubs)]
            self._set_state("connecting")
            try:
                sess = self._open(hub)
            except Unreachable as e:
                log.warning("hub %s unreachable: %s", hub, e)
                i += 1
                self._pause(backoff.next())
                continue
            except HubError as e:
                if e.code in REFUSED_FOR_GOOD:
                    self._refused(f"{hub} refuses node {self.node_id}: {e.code}: {e.message}")
                    continue
                if e.code == "FLEETLINK_E_NODE_PENDING":
                    self._set_state("pending")
                    self._pause(pending.next())
                    continue
                if e.code == "FLEETLINK_E_UNSUPPORTED_PROTOCOL" or (e.close or {}).get("code") == Close.UNSUPPORTED_PROTOCOL:
                    raise NodeStopped(f"{hub} does not speak node protocol {self.protocol}: {e.message}") from e
                log.warning("session on %s refused: %s", hub, e)
                if e.status != 429:
                    i += 1
                self._pause(backoff.next())
                continue
            backoff.reset()
            pending.reset()
            self._link.up(sess)
            online_since = time.monotonic()
            self._set_state("online")
            log.info("online as %s on %s (session %s)", self.node_id, hub, sess.id)
            loss = self._poll(sess)
            self._link.down(sess)
            if self._closing.is_set():
                return
            log.warning("session on %s lost: %s %s", hub, loss.code, loss.reason)
            self._set_state("offline")
            if loss.code == Close.UNSUPPORTED_PROTOCOL:
                raise NodeStopped(f"{hub} does not speak node protocol {self.protocol}: {loss.reason}")
            if loss.code == Close.REPLACED:
                # A newer session of this node replaced ours: another process runs with this identity (never our
                # own reconnect: a session we left is not polled again, so its end never reaches this loop). Two
                # such nodes would replace each other forever; back off hard, say why, give up after a few.
                if time.monotonic() - online_since >= self.conflict_settle_ms / 1000:
                    conflicts = 0  # we were settled: a new conflict starts
                    replaced.reset()
                else:
                    conflicts += 1
                who = f"another process is connected as node {self.node_id}" + (
                    f" (identity {self.identity_file})" if self.identity_file else ""
                )
                if conflicts >= self.max_conflicts:
                    raise NodeStopped(
                        f"{who}: replaced {conflicts} times in a row, giving the identity up to it. Only one agent "
                        "may use an identity: stop the other one, or give this one its own --identity file (a new node)",
                        "FLEETLINK_E_CONFLICT",
                    )
                delay = replaced.next()
                log.warning(
                    "%s: only one agent may use an identity (replaced %d of %d times in a row before this node "
                    "gives up); retrying in %.1f s",
                    who,
                    conflicts,
                    self.max_conflicts,
                    delay,
                )
                self._pause(delay)
                continue
            replaced.reset()
            conflicts = 0
            if loss.code in (Close.GOING_AWAY, Close.ABNORMAL):
                i += 1  # this replica is going away or silent: try the next
            self._pause(backoff.next())

    def _open(self, hub):
        """POST open then hello: a live session, or HubError/Unreachable."""
        opened = self._client.post(hub, "/v1/node/open", {}, self._auth(), 10.0)
        sess = Session(hub=hub, id=opened["session"], max_wait_ms=int(opened.get("maxWaitMs", 30_000)))
        inflight = sorted(set(self._executor.running_ids()) | set(self._outbox.keys()))
        hello = self._link.request(
            sess,
            "hello",
            {
                "inflight": inflight,
                "heartbeatIntervalMs": self.heartbeat_ms,
                "protocol": self.protocol,
                "agent": {"name": AGENT_NAME, "version": __version__},
            },
            10.0,
        )
        # An identity file of an older agent does not say its node's name: the hub does.
        hub_name = hello.get("name")
        why = name_mismatch(
            {"nodeId": self.node_id, "name": hub_name} if isinstance(hub_name, str) else None,
            self.name,
            self.identity_file,
        )
        if why:
            # The hello made this session the node's: leave (the node shows offline at once), then close it.
            for method in ("leave", "close") if "leave" in (hello.get("features") or ()) else ("close",):
                try:
                    self._client.post(hub, f"/v1/node/{method}", {"session": sess.id}, self._auth(), 2.0)
                except (HubError, Unreachable) as e:
                    log.info("%s after a name mismatch: %s", method, e)
            raise NodeStopped(why, "FLEETLINK_E_INVALID_ARGUMENT")
        sess.lease_ms = int(hello.get("leaseMs") or 30_000)
        sess.max_payload_bytes = int(hello.get("maxPayloadBytes") or DEFAULT_MAX_PAYLOAD_BYTES)
        sess.features = tuple(hello.get("features") or ())
        return sess

    def _poll(self, sess):
        """Long-polls until the session ends; returns why. Each instruction is acknowledged in the next poll."""
        acks = []
        wait_ms = max(0, min(self.poll_wait_ms, sess.max_wait_ms))
        busy = Backoff(0.2, 2.0)
        while True:
            if sess.loss:
                return sess.loss
            if self._closing.is_set():
                return Loss(Close.NORMAL, "node stopping")
            body = {"waitMs": wait_ms}
            if acks:
                body["acks"] = acks
            try:
                got = self._link.request(sess, "poll", body, wait_ms / 1000 + 10, poll=True)
            except Unreachable as e:
                return sess.loss or Loss(Close.ABNORMAL, str(e))
            except HubError as e:
                if sess.loss:
                    return sess.loss
                if e.code in REFUSED_FOR_GOOD or e.code == "FLEETLINK_E_NODE_PENDING":
                    return Loss(Close.REVOKED, f"{e.code}: {e.message}")  # open again: its refusal says more
                if e.code == "FLEETLINK_E_STREAM_CLOSED":
                    return Loss(Close.GOING_AWAY, f"{e.code}: {e.message}")  # the session is closing here
                log.warning("poll refused: %s", e)
                if e.status == 400:
                    acks = []  # what was refused is not worth sending again
                self._pause(busy.next())
                continue
            busy.reset()
            acks = []
            self._events(got)
            refused = False
            for ins in got.get("instructions") or ():
                if not self._executor.accept(ins):
                    refused = True  # stopping: not acknowledged, so it comes back in every answer
                elif ins["id"] not in acks:
                    acks.append(ins["id"])
            if refused:
                self._pause(0.25)  # still a sign of life well inside the hub's window, without spinning

    def _events(self, got):
        """A poll answer's `events` ({m, b}, as the stream's evt frames): `cancel` ends the handlers whose
        instruction ended before their reply. Read before the answer's instructions, so one cancelled in the
        same answer is acknowledged but never run."""
        for f in got.get("events") or ():
            if not isinstance(f, dict) or f.get("m") != "cancel":
                continue
            b = f.get("b") if isinstance(f.get("b"), dict) else {}
            ids = [i for i in b.get("ids") or () if isinstance(i, str)]
            self._executor.cancel(ids, str(b.get("code") or "FLEETLINK_E_CANCELLED"))

    # -- duties beside the poll -------------------------------------------------------------------------------

    def _heartbeats(self):
        every = self.heartbeat_ms / 1000
        # Only silence means the hub is gone (a blackhole closes nothing): then move on, well inside the node's
        # online window of 2 × interval. An error answer comes from a live hub: keep the session.
        timeout = max(2.0, every / 2)
        while not self._closing.wait(every):
            sess = self._link.current
            if sess is None:
                continue
            try:
                self._link.request(sess, "heartbeat", {"heartbeatIntervalMs": self.heartbeat_ms}, timeout)
            except Unreachable as e:
                self._link.lose(sess, Close.ABNORMAL, f"heartbeat unanswered: {e}")
            except HubError as e:
                if e.code in REFUSED_FOR_GOOD:
                    self._link.lose(sess, Close.REVOKED, f"heartbeat refused: {e.code}")
                elif e.status != 410:
                    log.info("heartbeat failed: %s", e)

    def _progress(self):
        """While handlers run, reports them every third of a lease, so their leases are extended."""
        while True:
            sess = self._link.current
            # Until a hello says the lease, look again soon.
            period = max(0.1, sess.lease_ms / 3000) if sess else 0.2
            if self._closing.wait(period):
                return
            sess = self._link.current
            ids = self._executor.running_ids()
            if sess is None or not ids or "progress" not in sess.features:
                continue
            try:
                self._link.request(sess, "progress", {"ids": ids}, period)
            except (HubError, Unreachable) as e:
                log.info("progress report failed: %s", e)

    def _deliver(self, reply):
        """Sends one reply, with the same id, until a hub acknowledges it or refuses it for good."""
        backoff = reply_backoff()
        while True:
            sess = self._link.wait(1.0)
            if sess is None:
                if self._link.closed:
                    return
                continue
            try:
                self._link.request(sess, "reply", reply, 5.0)
                return
            except Unreachable as e:
                log.info("reply %s unanswered (%s); resending", reply["id"], e)
            except HubError as e:
                if e.status == 410 and e.code == "FLEETLINK_E_SESSION_ENDED":
                    continue  # sent again on the next session
                if e.code in REFUSED_FOR_GOOD:
                    self._link.lose(sess, Close.REVOKED, f"reply refused: {e.code}")
                    continue
                if e.code == "FLEETLINK_E_INSTRUCTION_ENDED":
                    # Its cancel event and the reply crossed: the hub no longer wants it, nothing is wrong.
                    log.info("reply to %s not needed: the instruction ended before it", reply["replyTo"])
                    return
                if e.status != 429 and e.status < 500 and e.definite is not False:
                    log.warning("reply to %s refused: %s", reply["replyTo"], e)
                    return
                log.info("reply %s failed (%s); resending", reply["id"], e)
            if self._link.closed:
                return
            time.sleep(backoff.next())

    # -- helpers -----------------------------------------------------------------------------------------------

    def _auth(self):
        return f"{self.identity['nodeId']}.{self.identity['credential']}" if self.identity else None

    def _blob_hub(self):
        sess = self._link.current
        return sess.hub if sess else self.hubs[0]

    def _features(self):
        sess = self._link.current
        return sess.features if sess else ()

    def _node_id(self):
        return self.node_id

    def _max_payload(self):
        sess = self._link.current
        return sess.max_payload_bytes if sess else DEFAULT_MAX_PAYLOAD_BYTES

    def _enroll(self):
        if not self.enroll_token:
            raise NodeStopped("no identity and no enrollment token to enroll with")
        self._set_state("enrolling")
        self.identity = enroll(self._client, self.hubs, self.name, self.enroll_token, self.heartbeat_ms, self._stop)
        if self.identity_file:
            save_identity(self.identity_file, self.identity)
        log.info("enrolled as node %s", self.node_id)

    def _refused(self, why):
        """The hub does not know this identity (database reset, node unregistered): enroll again, or stop."""
        if self.reenroll and self.enroll_token:
            log.warning("%s: enrolling again as a new node", why)
            self.identity = None
            self._enroll()
            return
        hint = f" remove {self.identity_file} or" if self.identity_file else ""
        cause = ("an admin unregistered this node" if re.search(r"NODE_UNREGISTERED|unregistered", why)
                 else "the hub does not know this identity: was its database reset, or is the identity another hub's?")
        raise NodeStopped(f"{why} ({cause}): to join as a new node,{hint} enroll again with --reenroll")

    def _pause(self, seconds):
        self._closing.wait(seconds)

    def _fail(self, why, code=None):
        log.error("node stops: %s", why)
        self.failure = why
        self.failure_code = code
        self._set_state("rejected")
        self._closing.set()
        self._stop.set()

    def _set_state(self, state):
        with self._state_cond:
            if self.state != state:
                self.state = state
                self._state_cond.notify_all()
