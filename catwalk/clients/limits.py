"""Concurrency limits on scarce provider capacity, behind one context manager.

``provider_slot("video")`` is held only around the remote call. The limit names are the
constants below; which mechanism backs them is decided here and nowhere else:

- a Prefect API server is configured (workers, deployments): a Prefect **global concurrency
  limit** per provider (``provider:nano-banana``, ``provider:pika``), created by
  ``catwalk worker`` with the account's limits. Slots are leases the server expires
  (``LEASE_SECONDS``), so a run killed with ``kill -9`` frees its slot within a lease plus
  the server's repossessor sweep, never for good. Leases live in Redis (prefect-redis) or in
  the server's file-backed lease store; that choice belongs to the server, not to this module.
- no API server (embedded mode, one process per job on one machine): nothing to share,
  the slot is free.

This is the one client module that imports Prefect (lazily, and only its concurrency API):
the limit *is* Prefect's, and the house style keeps its choice in this file.

Job state never depends on the limit service: when it cannot be reached (the server is
restarting, its Redis is down) the caller waits for a slot, saying so through ``on_wait``,
and goes on once the service answers. A slot that cannot be released is left to expire.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

IMAGE_LIMIT = "provider:nano-banana"
VIDEO_LIMIT = "provider:pika"
JOBS_LIMIT = "catwalk:video-jobs"

# The shortest lease Prefect accepts (the server refuses < 60 s). The client renews it
# while the call runs, so it bounds only how long a crashed holder keeps its slot.
LEASE_SECONDS = 60.0
WAITING = "waiting for a slot"
_UNAVAILABLE = "waiting for a slot (limit service unavailable)"
# Back-off while the limit service is unreachable: short first, capped, jittered.
_BACKOFF_FIRST, _BACKOFF_MAX = 0.5, 10.0

_NAMES = {"image": IMAGE_LIMIT, "video": VIDEO_LIMIT}

OnWait = Callable[[str | None], None]
logger = logging.getLogger(__name__)


def limit_name(capability: str) -> str:
    return _NAMES[capability]


def shared_limits_enabled() -> bool:
    """True when a Prefect API server is configured, so limits are shared across workers."""
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


@contextmanager
def provider_slot(
    capability: str, *, on_wait: OnWait | None = None, deadline: float | None = None
) -> Iterator[None]:
    """Hold one slot of ``capability``'s provider limit for the duration of the block.

    Args:
        on_wait: told ``"waiting for a slot"`` before waiting and ``None`` once the slot
            is held, so the job can show why it waits.
        deadline: a ``time.monotonic()`` value; past it, an unreachable limit service
            raises ``TimeoutError`` instead of waiting on.
    """
    name = limit_name(capability)
    if not shared_limits_enabled():
        yield
        return

    from prefect.concurrency.sync import concurrency

    notify = on_wait or (lambda _reason: None)
    notify(WAITING)
    delay = _BACKOFF_FIRST
    while True:
        held = False
        body_error: BaseException | None = None
        try:
            # strict=False: a limit nobody created (a bare test server) does not block work.
            # raise_on_lease_renewal_failure=False: a renewal hiccup must not kill a paid call.
            with concurrency(
                name,
                occupy=1,
                lease_duration=LEASE_SECONDS,
                strict=False,
                raise_on_lease_renewal_failure=False,
            ):
                held = True
                notify(None)
                try:
                    yield
                except BaseException as exc:
                    body_error = exc
                    raise
            return
        except Exception as exc:
            if body_error is exc:
                raise
            if body_error is not None:
                # The provider call failed and so did the release: the call's error is the story.
                raise body_error  # noqa: B904 - keep the provider error's own cause
            if held:
                logger.warning("could not release %s (%s); its lease expires by itself", name, exc)
                return
            notify(_UNAVAILABLE)
            if deadline is not None and time.monotonic() + delay > deadline:
                raise TimeoutError(f"no {name} slot before the job's deadline: {exc}") from exc
            logger.warning("limit service unavailable for %s (%s); retrying", name, exc)
            time.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, _BACKOFF_MAX)
