"""The HTTP client's abort: a poll cut by another thread ends at once, even if the cut came before it connected."""

import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from fleetlink_node.errors import Unreachable  # noqa: E402
from fleetlink_node.transport import HubClient  # noqa: E402


class AbortTest(unittest.TestCase):
    def setUp(self):
        # A hub that accepts connections and never answers (a blackholed replica).
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.hub = f"http://127.0.0.1:{self.server.getsockname()[1]}"

    def tearDown(self):
        self.server.close()

    def test_abort_before_connect_ends_the_request_at_once(self):
        client = HubClient()
        started = time.monotonic()
        with self.assertRaises(Unreachable):
            # The abort lands while the connection has no socket yet (the window before conn.request connects).
            client.post(self.hub, "/v1/node/poll", {}, timeout=5.0, holder=lambda c: c and HubClient.abort(c))
        self.assertLess(time.monotonic() - started, 1.0)
        client.close()


if __name__ == "__main__":
    unittest.main()
