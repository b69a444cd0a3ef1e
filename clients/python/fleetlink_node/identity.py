"""Enrollment and the identity file (the same JSON `{nodeId, credential, name}` the TypeScript agent keeps)."""

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
            out = {"nodeId": d["nodeId"], "credential": d["credential"]}
            if isinstance(d.get("name"), str):
                out["name"] = d["name"]  # files of older agents have none
            return out
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
        keep = {"nodeId": identity["nodeId"], "credential": identity["credential"]}
        if identity.get("name"):
            keep["name"] = identity["name"]
        json.dump(keep, f)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def name_mismatch(identity, name, identity_file=None):
    """Why an identity may not be used under `name` (it belongs to a node of another name), else None. There is
    no rename on the hub: the ways out are the identity's own name, or a new node under the new name."""
    if not identity or not identity.get("name") or identity["name"] == name:
        return None
    old, node_id = identity["name"], identity["nodeId"]
    src = f"identity file {identity_file}" if identity_file else "identity"
    other = f"e.g. --identity .fleetlink/node-{name}.json, " if identity_file else ""
    return (
        f'name: the {src} is node "{old}" ({node_id}), not "{name}". Start it as --name {old}; or, to have a node '
        f"named {name}, use another identity file ({other}which enrolls a new node) and remove the old one with "
        f"fleetlink nodes unregister {node_id}. A node cannot be renamed in place."
    )


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
                return {"nodeId": node["id"], "credential": body["credential"], "name": node.get("name") or name}
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
