"""Concurrency limits on scarce provider capacity, behind one context manager.

``provider_slot("pika")`` is held only around the remote call. The limit names are the
constants below; which mechanism backs them is decided here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

IMAGE_LIMIT = "provider:nano-banana"
VIDEO_LIMIT = "provider:pika"
JOBS_LIMIT = "catwalk:video-jobs"

_NAMES = {"image": IMAGE_LIMIT, "video": VIDEO_LIMIT}


def limit_name(capability: str) -> str:
    return _NAMES[capability]


@contextmanager
def provider_slot(capability: str) -> Iterator[None]:
    """Hold one slot of ``capability``'s provider limit for the duration of the block.

    In-process runs (embedded mode) have no shared limit to respect; orchestration wires
    Prefect global concurrency limits in here.
    """
    limit_name(capability)
    yield
