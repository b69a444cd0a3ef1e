"""python3 -m fleetlink_node: run a node with the handlers of a Python module."""

import argparse
import importlib
import importlib.util
import inspect
import logging
import os
import socket
import sys
import threading

from . import __version__
from .node import Node


def load_handlers(spec):
    """Handlers from a module name (`mypkg.handlers`) or a file (`./handlers.py`): its `handlers` dict if it has
    one, else every public function defined in it."""
    if spec.endswith(".py") or os.sep in spec:
        path = os.path.abspath(spec)
        name = os.path.splitext(os.path.basename(path))[0]
        loader = importlib.util.spec_from_file_location(name, path)
        if loader is None:
            raise SystemExit(f"--handlers {spec}: cannot load {path}")
        mod = importlib.util.module_from_spec(loader)
        sys.modules[name] = mod
        loader.loader.exec_module(mod)
    else:
        sys.path.insert(0, os.getcwd())
        mod = importlib.import_module(spec)
    table = getattr(mod, "handlers", None)
    if isinstance(table, dict):
        found = {k: v for k, v in table.items() if callable(v)}
    else:
        found = {
            k: v
            for k, v in vars(mod).items()
            if not k.startswith("_") and inspect.isfunction(v) and v.__module__ == mod.__name__
        }
    if not found:
        raise SystemExit(f"--handlers {spec}: defines no handler functions (and no `handlers` dict)")
    return found


def parse(argv):
    env = os.environ
    work = env.get("FLEETLINK_WORK_DIR")
    p = argparse.ArgumentParser(
        prog="python3 -m fleetlink_node",
        description="Run a fleetlink node: enroll, take instructions from a hub over HTTP, run their handlers.",
    )
    p.add_argument("--hub", default=env.get("FLEETLINK_HUB"), help="hub URL(s), comma-separated (env: FLEETLINK_HUB)")
    p.add_argument("--token-file", help="file holding the enrollment token")
    p.add_argument("--token", default=env.get("FLEETLINK_ENROLL_TOKEN"), help="enrollment token (env: FLEETLINK_ENROLL_TOKEN)")
    p.add_argument("--handlers", required=True, help="module name or .py file with the handler functions")
    p.add_argument("--name", default=env.get("FLEETLINK_NODE_NAME"), help="node name (env: FLEETLINK_NODE_NAME; default: the host name)")
    p.add_argument(
        "--identity",
        default=os.path.join(work, "identity.json") if work else None,
        help="file keeping the node id and credential (default: $FLEETLINK_WORK_DIR/identity.json, "
        "else .fleetlink/node-NAME.json)",
    )
    p.add_argument("--heartbeat-ms", type=int, default=5000, help="heartbeat interval in ms (default: 5000)")
    p.add_argument("--reenroll", action="store_true", help="enroll again as a new node if the hub refuses the identity")
    p.add_argument("--stop-timeout", type=float, default=30.0, help="seconds a graceful stop waits for handlers (default: 30)")
    p.add_argument(
        "--blob-dir",
        default=os.path.join(work, "blobs") if work else None,
        help="cache of downloaded blobs (default: $FLEETLINK_WORK_DIR/blobs, else a new temporary directory)",
    )
    p.add_argument(
        "--blob-cache-bytes", type=int, default=4 << 30,
        help="bytes of blobs the cache keeps; the least recently used ones not in use go first (default: 4 GiB)",
    )
    p.add_argument(
        "--inline-bytes", type=int, default=256 * 1024,
        help="result bytes up to this size go inline, larger ones are uploaded as blobs (default: 262144)",
    )
    p.add_argument(
        "--blob-mode", choices=("bytes", "file"), default="bytes",
        help="a payload's blobs reach handlers as bytes, or as files in the cache (CachedBlob) (default: bytes)",
    )
    p.add_argument("--log-level", default=env.get("FLEETLINK_LOG_LEVEL", "info"), help="debug, info, warning, error (default: info)")
    p.add_argument("--version", action="version", version=f"fleetlink-py {__version__}")
    o = p.parse_args(argv)
    if not o.hub:
        p.error("--hub (or FLEETLINK_HUB) is required")
    if o.token_file:
        with open(o.token_file, encoding="utf-8") as f:
            o.token = f.read().strip()
    o.name = o.name or socket.gethostname()
    o.identity = o.identity or os.path.join(".fleetlink", f"node-{o.name}.json")
    if not 100 <= o.heartbeat_ms <= 3_600_000:
        p.error("--heartbeat-ms must be 100 to 3600000")
    if o.inline_bytes < 0:
        p.error("--inline-bytes must be 0 or more")
    if o.blob_cache_bytes < 0:
        p.error("--blob-cache-bytes must be 0 or more")
    return o


def make_node(o):
    return Node(
        hubs=o.hub,
        name=o.name,
        handlers=load_handlers(o.handlers),
        enroll_token=o.token,
        identity_file=o.identity,
        heartbeat_ms=o.heartbeat_ms,
        reenroll=o.reenroll,
        stop_timeout=o.stop_timeout,
        blob_dir=o.blob_dir,
        blob_cache_bytes=o.blob_cache_bytes,
        inline_bytes=o.inline_bytes,
        blob_mode=o.blob_mode,
    )


def main(argv=None):
    o = parse(sys.argv[1:] if argv is None else argv)
    level = logging.DEBUG if o.log_level == "trace" else getattr(logging, o.log_level.upper(), logging.INFO)
    logging.basicConfig(level=level, stream=sys.stderr, format=f"%(asctime)s %(levelname)s {o.name}: %(message)s")
    try:
        node = make_node(o)
    except ValueError as e:
        # An identity file of another node name (or another bad argument): a usage error, as `fleetlink node`.
        print(f"fleetlink_node: FLEETLINK_E_INVALID_ARGUMENT: {e}", file=sys.stderr)
        return 64

    def announce():
        # The same line as `fleetlink node`, so scripts and tests wait for it the same way.
        if node.wait_online():
            print(f"node {o.name} online as {node.node_id}", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    code = node.run()
    if node.failure:
        prefix = f"{node.failure_code}: " if node.failure_code else ""
        print(f"fleetlink_node: {prefix}{node.failure}", file=sys.stderr)
    return code
