"""Blob transfers against the fake hub's blob routes (tests/fake_blobs.py): cached, verified, resumed downloads;
uploads that cost one round trip when the blob is there and resume from the hub's offset after a cut."""

import hashlib
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from fake_hub import FakeHub  # noqa: E402

from fleetlink_node import BlobFile, HandlerError  # noqa: E402
from fleetlink_node.blob_http import BlobTransfers  # noqa: E402

RUN = "0193a000-0000-7000-8000-000000000001"
MiB = 1 << 20


def data_of(n, seed=7):
    # Varied bytes (not one repeated value), so a misplaced chunk changes the hash.
    return bytes((i * seed + i // 251) & 0xFF for i in range(n))


class BlobTransfersTest(unittest.TestCase):
    def setUp(self):
        self.hub = FakeHub()
        self.hub.nodes["n1"] = "secret"
        self.dir = tempfile.mkdtemp()
        self.features = ["blobs"]
        self.t = BlobTransfers(lambda: self.hub.url, lambda: "n1.secret", lambda: self.features, self.dir,
                               chunk=64 * 1024)

    def tearDown(self):
        self.hub.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_a_download_is_verified_cached_by_sha256_and_a_cache_hit_sends_nothing(self):
        data = data_of(300_000)
        sha = self.hub.blobs.put_blob(data)
        self.assertEqual(self.t.fetch(sha, len(data)), data)
        self.assertTrue(os.path.isfile(os.path.join(self.dir, sha)))
        self.assertFalse(os.path.exists(os.path.join(self.dir, sha + ".partial")))
        gets = self.hub.blobs.requests("GET", sha)
        self.assertEqual(len(gets), 1)
        self.assertEqual(gets[0]["authorization"], "Bearer n1.secret")
        self.assertEqual(self.t.fetch(sha, len(data)), data)
        self.assertEqual(len(self.hub.blobs.requests("GET", sha)), 1)

    def test_a_download_cut_midway_resumes_from_its_partial_file_with_a_range(self):
        data = data_of(MiB + 17)
        sha = self.hub.blobs.put_blob(data)
        self.hub.blobs.cut_download_at = 600_000
        self.assertEqual(self.t.fetch(sha, len(data)), data)
        gets = self.hub.blobs.requests("GET", sha)
        self.assertEqual(len(gets), 2)
        self.assertNotIn("range", gets[0])
        start = int(gets[1]["range"].removeprefix("bytes=").rstrip("-"))
        self.assertGreater(start, 0)
        self.assertLessEqual(start, 600_000)
        # What was re-sent is only what the cut lost in flight.
        self.assertEqual(self.hub.blobs.body_bytes_sent, len(data) + (600_000 - start))

    def test_bytes_that_do_not_hash_to_the_reference_are_refused_and_not_cached(self):
        data = data_of(1000)
        sha = self.hub.blobs.put_blob(data)
        self.hub.blobs.blobs[sha] = data[:-1] + b"!"
        with self.assertRaises(HandlerError) as c:
            self.t.fetch(sha, len(data))
        self.assertIn("hash", c.exception.message)
        self.assertEqual(os.listdir(self.dir), [])

    def test_a_missing_blob_is_a_blob_not_found_error(self):
        with self.assertRaises(HandlerError) as c:
            self.t.fetch("cd" * 32, 10)
        self.assertEqual(c.exception.code, "FLEETLINK_E_BLOB_NOT_FOUND")

    def test_with_blob_urls_the_presigned_url_is_fetched_without_the_credential(self):
        self.features.append("blob-urls")
        self.hub.blobs.presign = True
        data = data_of(70_000)
        sha = self.hub.blobs.put_blob(data)
        self.hub.blobs.cut_download_at = 10_000
        self.assertEqual(self.t.fetch(sha, len(data)), data)
        self.assertEqual(len(self.hub.blobs.requests("GET", f"{sha}/url")), 2)
        signed = self.hub.blobs.requests("GET", "/presigned/")
        self.assertEqual(len(signed), 2)
        self.assertTrue(all("authorization" not in h for h in signed))
        self.assertTrue(signed[1]["range"].startswith("bytes="))

    def test_an_upload_of_a_blob_already_there_is_one_round_trip(self):
        data = data_of(5000)
        sha = self.hub.blobs.put_blob(data)
        self.assertEqual(self.t.upload(data, RUN), (sha, len(data)))
        self.assertEqual([m for m, p, _ in self.hub.blobs.log], ["POST"])

    def test_an_upload_cut_midway_resumes_from_the_hubs_offset_and_completes(self):
        data = data_of(MiB + 5)
        self.hub.blobs.cut_upload_at = 400_000
        sha, size = self.t.upload(data, RUN)
        self.assertEqual((sha, size), (hashlib.sha256(data).hexdigest(), len(data)))
        self.assertEqual(self.hub.blobs.blobs[sha], data)
        puts = self.hub.blobs.requests("PUT")
        self.assertEqual(len(puts), 2)
        self.assertEqual(puts[0]["upload-offset"], "0")
        resumed = int(puts[1]["upload-offset"])
        self.assertGreaterEqual(resumed, 400_000)
        self.assertEqual(int(puts[1]["content-length"]), len(data) - resumed)
        self.assertEqual(len(self.hub.blobs.requests("GET", "/uploads/")), 1)

    def test_a_blob_file_is_uploaded_from_the_file(self):
        path = os.path.join(self.dir, "out.bin")
        data = data_of(700_000, seed=13)
        with open(path, "wb") as f:
            f.write(data)
        self.hub.blobs.cut_upload_at = 100_000
        sha, size = self.t.upload(BlobFile(path), RUN)
        self.assertEqual(self.hub.blobs.blobs[sha], data)
        self.assertEqual(size, len(data))

    def test_a_refused_begin_is_a_handler_error_with_the_hubs_code(self):
        with self.assertRaises(HandlerError) as c:
            self.t.upload(b"x", None)
        self.assertEqual(c.exception.code, "FLEETLINK_E_INVALID_ARGUMENT")
        self.assertIn("runId", c.exception.message)


    def test_a_large_upload_goes_in_puts_of_at_most_put_bytes_each_from_the_answered_offset(self):
        t = BlobTransfers(lambda: self.hub.url, lambda: "n1.secret", lambda: self.features, self.dir,
                          chunk=64 * 1024, put_bytes=256 * 1024)
        data = data_of(MiB + 5)
        sha, size = t.upload(data, RUN)
        self.assertEqual((sha, size), (hashlib.sha256(data).hexdigest(), len(data)))
        puts = self.hub.blobs.requests("PUT", "/uploads/")
        self.assertEqual([int(p["content-length"]) for p in puts], [256 * 1024] * 4 + [5])
        self.assertEqual([int(p["upload-offset"]) for p in puts], [i * 256 * 1024 for i in range(5)])
        self.assertEqual(self.hub.blobs.blobs[sha], data)

    def test_a_put_answered_408_429_or_503_is_retried_from_the_durable_offset(self):
        t = BlobTransfers(lambda: self.hub.url, lambda: "n1.secret", lambda: self.features, self.dir,
                          chunk=64 * 1024, put_bytes=256 * 1024)
        data = data_of(600_000)
        self.hub.blobs.fail_puts = [408, 429, 503]
        sha, _ = t.upload(data, RUN)
        self.assertEqual(self.hub.blobs.blobs[sha], data)
        self.assertEqual(len(self.hub.blobs.requests("PUT", "/uploads/")), 3 + 3)

    def test_a_put_answered_408_too_often_fails_the_upload(self):
        t = BlobTransfers(lambda: self.hub.url, lambda: "n1.secret", lambda: self.features, self.dir,
                          chunk=64 * 1024, retries=1)
        self.hub.blobs.fail_puts = [408, 408, 408]
        with self.assertRaises(HandlerError) as e:
            t.upload(data_of(300_000), RUN)
        self.assertIn("408", str(e.exception))

    def test_the_cache_evicts_least_recently_used_blobs_past_its_size_never_a_held_one(self):
        t = BlobTransfers(lambda: self.hub.url, lambda: "n1.secret", lambda: self.features, self.dir,
                          chunk=64 * 1024, cache_bytes=250_000)
        blobs = [data_of(100_000, seed) for seed in (3, 5, 11, 13)]
        shas = [self.hub.blobs.put_blob(b) for b in blobs]
        on_disk = lambda: sorted(n for n in os.listdir(self.dir) if not n.endswith(".partial"))  # noqa: E731
        t.fetch(shas[0], 100_000)
        t.hold(shas[0])  # a handler reads it (file mode)
        t.fetch(shas[1], 100_000)
        os.utime(os.path.join(self.dir, shas[0]), (1, 1))  # the oldest by far, but held
        os.utime(os.path.join(self.dir, shas[1]), (2, 2))
        t.fetch(shas[2], 100_000)  # 300 000 > 250 000: the least recently used one not held goes
        self.assertEqual(on_disk(), sorted([shas[0], shas[2]]))
        t.release(shas[0])
        os.utime(os.path.join(self.dir, shas[2]), (1, 1))
        self.assertEqual(t.fetch(shas[0], 100_000), blobs[0])  # a cache hit makes it the most recent
        t.fetch(shas[3], 100_000)
        self.assertEqual(on_disk(), sorted([shas[0], shas[3]]))
        self.assertEqual(len(self.hub.blobs.requests("GET", shas[0])), 1)

    def test_the_table_of_blobs_in_use_holds_only_what_is_in_use(self):
        for seed in range(20):
            data = data_of(1000 + seed, seed)
            self.assertEqual(self.t.fetch(self.hub.blobs.put_blob(data), len(data)), data)
        self.assertEqual(self.t._used, {})


if __name__ == "__main__":
    unittest.main()
