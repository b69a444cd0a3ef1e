"""Moves blobs between a node and its hub over the blob HTTP API (docs/blobs.md): downloads into a
content-addressed cache, uploads from memory or a file; both in chunks (bounded memory) and both resumed after a
cut: a download from its `.partial` file with a Range header, an upload from the offset the hub made durable."""

import hashlib
import http.client
import json
import logging
import os
import re
import threading
import time
import urllib.parse

from .errors import HandlerError, HubError, Unreachable

log = logging.getLogger("fleetlink_node")

PREFIX = "/v1/node/blobs"
BLOB_NOT_FOUND = "FLEETLINK_E_BLOB_NOT_FOUND"
CANCELLED = "FLEETLINK_E_CANCELLED"
_HEX64 = re.compile(r"[0-9a-f]{64}")
#: Bytes read or sent at a time: what a transfer holds in memory. (Default: 1 MiB)
DEFAULT_CHUNK = 1 << 20
#: Bytes one upload PUT carries at most; a larger blob goes in several PUTs, each from the offset the previous one
#: answered, so every request stays well inside the hub's request timeout (30 s). (Default: 64 MiB)
DEFAULT_PUT_BYTES = 64 << 20
#: Bytes of complete blobs the cache keeps before evicting the least recently used. (Default: 4 GiB)
DEFAULT_CACHE_BYTES = 4 << 30


class BlobTransfers:
    """hub(): the URL of the hub to talk to (the live session's); auth(): the node's credential `id.secret`;
    features(): the hub's hello features ("blob-urls": download through presigned URLs). cache_dir: where
    downloaded blobs are kept by sha256. retries: cuts (and 408/429/5xx answers) in a row a transfer survives
    (default 5). put_bytes: the most one upload PUT carries (default DEFAULT_PUT_BYTES). cache_bytes: bytes of
    complete blobs kept before the least recently used (by mtime) are evicted; a blob in use (being downloaded,
    or held by a running handler: hold/release) is never evicted (default DEFAULT_CACHE_BYTES)."""

    def __init__(
        self,
        hub,
        auth,
        features,
        cache_dir,
        chunk=DEFAULT_CHUNK,
        retries=5,
        timeout=60.0,
        put_bytes=DEFAULT_PUT_BYTES,
        cache_bytes=DEFAULT_CACHE_BYTES,
    ):
        self._hub, self._auth, self._features = hub, auth, features
        self.cache_dir = cache_dir
        self.chunk = chunk
        self.retries = retries
        self.timeout = timeout
        if isinstance(put_bytes, bool) or not isinstance(put_bytes, int) or put_bytes < 1:
            raise ValueError(f"put_bytes: an integer ≥ 1, not {put_bytes!r}")
        if isinstance(cache_bytes, bool) or not isinstance(cache_bytes, int) or cache_bytes < 0:
            raise ValueError(f"cache_bytes: an integer ≥ 0, not {cache_bytes!r}")
        self.put_bytes = put_bytes
        self.cache_bytes = cache_bytes
        # Blobs in use by sha256: [holders, lock serialising their download]. An entry lives only while held, so
        # the table is as large as what is in use now, not as every blob ever seen.
        self._used = {}
        self._used_lock = threading.Lock()
        #: Bytes received and sent over the wire (tests check that a resume re-sends little).
        self.received = 0
        self.sent = 0

    # -- download ----------------------------------------------------------------------------------------------

    def fetch(self, sha256, size, cancelled=None):
        self.hold(sha256)
        try:
            with open(self.download(sha256, size, cancelled), "rb") as f:
                return f.read()
        finally:
            self.release(sha256)

    def hold(self, sha256):
        """Marks the blob in use: eviction leaves its file alone until as many release() calls."""
        with self._used_lock:
            entry = self._used.get(sha256)
            if entry is None:
                entry = self._used[sha256] = [0, threading.Lock()]
            entry[0] += 1
            return entry[1]

    def release(self, sha256):
        with self._used_lock:
            entry = self._used.get(sha256)
            if entry is None:
                return
            entry[0] -= 1
            if entry[0] <= 0:
                del self._used[sha256]

    def download(self, sha256, size, cancelled=None):
        """The path of the blob's verified bytes in the cache, downloaded unless already there. Hold the blob
        (hold/release) while using the path: another download's eviction may remove a file nobody holds."""
        lock = self.hold(sha256)
        try:
            with lock:
                path = self._download_held(sha256, size, cancelled)
        finally:
            self.release(sha256)
        return path

    def _download_held(self, sha256, size, cancelled):
        final = os.path.join(self.cache_dir, sha256)
        if os.path.isfile(final) and os.path.getsize(final) == size:
            _touch(final)  # recently used: eviction goes by mtime
            return final  # content-addressed: a file under its hash was verified before it got that name
        os.makedirs(self.cache_dir, exist_ok=True)
        part = final + ".partial"
        cuts = 0
        while True:
            _check(cancelled)
            try:
                self._download_into(part, sha256, size, cancelled)
                break
            except HubError as e:
                raise _handler_error(e) from e
            except Unreachable as e:
                cuts += 1
                if cuts > self.retries:
                    raise HandlerError(BLOB_NOT_FOUND, f"blob {sha256}: download failed: {e}") from e
                log.info("blob %s download cut (%s); resuming", sha256, e)
                time.sleep(min(2.0, 0.1 * 2**cuts))
        digest = _hash_file(part)
        if digest != sha256 or os.path.getsize(part) != size:
            os.remove(part)
            raise HandlerError(BLOB_NOT_FOUND, f"blob {sha256}: the bytes received hash to {digest}")
        os.replace(part, final)
        self.evict()
        return final

    def evict(self):
        """Removes the least recently used complete blobs (oldest mtime first) until the cache holds at most
        cache_bytes; held blobs stay (the cache may then stay over its size). Returns the bytes removed."""
        files = []
        try:
            names = os.listdir(self.cache_dir)
        except FileNotFoundError:
            return 0
        for name in names:
            if len(name) != 64 or not _HEX64.fullmatch(name):
                continue  # partial downloads and spooled files are not complete blobs
            try:
                st = os.stat(os.path.join(self.cache_dir, name))
            except FileNotFoundError:
                continue
            files.append((st.st_mtime_ns, st.st_size, name))
        total = sum(f[1] for f in files)
        removed = 0
        for _, fsize, name in sorted(files):
            if total <= self.cache_bytes:
                break
            # Under the table's lock: a blob cannot become held between the check and the removal.
            with self._used_lock:
                if name in self._used:
                    continue
                try:
                    os.remove(os.path.join(self.cache_dir, name))
                except FileNotFoundError:
                    pass
            total -= fsize
            removed += fsize
        return removed

    def _download_into(self, part, sha256, size, cancelled):
        have = os.path.getsize(part) if os.path.exists(part) else 0
        if have > size:
            os.remove(part)
            have = 0
        if have == size:
            return
        url, headers = self._source(sha256)
        if have:
            headers["range"] = f"bytes={have}-"
        conn, res = self._open("GET", url, headers)
        try:
            if res.status == 416:
                os.remove(part)  # our partial does not fit the blob: start over
                raise Unreachable("range refused")
            if res.status == 200:
                have = 0  # the whole blob came back
            elif res.status != 206:
                raise _error(res.status, res.read(), f"GET blob {sha256}")
            with open(part, "r+b" if have else "wb") as f:
                f.seek(have)
                f.truncate()
                while have < size:
                    _check(cancelled)
                    try:
                        data = res.read(min(self.chunk, size - have))
                    except (OSError, http.client.HTTPException) as e:
                        raise Unreachable(f"{type(e).__name__}: {e}") from e
                    if not data:
                        raise Unreachable(f"cut after {have} of {size} bytes")
                    f.write(data)
                    have += len(data)
                    self.received += len(data)
        finally:
            conn.close()

    def _source(self, sha256):
        """(url, headers) to GET the blob from: a presigned URL (no credential: it is in the URL) when the hub
        offers them, else the hub's route."""
        hub = self._hub()
        auth = {"authorization": f"Bearer {self._auth()}"}
        if "blob-urls" in self._features():
            try:
                got = self._json("GET", f"{hub}{PREFIX}/{sha256}/url", None)
                return got["url"], {}
            except HubError as e:
                if e.status != 409:
                    raise _handler_error(e) from e
        return f"{hub}{PREFIX}/{sha256}", auth

    # -- upload ------------------------------------------------------------------------------------------------

    def upload(self, source, run_id, cancelled=None):
        """Uploads bytes-like or a BlobFile as a blob of the run; returns (sha256, size). A blob already there
        costs one round trip."""
        sha256, size = _digest(source, self.chunk)
        hub = self._hub()
        try:
            for _ in range(2):
                began = self._json("POST", f"{hub}{PREFIX}", {"sha256": sha256, "size": size, "runId": run_id})
                if began["state"] == "present" or self._send(hub, began["upload"], source, size, cancelled):
                    return sha256, size
        except HubError as e:
            raise _handler_error(e) from e
        raise HandlerError(BLOB_NOT_FOUND, f"blob {sha256}: its upload ended twice before completing")

    def _send(self, hub, upload, source, size, cancelled):
        """PUTs from the durable offset until complete (True); False if the hub no longer knows the upload."""
        status_url = f"{hub}{PREFIX}/uploads/{upload['id']}"
        offset, cuts = upload["offset"], 0
        while not upload.get("complete"):
            _check(cancelled)
            try:
                upload = self._put(status_url, source, offset, min(size, offset + self.put_bytes), cancelled)
                offset, cuts = upload["offset"], 0
                continue
            except HubError as e:
                if e.status == 404:
                    return False
                if e.status != 409:
                    raise
            except Unreachable as e:  # a cut, or a 408/429/5xx answer: go on from the durable offset
                cuts += 1
                if cuts > self.retries:
                    raise HandlerError("FLEETLINK_E_UNAVAILABLE", f"upload {upload['id']} failed: {e}") from e
                log.info("upload %s cut at %s (%s); resuming", upload["id"], offset, e)
                time.sleep(min(2.0, 0.1 * 2**cuts))
            try:
                upload = self._json("GET", status_url, None)  # where the hub stands after a cut or a conflict
            except HubError as e:
                if e.status == 404:
                    return False
                raise
            offset = upload["offset"]
        return True

    def _put(self, url, source, offset, end, cancelled):
        """One PUT of the bytes [offset, end)."""
        u = urllib.parse.urlsplit(url)
        conn = _connection(u, self.timeout)
        try:
            try:
                conn.putrequest("PUT", u.path, skip_accept_encoding=True)
                for k, v in (
                    ("content-type", "application/octet-stream"),
                    ("content-length", str(end - offset)),
                    ("upload-offset", str(offset)),
                    ("authorization", f"Bearer {self._auth()}"),
                ):
                    conn.putheader(k, v)
                conn.endheaders()
                for piece in _pieces(source, offset, end, self.chunk):
                    _check(cancelled)
                    conn.send(piece)
                    self.sent += len(piece)
            except (OSError, http.client.HTTPException):
                pass  # the hub may have answered early (413, 409) and closed: read its answer below
            try:
                res = conn.getresponse()
                raw = res.read()
            except (OSError, http.client.HTTPException) as e:
                raise Unreachable(f"PUT {u.path}: {type(e).__name__}: {e}") from e
        finally:
            conn.close()
        if res.status != 200:
            raise _error(res.status, raw, f"PUT {u.path}")
        return json.loads(raw)

    # -- plumbing ----------------------------------------------------------------------------------------------

    def _json(self, method, url, body):
        data = json.dumps(body).encode() if body is not None else None
        headers = {"authorization": f"Bearer {self._auth()}", "accept": "application/json"}
        if data is not None:
            headers["content-type"] = "application/json"
        conn, res = self._open(method, url, headers, data)
        try:
            raw = res.read()
        except (OSError, http.client.HTTPException) as e:
            raise Unreachable(f"{method} {url}: {type(e).__name__}: {e}") from e
        finally:
            conn.close()
        if not 200 <= res.status < 300:
            raise _error(res.status, raw, f"{method} {url}")
        return json.loads(raw)

    def _open(self, method, url, headers, body=None):
        u = urllib.parse.urlsplit(url)
        conn = _connection(u, self.timeout)
        try:
            conn.request(method, u.path + (f"?{u.query}" if u.query else ""), body=body, headers=headers)
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise Unreachable(f"{method} {url}: {type(e).__name__}: {e}") from e


def _connection(u, timeout):
    cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    return cls(u.hostname, u.port, timeout=timeout)


def _check(cancelled):
    if cancelled is not None and cancelled.is_set():
        raise HandlerError(CANCELLED, "the instruction was cancelled")


def _pieces(source, offset, end, chunk):
    if hasattr(source, "open"):
        with source.open() as f:
            f.seek(offset)
            while offset < end and (piece := f.read(min(chunk, end - offset))):
                offset += len(piece)
                yield piece
        return
    view = memoryview(source)
    for at in range(offset, end, chunk):
        yield view[at : min(at + chunk, end)]


def _touch(path):
    try:
        os.utime(path)
    except OSError:
        pass  # removed or read-only: its mtime only orders eviction


def _digest(source, chunk):
    if getattr(source, "sha256", None):
        return source.sha256, source.size  # a cached blob: verified when it was downloaded
    if hasattr(source, "open"):
        return _hash_file(source.path, chunk), source.size
    return hashlib.sha256(source).hexdigest(), len(source)


def _hash_file(path, chunk=DEFAULT_CHUNK):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(chunk):
            h.update(piece)
    return h.hexdigest()


def _error(status, raw, what):
    try:
        err = json.loads(raw).get("error")
    except (ValueError, AttributeError):
        err = None
    # Checked before the body: the hub answers a request it timed out 408 with an INVALID_ARGUMENT body, and
    # what it made durable is kept, so the transfer goes on (as after a 429 or a 5xx) rather than failing.
    if status >= 500 or status in (408, 429):
        message = err.get("message") if isinstance(err, dict) else None
        return Unreachable(f"{what}: HTTP {status}" + (f": {message}" if message else ""))
    if isinstance(err, dict):
        return HubError(status, str(err.get("code", "")), str(err.get("message", "")), err.get("definite"))
    return HubError(status, "", f"{what}: HTTP {status}: {raw[:200]!r}")


def _handler_error(e):
    """A hub's refusal as the error reply the handler's instruction gets (its code kept)."""
    return HandlerError(e.code or "FLEETLINK_E_HANDLER_FAILED", f"blob transfer refused: {e.message}")
