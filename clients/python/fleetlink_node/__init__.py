"""fleetlink_node: a fleetlink node in Python (standard library only) over the hub's HTTP node API."""

__version__ = "0.1.0"

from .errors import HandlerError, HubError, NodeStopped  # noqa: E402
from .codec import BlobFile, CachedBlob  # noqa: E402
from .executor import Context  # noqa: E402
from .node import Node  # noqa: E402

__all__ = ["BlobFile", "CachedBlob", "Context", "HandlerError", "HubError", "Node", "NodeStopped", "__version__"]
