"""Handlers for test/clients/python.test.ts: a handler that fails with the application's own error code."""

from fleetlink_node import HandlerError
from fleetlink_node.conformance import _started


def score(payload, ctx):
    _started(ctx)
    if not isinstance(payload, (int, float)):
        raise HandlerError("APP_E_NOT_A_NUMBER", f"score needs a number, got {type(payload).__name__}")
    return payload * 2


handlers = {"score": score}
