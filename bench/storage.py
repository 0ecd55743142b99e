"""What storing a video costs: upload + verification, against a moto S3 server over HTTP.

    python bench/storage.py [--sizes-mib 1,8,50] [--repeat 3]

Starts ``moto_server`` on a free port, then for each size uploads a random file through
``S3BlobStore.put_file`` (multipart above 8 MiB, as configured by default) and reports the
time split into hashing (our MD5/part MD5s/CRC32), the transfer, and the HEAD that verifies
it; then the time to presign a GET. moto keeps objects in memory on this machine, so the
transfer figure is a floor, not what a real network gives. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from tests.moto_server import BUCKET, make_store, start_moto

MiB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mib", default="1,8,50")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes_mib.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        server = start_moto(Path(tmp) / "moto.log")
        try:
            store = make_store(server.endpoint, multipart_threshold_bytes=8 * MiB)
            store._client.create_bucket(Bucket=BUCKET)
            results: dict[str, dict[str, float]] = {}
            for size in sizes:
                source = Path(tmp) / f"{size}.mp4"
                source.write_bytes(os.urandom(size * MiB))
                hashing, total, verify = [], [], []
                for i in range(args.repeat):
                    started = time.perf_counter()
                    with source.open("rb") as fh:
                        store._digests(fh)
                    hashing.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    stored = store.put_file(f"bench/{size}/{i}.mp4", source, "video/mp4")
                    total.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    store.head(stored.key)
                    verify.append(time.perf_counter() - started)
                row = {
                    "put_file_s": round(statistics.median(total), 3),
                    "hashing_s": round(statistics.median(hashing), 3),
                    "head_s": round(statistics.median(verify), 4),
                    "multipart": "-" in (stored.checksum or ""),
                }
                results[f"{size}MiB"] = row
                print(
                    f"{size:>4} MiB  put_file {row['put_file_s']:.3f} s "
                    f"(hashing {row['hashing_s']:.3f} s, verify HEAD {row['head_s']:.4f} s), "
                    f"multipart={row['multipart']}"
                )
            started = time.perf_counter()
            signing = make_store(server.endpoint, signed_urls=True)
            for _ in range(1000):
                signing.url("products/x/0123456789abcdef/video.mp4")
            presign_ms = (time.perf_counter() - started) * 1000 / 1000  # total ms / 1000 URLs
            print(f"presign: {presign_ms:.3f} ms per URL (1000 URLs)")
            print(json.dumps({"uploads": results, "presign_ms": round(presign_ms, 3)}))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
