"""JSON over HTTP/1.1 to hub replicas, with kept-alive connections (a node sends many small requests)."""

import http.client
import json
import socket
import threading
import urllib.parse

from .errors import HubError, Unreachable


class HubClient:
    """POSTs JSON to hubs. Idle connections are kept per hub; a request on one that the server closed meanwhile is
    sent once more on a fresh connection (every node request is idempotent: replies by their id, acks by theirs)."""

    def __init__(self, max_idle_per_hub=4):
        self._idle = {}
        self._lock = threading.Lock()
        self._max_idle = max_idle_per_hub

    def post(self, hub, path, body, auth=None, timeout=10.0, holder=None):
        """Returns the answer's JSON body (2xx). Raises HubError for an error answer, Unreachable for no answer.
        `holder(conn)` is told the connection in use, so another thread may abort a long poll (abort())."""
        data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        headers = {"content-type": "application/json", "accept": "application/json"}
        if auth:
            headers["authorization"] = f"Bearer {auth}"
        for fresh in (False, True):
            conn, reused = self._take(hub, fresh)
            if holder:
                holder(conn)
            try:
                conn.timeout = timeout
                # Connected before the abort check: an abort() that came while there was no socket yet is seen
                # here, one that comes later shuts the socket down.
                if conn.sock is None:
                    conn.connect()
                if getattr(conn, "fl_aborted", False):
                    raise ConnectionAbortedError("aborted")
                conn.sock.settimeout(timeout)
                conn.request("POST", self._path(hub, path), body=data, headers=headers)
                res = conn.getresponse()
                raw = res.read()
                status = res.status
                keep = not res.will_close
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                stale = isinstance(e, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError))
                if reused and stale and not fresh:
                    continue
                raise Unreachable(f"{hub}{path}: {type(e).__name__}: {e}") from e
            finally:
                if holder:
                    holder(None)
            if keep:
                self._give(hub, conn)
            else:
                conn.close()
            return self._answer(hub, path, status, raw)
        raise AssertionError("unreachable")

    @staticmethod
    def abort(conn):
        """Ends a request another thread is waiting on (its post raises Unreachable), even one still connecting."""
        conn.fl_aborted = True
        sock = getattr(conn, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        with self._lock:
            for conns in self._idle.values():
                for c in conns:
                    c.close()
            self._idle.clear()

    def _answer(self, hub, path, status, raw):
        try:
            obj = json.loads(raw) if raw else {}
        except ValueError:
            obj = None
        if 200 <= status < 300 and obj is not None:
            return obj
        err = obj.get("error") if isinstance(obj, dict) else None
        if isinstance(err, dict):
            raise HubError(
                status,
                str(err.get("code", "")),
                str(err.get("message", "")),
                err.get("definite"),
                obj.get("close") if isinstance(obj.get("close"), dict) else None,
            )
        if status >= 500 or status in (408, 429) or obj is None:
            # A proxy's page or a broken answer: nothing a node can act on but "try again".
            raise Unreachable(f"{hub}{path}: HTTP {status}: {raw[:200]!r}")
        raise HubError(status, "", raw[:200].decode(errors="replace"))

    @staticmethod
    def _path(hub, path):
        base = urllib.parse.urlsplit(hub).path.rstrip("/")
        return base + path

    def _take(self, hub, fresh):
        if not fresh:
            with self._lock:
                conns = self._idle.get(hub)
                if conns:
                    return conns.pop(), True
        u = urllib.parse.urlsplit(hub)
        if u.scheme == "https":
            return http.client.HTTPSConnection(u.hostname, u.port or 443), False
        return http.client.HTTPConnection(u.hostname, u.port or 80), False

    def _give(self, hub, conn):
        with self._lock:
            conns = self._idle.setdefault(hub, [])
            if len(conns) < self._max_idle:
                conns.append(conn)
                return
        conn.close()
