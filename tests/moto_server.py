"""A real S3 API for tests: moto in server mode, in its own process, over real HTTP.

Loaded as a plugin by ``tests/conftest.py``, so any test can take these fixtures.
One server per test session; every test that takes ``s3_store`` or ``s3_settings`` starts
from an empty server (``POST /moto-api/reset``) with one fresh bucket.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from catwalk import config
from catwalk.clients.storage import S3BlobStore

BUCKET = "catwalk-media"
ACCESS_KEY = "AKIACATWALKTEST"
SECRET_KEY = "catwalk-test-secret-value"  # never expected in any message


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class MotoServer:
    endpoint: str
    process: subprocess.Popen[bytes]

    def reset(self) -> None:
        httpx.post(f"{self.endpoint}/moto-api/reset", timeout=10).raise_for_status()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_moto(log: Path, **env: str) -> MotoServer:
    """``moto_server -H 127.0.0.1 -p PORT`` on a free port, once it answers."""
    exe = str(Path(sys.executable).with_name("moto_server"))
    for _ in range(3):  # another process may grab the port between our check and moto's bind
        port = free_port()
        with log.open("ab") as out:
            process = subprocess.Popen(
                [exe, "-H", "127.0.0.1", "-p", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
            )
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=2)
                return MotoServer(endpoint=endpoint, process=process)
            except httpx.HTTPError:
                time.sleep(0.05)
        process.kill()
    raise RuntimeError(f"moto_server did not start; see {log}")


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_s3_with_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A moto server that checks every request's access key against its (empty) IAM."""
    server = start_moto(
        tmp_path_factory.mktemp("moto-auth") / "moto.log", INITIAL_NO_AUTH_ACTION_COUNT="0"
    )
    yield server
    server.stop()


def make_store(endpoint: str, **overrides: object) -> S3BlobStore:
    options: dict[str, object] = {
        "bucket": BUCKET,
        "region": "us-east-1",
        "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET_KEY,
        "endpoint_url": endpoint,
        "multipart_threshold_bytes": 5 * 1024 * 1024,
        "max_attempts": 2,
        "connect_timeout_seconds": 2.0,
    }
    options.update(overrides)
    return S3BlobStore(**options)  # type: ignore[arg-type]


@pytest.fixture
def s3_store(moto_s3: MotoServer) -> S3BlobStore:
    """An S3 store on an empty moto server with one empty bucket."""
    moto_s3.reset()
    store = make_store(moto_s3.endpoint)
    store._client.create_bucket(Bucket=BUCKET)
    return store


@pytest.fixture
def s3_settings(
    settings: config.Settings, moto_s3: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> config.Settings:
    """catwalk settings (per database backend) with STORAGE_BACKEND=s3 on a fresh bucket."""
    from tests.conftest import reset_settings

    moto_s3.reset()
    make_store(moto_s3.endpoint)._client.create_bucket(Bucket=BUCKET)
    return reset_settings(
        monkeypatch,
        STORAGE_BACKEND="s3",
        S3_BUCKET=BUCKET,
        S3_REGION="us-east-1",
        S3_ACCESS_KEY_ID=ACCESS_KEY,
        S3_SECRET_ACCESS_KEY=SECRET_KEY,
        S3_ENDPOINT_URL=moto_s3.endpoint,
    )
