"""The conformance handlers (`fleetlink conformance node`): echo, fail and sleep, each run logged first as
`start <instructionId> <method>` in $FLEETLINK_WORK_DIR/calls.log (the kit counts executions from it)."""

import os
import threading

from .errors import HandlerError

_lock = threading.Lock()


def _started(ctx):
    work = os.environ.get("FLEETLINK_WORK_DIR")
    if not work:
        return
    with _lock, open(os.path.join(work, "calls.log"), "a", encoding="utf-8") as f:
        f.write(f"start {ctx.instruction_id} {ctx.method}\n")
        f.flush()


def echo(payload, ctx):
    _started(ctx)
    return payload


def fail(payload, ctx):
    _started(ctx)
    message = payload.get("message") if isinstance(payload, dict) else None
    raise HandlerError("FLEETLINK_E_HANDLER_FAILED", str(message if message is not None else "fail"))


def sleep(payload, ctx):
    _started(ctx)
    ms = payload.get("ms", 0) if isinstance(payload, dict) else 0
    # Stops early when the hub cancels the instruction: its result is dropped anyway.
    ctx.cancelled.wait(max(0, ms) / 1000)
    return {"slept": ms}


handlers = {"echo": echo, "fail": fail, "sleep": sleep}
