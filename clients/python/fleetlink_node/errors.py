"""Errors a node raises or meets: the handler's own, and the hub's answers (docs/errors.md)."""

HANDLER_FAILED = "FLEETLINK_E_HANDLER_FAILED"
MAX_ERROR_MESSAGE_CHARS = 4096
MAX_CODE_CHARS = 200


class HandlerError(Exception):
    """Raise from a handler to reply with this error code (any 1 to 200 characters) instead of HANDLER_FAILED."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = str(code)
        self.message = str(message)


class HubError(Exception):
    """A hub answered an HTTP request with an error body `{error: {code, message, definite?}, close?}`."""

    def __init__(self, status, code, message, definite=None, close=None):
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.definite = definite
        # For SESSION_ENDED (410): the close code and reason the session ended with.
        self.close = close


class Unreachable(Exception):
    """No answer from a hub (refused, reset, timed out): the request may or may not have happened."""


class NodeStopped(Exception):
    """The node stopped for good; the message says why, `code` (if any) as an error code:
    FLEETLINK_E_CONFLICT (another process kept taking the identity), FLEETLINK_E_INVALID_ARGUMENT (the identity
    belongs to a node of another name)."""

    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code


def truncate(s, limit):
    return s if len(s) <= limit else f"{s[:limit]}… ({len(s) - limit} more characters)"


def reply_error(exc):
    """The reply error `{code, message}` a handler's exception becomes."""
    if isinstance(exc, HandlerError) and 1 <= len(exc.code) <= MAX_CODE_CHARS:
        code, message = exc.code, exc.message
    else:
        code, message = HANDLER_FAILED, str(exc) or type(exc).__name__
    return {"code": code, "message": truncate(message, MAX_ERROR_MESSAGE_CHARS)}
