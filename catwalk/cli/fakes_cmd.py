"""``catwalk fakes``: run the fake Gemini API and fake fal queue for a full local run."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

console = Console()

FAKE_GEMINI_KEY = "fake-gemini-key"
FAKE_FAL_KEY = "fake-fal-key"


def fakes(
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 0,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    video_width: Annotated[int, typer.Option(help="Width of the fake videos.")] = 360,
    queue_polls: Annotated[int, typer.Option(help="Status polls a request spends queued.")] = 2,
) -> None:
    """Serve fake Nano Banana (Gemini) and Pika (fal.ai) APIs and print how to use them."""
    from catwalk.fakes import FakeFal, FakeGemini, RunningServer
    from catwalk.fakes.server import combined_app

    gemini = FakeGemini(api_key=FAKE_GEMINI_KEY, width=video_width)
    fal = FakeFal(api_key=FAKE_FAL_KEY, video_width=video_width, queue_polls=queue_polls)
    server = RunningServer(combined_app(gemini, fal), host=host, port=port, log_level="info")
    console.print("Fake providers are listening. In another shell:\n")
    for line in (
        "export IMAGE_PROVIDER=nano-banana",
        f"export NANO_BANANA_API_URL={server.url}/gemini",
        f"export NANO_BANANA_API_KEY={FAKE_GEMINI_KEY}",
        "export VIDEO_PROVIDER=pika",
        f"export PIKA_LABS_API_URL={server.url}/fal",
        f"export PIKA_LABS_API_KEY={FAKE_FAL_KEY}",
    ):
        print(line)
    print(
        "\nMisbehave on demand, e.g.:\n"
        f'  curl -X POST {server.url}/gemini/_fake/faults -d \'{{"kind": "rate_limit"}}\'\n'
        f'  curl -X POST {server.url}/fal/_fake/faults -d \'{{"kind": "content_policy"}}\'\n'
        f"State: {server.url}/gemini/_fake/state and {server.url}/fal/_fake/state. Ctrl-C stops."
    )
    try:
        server.serve_forever()
    finally:
        fal.close()
