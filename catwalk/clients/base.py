"""The capabilities catwalk's pipeline needs, each a Protocol with one verb.

Implementations live beside this module and are chosen in ``clients.factory`` only.
Clients never import Prefect, tasks, flows or db.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from catwalk.domain import (
    GeneratedImage,
    GeneratedVideo,
    ImageRequest,
    JudgeRequest,
    KeyframeVerdict,
    ProviderProgress,
    StoredObject,
    SubmittedRequest,
    VideoRequest,
)

OnSubmitted = Callable[[SubmittedRequest], None]
OnProgress = Callable[[ProviderProgress], None]


@runtime_checkable
class ImageGenerator(Protocol):
    """Makes one keyframe of a fashion model wearing the product."""

    name: str

    def generate(self, request: ImageRequest) -> GeneratedImage: ...


@runtime_checkable
class KeyframeJudge(Protocol):
    """Judges a pair of keyframes against the product photo before the video is bought.

    Raises ``ProviderError`` (with the call's ``usage`` when it was billed) when it cannot
    give a verdict; never returns a pass it did not reach.
    """

    name: str

    def judge(self, request: JudgeRequest) -> KeyframeVerdict: ...


@runtime_checkable
class VideoGenerator(Protocol):
    """Makes a transition video between two keyframes, waiting for the provider as needed.

    ``resume`` is a request an earlier attempt submitted: the generator re-attaches to it
    instead of submitting again. ``on_submitted`` is called the moment a new request is
    accepted, before any waiting. ``deadline`` is a ``time.monotonic()`` value after which
    the generator cancels the provider request and raises.
    """

    name: str

    def animate(
        self,
        request: VideoRequest,
        *,
        work_dir: Path,
        resume: SubmittedRequest | None = None,
        on_submitted: OnSubmitted | None = None,
        on_progress: OnProgress | None = None,
        deadline: float | None = None,
    ) -> GeneratedVideo: ...


@runtime_checkable
class BlobStore(Protocol):
    """Where videos, posters and keyframes live (local files, S3, R2)."""

    name: str

    def put_file(self, key: str, path: Path, content_type: str) -> StoredObject: ...

    def put_bytes(self, key: str, data: bytes, content_type: str) -> StoredObject: ...

    def get_bytes(self, key: str) -> bytes: ...

    def head(self, key: str) -> StoredObject | None: ...

    def delete(self, key: str) -> None: ...

    def url(self, key: str) -> str:
        """The URL to hand out now (presigned and expiring when SIGNED_URLS is on)."""
        ...

    def public_url(self, key: str) -> str:
        """The object's lasting address: never expires, safe to write to the database."""
        ...


@runtime_checkable
class Notifier(Protocol):
    """Delivers an alert's text to admins (a Slack-compatible webhook)."""

    name: str

    def send(self, text: str) -> None: ...
