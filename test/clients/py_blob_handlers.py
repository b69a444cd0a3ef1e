"""Handlers for test/clients/python-blobs.test.ts: bytes in and out, and one that waits for its cancellation.
Each run appends `start <id> <method>` to $FLEETLINK_WORK_DIR/calls.log, as the conformance handlers do."""

import hashlib
import os

from fleetlink_node.conformance import _started


def grow(payload, ctx):
    """{data: bytes, extra: n} → the data followed by n bytes of a known pattern, and the data's sha256."""
    _started(ctx)
    data = payload["data"]
    extra = bytes((i * 31 + 7) & 0xFF for i in range(payload["extra"]))
    return {"data": data + extra, "sha256": hashlib.sha256(data).hexdigest(), "type": type(data).__name__}


def wait(payload, ctx):
    """Waits up to payload.ms for its cancellation; logs `cancelled <id>` when it came."""
    _started(ctx)
    if ctx.cancelled.wait(payload.get("ms", 20_000) / 1000):
        with open(os.path.join(os.environ["FLEETLINK_WORK_DIR"], "calls.log"), "a", encoding="utf-8") as f:
            f.write(f"cancelled {ctx.instruction_id} wait\n")
    return "finished anyway"


handlers = {"grow": grow, "wait": wait, "echo": lambda p, ctx: p}
