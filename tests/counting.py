"""Counting fakes around the offline providers: every call a real provider would bill.

``CountingImages.calls`` counts keyframes generated; ``CountingVideo.submitted`` counts new
provider requests (a resumed request is not a new purchase) and ``resumed`` re-attachments.
Scripted faults (``fail``) raise before the provider returns, as a flaky network would.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from catwalk.clients.base import OnProgress, OnSubmitted
from catwalk.clients.offline import OfflineImageGenerator, OfflineVideoGenerator
from catwalk.domain import (
    GeneratedImage,
    GeneratedVideo,
    ImageRequest,
    SubmittedRequest,
    VideoRequest,
)


class CountingImages:
    name = "offline"

    def __init__(self, fail: list[BaseException | None] | None = None, width: int = 96) -> None:
        self._inner = OfflineImageGenerator(width=width)
        self._fail = list(fail or [])
        self._lock = threading.Lock()
        self.calls = 0
        self.poses: list[str] = []

    def generate(self, request: ImageRequest) -> GeneratedImage:
        with self._lock:
            fault = self._fail.pop(0) if self._fail else None
        if fault is not None:
            raise fault
        with self._lock:
            self.calls += 1
            self.poses.append(request.pose)
        return self._inner.generate(request)


class CountingVideo:
    """``after_submit`` runs right after a new request is accepted (to fail or crash there)."""

    name = "offline"

    def __init__(
        self,
        after_submit: list[Callable[[], None] | None] | None = None,
        width: int = 96,
    ) -> None:
        self._inner = OfflineVideoGenerator(width=width)
        self._after = list(after_submit or [])
        self.submitted = 0
        self.resumed = 0
        self.request_ids: list[str] = []

    def animate(
        self,
        request: VideoRequest,
        *,
        work_dir: Path,
        resume: SubmittedRequest | None = None,
        on_submitted: OnSubmitted | None = None,
        on_progress: OnProgress | None = None,
        deadline: float | None = None,
    ) -> GeneratedVideo:
        if resume is None:
            self.submitted += 1
            resume = SubmittedRequest(request_id=f"count-vid-{self.submitted}-{os.getpid()}")
            self.request_ids.append(resume.request_id)
            if on_submitted is not None:
                on_submitted(resume)
        else:
            self.resumed += 1
        hook = self._after.pop(0) if self._after else None
        if hook is not None:
            hook()
        return self._inner.animate(
            request, work_dir=work_dir, resume=resume, on_progress=on_progress
        )


def kill_this_process() -> None:
    """What a worker dying looks like from inside: no except, no finally, no fail_job."""
    os.kill(os.getpid(), signal.SIGKILL)
