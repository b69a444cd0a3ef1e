"""The node side of the hub's blob HTTP API (docs/blobs.md), in memory, for FakeHub: begin, PUT from an offset,
upload status, download with Range, presigned URLs. It can cut a download or an upload midway, once, to test
that the node resumes."""

import hashlib
import json
import re
import socket
import threading
import uuid

PREFIX = "/v1/node/blobs"
_HEX64 = re.compile(r"[0-9a-f]{64}")


class FakeBlobs:
    def __init__(self, authorized):
        self.authorized = authorized  # the Authorization header (without Bearer) → bool
        self.lock = threading.Lock()
        self.blobs = {}  # sha256 → bytes
        self.uploads = {}  # id → {"sha256", "size", "data": bytearray, "complete"}
        self.presign = False
        self.cut_download_at = None  # cut the next download once this many bytes of the blob were sent
        self.cut_upload_at = None  # cut the next PUT once the upload holds this many bytes
        self.fail_puts = []  # statuses the next PUTs are answered with, before their body is read (408 as the hub)
        self.log = []  # (method, path, headers) of every request
        self.body_bytes_sent = 0

    def put_blob(self, data):
        sha = hashlib.sha256(data).hexdigest()
        with self.lock:
            self.blobs[sha] = bytes(data)
        return sha

    def requests(self, method, path_part=""):
        with self.lock:
            return [h for m, p, h in self.log if m == method and path_part in p]

    def handle(self, h, method):
        """Serves the request if it is a blob route (True), else False."""
        path = h.path.split("?", 1)[0]
        if not (path.startswith(PREFIX) or path.startswith("/presigned/")):
            return False
        headers = {k.lower(): v for k, v in h.headers.items()}
        with self.lock:
            self.log.append((method, h.path, headers))
        if path.startswith("/presigned/"):
            self._download(h, path.removeprefix("/presigned/"), headers, method)
            return True
        if not self.authorized((headers.get("authorization") or "").removeprefix("Bearer ")):
            return _json(h, 401, _err("UNAUTHORIZED", "wrong credential"))
        rest = path[len(PREFIX) :]
        if method == "POST" and rest == "":
            n = int(headers.get("content-length") or 0)
            return _json(h, *self._begin(json.loads(h.rfile.read(n) or b"{}")))
        m = re.fullmatch(r"/uploads/([^/]+)", rest)
        if m and method == "PUT":
            return self._put(h, m.group(1), headers)
        if m and method == "GET":
            with self.lock:
                up = self.uploads.get(m.group(1))
                if up is None:
                    return _json(h, 404, _err("BLOB_NOT_FOUND", "no such upload", "upload"))
                return _json(h, 200, _status(m.group(1), up))
        m = re.fullmatch(r"/([0-9a-f]{64})/url", rest)
        if m and method == "GET":
            if not self.presign:
                return _json(h, 409, _err("CONFLICT", "presigned downloads are not enabled"))
            host = h.headers.get("host")
            return _json(h, 200, {"url": f"http://{host}/presigned/{m.group(1)}?sig=x", "expiresAt": 0})
        m = re.fullmatch(r"/([0-9a-f]{64})", rest)
        if m and method in ("GET", "HEAD"):
            self._download(h, m.group(1), headers, method)
            return True
        return _json(h, 404, _err("ROUTE_NOT_FOUND", path))

    def _begin(self, body):
        sha, size, run = body.get("sha256"), body.get("size"), body.get("runId")
        if not isinstance(sha, str) or not _HEX64.fullmatch(sha):
            return 400, _err("INVALID_ARGUMENT", "sha256: 64 lower-case hex digits", "sha256")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            return 400, _err("INVALID_ARGUMENT", "size: an integer ≥ 0", "size")
        if not isinstance(run, str):
            return 400, _err("INVALID_ARGUMENT", "runId: required", "runId")
        with self.lock:
            if sha in self.blobs:
                return 200, {"state": "present", "blob": {"sha256": sha, "size": size}}
            for uid, up in self.uploads.items():
                if up["sha256"] == sha and not up["complete"]:
                    break
            else:
                uid, up = uuid.uuid4().hex, {"sha256": sha, "size": size, "data": bytearray(), "complete": False}
                self.uploads[uid] = up
            return 201, {"state": "uploading", "blob": {"sha256": sha, "size": size}, "upload": _status(uid, up)}

    def _put(self, h, uid, headers):
        with self.lock:
            up = self.uploads.get(uid)
            if up is None or up["complete"]:
                return _json(h, 404, _err("BLOB_NOT_FOUND", "no such upload", "upload"))
            offset = headers.get("upload-offset")
            if offset is None or not offset.isdigit() or int(offset) != len(up["data"]):
                h.close_connection = True
                return _json(h, 409, _err("CONFLICT", f"the upload is at offset {len(up['data'])}", "upload-offset"))
            length = int(headers.get("content-length") or 0)
            if length > up["size"] - len(up["data"]):
                h.close_connection = True
                return _json(h, 413, _err("PAYLOAD_TOO_LARGE", f"the blob is {up['size']} bytes", "size"))
            cut, self.cut_upload_at = self.cut_upload_at, None
            fail = self.fail_puts.pop(0) if self.fail_puts else None
        if fail is not None:
            h.close_connection = True
            # The hub's request timeout answers 408 with an INVALID_ARGUMENT body (its client error handler).
            name = "INVALID_ARGUMENT" if fail == 408 else "RATE_LIMITED" if fail == 429 else "UNAVAILABLE"
            return _json(h, fail, _err(name, f"answered {fail}"))
        left = length
        while left > 0:
            piece = h.rfile.read(min(65536, left))
            if not piece:
                return True
            left -= len(piece)
            with self.lock:
                up["data"] += piece
                if cut is not None and len(up["data"]) >= cut:
                    h.close_connection = True
                    h.connection.shutdown(socket.SHUT_RDWR)  # cut midway: what arrived stays durable
                    return True
        with self.lock:
            if len(up["data"]) == up["size"]:
                if hashlib.sha256(up["data"]).hexdigest() != up["sha256"]:
                    del self.uploads[uid]
                    return _json(h, 400, _err("INVALID_ARGUMENT", "the bytes do not hash to sha256", "sha256"))
                self.blobs[up["sha256"]] = bytes(up["data"])
                up["complete"] = True
            return _json(h, 200, _status(uid, up))

    def _download(self, h, sha, headers, method):
        with self.lock:
            data = self.blobs.get(sha)
            cut, self.cut_download_at = self.cut_download_at, None
        if data is None:
            return _json(h, 404, _err("BLOB_NOT_FOUND", f"no blob {sha}", "sha256"))
        start = 0
        rng = re.fullmatch(r"bytes=(\d+)-", headers.get("range") or "")
        if rng:
            start = int(rng.group(1))
            if start >= len(data):
                return _json(h, 416, _err("INVALID_ARGUMENT", "range past the end", "range"))
        h.send_response(206 if rng else 200)
        h.send_header("content-type", "application/octet-stream")
        h.send_header("content-length", str(len(data) - start))
        h.send_header("etag", f'"{sha}"')
        if rng:
            h.send_header("content-range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.end_headers()
        if method == "HEAD":
            return
        end = len(data) if cut is None or cut <= start else cut
        # Counted before the write: once the bytes are out the client may finish and the test read the count
        # before this thread runs again.
        with self.lock:
            self.body_bytes_sent += end - start
        h.wfile.write(data[start:end])
        if end < len(data):
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)


def _status(uid, up):
    return {"id": uid, "offset": len(up["data"]), "size": up["size"], "complete": up["complete"]}


def _err(name, message, field=None):
    e = {"code": f"FLEETLINK_E_{name}", "message": message}
    if field:
        e["field"] = field
    return {"error": e}


def _json(h, status, obj):
    data = json.dumps(obj).encode()
    h.send_response(status)
    h.send_header("content-type", "application/json")
    h.send_header("content-length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)
    return True
