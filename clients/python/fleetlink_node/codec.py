"""Bytes in payloads (docs/blobs.md, src/protocol/blobs.ts): `{"$bytes": "<base64>"}` carries bytes inline,
`{"$blob": "sha256:<hex>", "size": n}` references a blob in the hub's storage. A handler sees plain `bytes` for
both, and may return bytes (or a BlobFile) anywhere in its result: small ones go inline, larger ones are uploaded."""

import base64
import binascii
import os
import re

from .errors import HandlerError

BLOB_KEY = "$blob"
BYTES_KEY = "$bytes"
SHA256_PREFIX = "sha256:"
#: Bytes up to this size travel inline as `$bytes` (base64); larger ones as blobs. (Default: 256 KiB)
DEFAULT_INLINE_BYTES = 256 * 1024
INVALID = "FLEETLINK_E_INVALID_ARGUMENT"
_HEX64 = re.compile(r"[0-9a-f]{64}")


class BlobFile:
    """A handler's result (or a part of one) that is a file's bytes: uploaded from the file in chunks, never
    loaded whole. The file must not change until the reply is sent."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.size = os.path.getsize(self.path)

    def open(self):
        return open(self.path, "rb")

    def __repr__(self):
        return f"BlobFile({self.path!r}, size={self.size})"


class CachedBlob(BlobFile):
    """A received blob left on disk (Node(blob_mode="file")): its verified bytes in the node's blob cache, read
    when and as the handler chooses (`open()`, `read()`); returned in a result it is sent by reference again."""

    def __init__(self, path, sha256):
        super().__init__(path)
        self.sha256 = sha256

    def read(self):
        with self.open() as f:
            return f.read()

    def __repr__(self):
        return f"CachedBlob({self.sha256}, size={self.size})"


def read_ref(obj, path):
    """(sha256, size) of a well-formed reference object; HandlerError naming path otherwise."""
    ref, size = obj.get(BLOB_KEY), obj.get("size")
    if (
        not isinstance(ref, str)
        or not ref.startswith(SHA256_PREFIX)
        or not _HEX64.fullmatch(ref[len(SHA256_PREFIX) :])
        or isinstance(size, bool)
        or not isinstance(size, int)
        or size < 0
    ):
        raise HandlerError(INVALID, f"{path}: a $blob reference is {{\"$blob\": \"sha256:<64 hex>\", \"size\": n}}")
    return ref[len(SHA256_PREFIX) :], size


def decode(value, fetch, path="payload"):
    """The payload with every `$bytes` and `$blob` object replaced by its bytes; `fetch(sha256, size)` returns a
    blob's bytes. Payloads nest at most 128 levels (the hub refuses deeper ones), so recursion is safe."""
    if isinstance(value, list):
        return [decode(v, fetch, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if BYTES_KEY in value:
        data = value[BYTES_KEY]
        if len(value) != 1 or not isinstance(data, str):
            raise HandlerError(INVALID, f"{path}: a $bytes object is {{\"$bytes\": \"<base64>\"}} and nothing else")
        try:
            return base64.b64decode(data, validate=True)
        except binascii.Error as e:
            raise HandlerError(INVALID, f"{path}.$bytes: not base64: {e}") from e
    if BLOB_KEY in value:
        return fetch(*read_ref(value, path))
    return {k: decode(v, fetch, f"{path}.{k}") for k, v in value.items()}


def has_bytes(value):
    """True when a result holds something encode() changes (bytes, a BlobFile), so plain results skip the copy."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, (bytes, bytearray, memoryview, BlobFile)):
            return True
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
    return False


def encode(value, upload, inline_bytes=DEFAULT_INLINE_BYTES, path="payload"):
    """A handler's result made JSON-ready: bytes up to inline_bytes become `$bytes`, larger bytes and every
    BlobFile become references through `upload(source) -> (sha256, size)`. A dict of the result's own that has a
    `$blob` or `$bytes` key is refused naming its path: the receiver would read it as bytes."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = memoryview(value).cast("B") if isinstance(value, memoryview) else value
        if len(data) <= inline_bytes:
            return {BYTES_KEY: base64.b64encode(data).decode("ascii")}
        return ref_of(upload(data))
    if isinstance(value, BlobFile):
        return ref_of(upload(value))
    if isinstance(value, (list, tuple)):
        return [encode(v, upload, inline_bytes, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        for reserved in (BLOB_KEY, BYTES_KEY):
            if reserved in value:
                raise HandlerError(INVALID, f"{path}: an object of the result has the reserved key {reserved}")
        return {k: encode(v, upload, inline_bytes, f"{path}.{k}") for k, v in value.items()}
    return value


def ref_of(blob):
    sha256, size = blob
    return {BLOB_KEY: f"{SHA256_PREFIX}{sha256}", "size": size}
