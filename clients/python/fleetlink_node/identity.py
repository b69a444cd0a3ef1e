"""Enrollment and the identity file (the same JSON `{nodeId, credential}` the TypeScript agent keeps)."""

import json
import logging
import os

from .backoff import enroll_backoff
from .errors import HubError, NodeStopped, Unreachable

log = logging.getLogger("fleetlink_node")


def load_identity(path):
    """The identity kept in this file, or None (no file yet, or not an identity: enroll)."""
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        if isinstance(d, dict) and isinstance(d.get("nodeId"), str) and isinstance(d.get("credential"), str):
            return {"nodeId": d["nodeId"], "credential": d["credential"]}
    except (OSError, ValueError):
        pass
    return None


def save_identity(path, identity):
    """Keeps the identity in this file, readable by its owner only (it holds the credential)."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"nodeId": identity["nodeId"], "credential": identity["credential"]}, f)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def enroll(client, hubs, name, token, heartbeat_ms, stop):
    """Enrolls as a new node, retrying with backoff across hubs while none answers; a definite refusal (wrong
    token, name taken, …) raises NodeStopped with the hub's reason. Setting the event `stop` ends the retries."""
    backoff = enroll_backoff()
    for attempt in range(1 << 62):
        hub = hubs[attempt % len(hubs)]
        try:
            body = client.post(
                hub,
                "/v1/nodes/enroll",
                {"name": name, "heartbeatIntervalMs": heartbeat_ms},
                auth=token,
                timeout=10.0,
            )
            node = body.get("node") or {}
            if isinstance(node.get("id"), str) and isinstance(body.get("credential"), str):
                return {"nodeId": node["id"], "credential": body["credential"]}
            why = f"enrollment answer from {hub} lacks node.id or credential"
        except HubError as e:
            if 400 <= e.status < 500 and e.status not in (408, 429):
                raise NodeStopped(f"enrollment refused by {hub}: HTTP {e.status} {e.code}: {e.message}") from e
            why = str(e)
        except Unreachable as e:
            why = f"hub {hub} unreachable for enrollment: {e}"
        delay = backoff.next()
        log.warning("enrollment failed (%s); retrying in %.1f s", why, delay)
        if stop.wait(delay):
            raise NodeStopped("stopped while enrolling")
    raise NodeStopped("enrollment retries exhausted")
