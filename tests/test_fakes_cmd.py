"""``catwalk fakes`` as a user runs it: a real process that prints the settings to use and
serves both fakes on one port until stopped."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import httpx
from PIL import Image
from pydantic import SecretStr

from catwalk.clients.gemini import GeminiImageGenerator
from catwalk.domain import ImageRequest


def _read_exports(proc: subprocess.Popen[str], timeout: float = 60) -> dict[str, str]:
    exports: dict[str, str] = {}
    until = time.monotonic() + timeout
    assert proc.stdout is not None
    while len(exports) < 6 and time.monotonic() < until:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").strip().partition("=")
            exports[key] = value
    return exports


def test_catwalk_fakes_prints_settings_and_serves() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "catwalk.cli", "fakes", "--port", "0", "--video-width", "96"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        env = _read_exports(proc)
        assert env["IMAGE_PROVIDER"] == "nano-banana" and env["VIDEO_PROVIDER"] == "pika"
        gemini_url, fal_url = env["NANO_BANANA_API_URL"], env["PIKA_LABS_API_URL"]
        for _ in range(200):  # the port is bound before uvicorn starts accepting
            try:
                state = httpx.get(f"{fal_url}/_fake/state", timeout=2)
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        assert state.status_code == 200 and state.json()["submit"] == 0
        photo = io.BytesIO()
        Image.new("RGB", (40, 60), (10, 200, 10)).save(photo, format="JPEG")
        image = GeminiImageGenerator(
            api_key=SecretStr(env["NANO_BANANA_API_KEY"]), base_url=gemini_url
        ).generate(
            ImageRequest(
                product_image=photo.getvalue(),
                product_image_mime="image/jpeg",
                model_type="female",
                pose="start",
                identity_seed=3,
            )
        )
        assert Image.open(io.BytesIO(image.data)).width == 96
        submitted = httpx.post(
            f"{fal_url}/fal-ai/pika/v2.2/pikaframes",
            json={"image_urls": []},
            headers={"Authorization": f"Key {env['PIKA_LABS_API_KEY']}"},
        ).json()
        # URLs the fal fake returns keep its mount prefix, so clients can follow them as given.
        assert submitted["status_url"].startswith(f"{fal_url}/fal-ai/pika/requests/")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
