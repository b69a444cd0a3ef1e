"""The node's live HTTP session, if any: what every request of the HTTP node API is sent on (docs/protocol.md)."""

import threading
from dataclasses import dataclass, field

from .errors import HubError

PREFIX = "/v1/node"
SESSION_ENDED = "FLEETLINK_E_SESSION_ENDED"


class Close:
    """Close codes (src/protocol/close-codes.ts); a node acts on the code, never on the reason text."""

    NORMAL = 1000
    GOING_AWAY = 1001
    ABNORMAL = 1006
    POLICY = 1008
    REPLACED = 4000
    REVOKED = 4001
    UNSUPPORTED_PROTOCOL = 4002


@dataclass
class Loss:
    code: int
    reason: str


@dataclass
class Session:
    hub: str
    id: str
    max_wait_ms: int = 30_000
    lease_ms: int = 30_000
    max_payload_bytes: int = 4 * 1024 * 1024
    features: tuple = ()
    loss: Loss = None
    poll_conn: object = field(default=None, repr=False)


class Link:
    """Holds the live session; requests go through it so that whichever thread learns that the session ended
    (a 410, a silent hub) ends it for all: the poll is cut and the connection loop opens a new one."""

    def __init__(self, client, auth):
        self._client = client
        self._auth = auth
        self._current = None
        self._closed = False
        self._cond = threading.Condition()

    @property
    def current(self):
        with self._cond:
            return self._current

    def up(self, sess):
        with self._cond:
            self._current = sess
            self._cond.notify_all()

    def down(self, sess):
        with self._cond:
            if self._current is sess:
                self._current = None

    def close(self):
        with self._cond:
            self._closed = True
            self._current = None
            self._cond.notify_all()

    @property
    def closed(self):
        return self._closed

    def wait(self, timeout):
        """The live session, waiting up to timeout seconds for one; None if there is none or the link closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or (self._current and not self._current.loss), timeout)
            s = self._current
            return None if self._closed or s is None or s.loss else s

    def request(self, sess, method, body, timeout, poll=False):
        """POST /v1/node/<method> on this session; a 410 ends the session (with its close code) and re-raises."""
        holder = (lambda c: setattr(sess, "poll_conn", c)) if poll else None
        try:
            return self._client.post(
                sess.hub, f"{PREFIX}/{method}", {**body, "session": sess.id}, self._auth(), timeout, holder
            )
        except HubError as e:
            if e.status == 410 and e.code == SESSION_ENDED:
                close = e.close or {}
                self.lose(sess, int(close.get("code", Close.GOING_AWAY)), str(close.get("reason", e.message)))
            raise

    def lose(self, sess, code, reason):
        """The session ended (the first reason found is kept): cut its poll so the connection loop moves on."""
        with self._cond:
            if sess.loss is None:
                sess.loss = Loss(code, reason)
            if self._current is sess:
                self._current = None
            conn = sess.poll_conn
        if conn is not None:
            self._client.abort(conn)
