"""The payload codec: `$bytes` and `$blob` objects in, bytes out; bytes and BlobFile out, inline or uploaded."""

import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from fleetlink_node import BlobFile, HandlerError  # noqa: E402
from fleetlink_node.codec import decode, encode, has_bytes  # noqa: E402

SHA = "ab" * 32


def no_fetch(sha, size):
    raise AssertionError("nothing to fetch")


class CodecTest(unittest.TestCase):
    def test_bytes_and_blob_refs_anywhere_decode_to_bytes(self):
        fetched = []

        def fetch(sha, size):
            fetched.append((sha, size))
            return b"B" * size

        got = decode({"a": [1, {"$bytes": "aGVsbG8="}], "m": {"$blob": f"sha256:{SHA}", "size": 3}, "s": "x"}, fetch)
        self.assertEqual(got, {"a": [1, b"hello"], "m": b"BBB", "s": "x"})
        self.assertEqual(fetched, [(SHA, 3)])

    def test_malformed_refs_are_refused_naming_their_path(self):
        cases = [
            ({"x": [{"$blob": "sha256:zz", "size": 1}]}, "payload.x[0]"),
            ({"x": {"$blob": f"sha256:{SHA}", "size": -1}}, "payload.x"),
            ({"x": {"$blob": f"sha256:{SHA}", "size": True}}, "payload.x"),
            ({"y": {"$bytes": "not base64!"}}, "payload.y.$bytes"),
            ({"y": {"$bytes": "aGk=", "extra": 1}}, "payload.y"),
        ]
        for payload, path in cases:
            with self.assertRaises(HandlerError) as c:
                decode(payload, no_fetch)
            self.assertEqual(c.exception.code, "FLEETLINK_E_INVALID_ARGUMENT")
            self.assertTrue(c.exception.message.startswith(path + ":"), c.exception.message)

    def test_small_bytes_go_inline_and_large_ones_and_files_are_uploaded(self):
        uploads = []

        def upload(src):
            uploads.append(src)
            return SHA, len(src) if not isinstance(src, BlobFile) else src.size

        with tempfile.NamedTemporaryFile(delete=False) as f:
            f.write(b"z" * 10)
        result = {"small": b"hi", "ba": bytearray(b"\x00\x01"), "mv": memoryview(b"abc"), "big": [b"x" * 5],
                  "file": BlobFile(f.name), "n": (1, 2)}
        self.assertTrue(has_bytes(result))
        got = encode(result, upload, inline_bytes=4)
        self.assertEqual(got["small"], {"$bytes": "aGk="})
        self.assertEqual(got["ba"], {"$bytes": "AAE="})
        self.assertEqual(got["mv"], {"$bytes": "YWJj"})
        self.assertEqual(got["big"], [{"$blob": f"sha256:{SHA}", "size": 5}])
        self.assertEqual(got["file"], {"$blob": f"sha256:{SHA}", "size": 10})
        self.assertEqual(got["n"], [1, 2])
        self.assertEqual(len(uploads), 2)
        os.remove(f.name)

    def test_a_result_object_with_a_reserved_key_is_refused_naming_it(self):
        with self.assertRaises(HandlerError) as c:
            encode({"ok": [{"$blob": "mine"}]}, None)
        self.assertIn("payload.ok[0]", c.exception.message)
        self.assertFalse(has_bytes({"a": [1, "b", {"c": None}]}))


if __name__ == "__main__":
    unittest.main()
