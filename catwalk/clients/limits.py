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

Slots cannot leak (issue #13). Prefect 3.9 commits a slot increment *before* it creates the
lease in Redis, so every acquisition the server answers with a 5xx may have taken a slot
nobody holds. So: after such an answer the caller does not try again until the lease
service is healthy (the API answers and, with ``REDIS_URL``, Redis pings); each slot is
recorded through a ``SlotBook`` (catwalk's database, tasks/slots.py) with its lease id; and
the book's reconciler sets each limit's ``active_slots`` back to the recorded holders.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Protocol, TypeVar
from uuid import UUID

IMAGE_LIMIT = "provider:nano-banana"
VIDEO_LIMIT = "provider:pika"
JOBS_LIMIT = "catwalk:video-jobs"

# The shortest lease Prefect accepts (the server refuses < 60 s). The client renews it
# while the call runs, so it bounds only how long a crashed holder keeps its slot.
LEASE_SECONDS = 60.0
# Named for what it waits for: an admin reads "waiting for a Pika slot", not "a slot".
_SLOT_LABELS = {"image": "Nano Banana", "video": "Pika"}


def waiting_text(capability: str) -> str:
    return f"waiting for a {_SLOT_LABELS.get(capability, capability)} slot"


def _unavailable_text(capability: str) -> str:
    return f"{waiting_text(capability)} (limit service unavailable)"


# Back-off while the limit service is unreachable: short first, capped, jittered.
_BACKOFF_FIRST, _BACKOFF_MAX = 0.5, 10.0

_NAMES = {"image": IMAGE_LIMIT, "video": VIDEO_LIMIT}

OnWait = Callable[[str | None], None]
logger = logging.getLogger(__name__)


class SlotBook(Protocol):
    """Where the slots a caller holds are written down (catwalk's database in production)."""

    def opening(self, limit: str) -> str | None:
        """Before an acquisition: a token for the holder row (None if it could not be written)."""

    def granted(self, token: str, lease_id: UUID) -> None:
        """The slot is held under ``lease_id``."""

    def closed(self, token: str, *, released: bool) -> None:
        """The holder is done; ``released=False`` keeps the lease to be released later."""

    def reconcile(self) -> None:
        """Set the limits' active slots back to the recorded holders."""


def limit_name(capability: str) -> str:
    return _NAMES[capability]


def shared_limits_enabled() -> bool:
    """True when a Prefect API server is configured, so limits are shared across workers."""
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def _may_have_leaked(exc: BaseException) -> bool:
    """True when the server answered the acquisition with a 5xx: the increment may be
    committed without a lease (Prefect 3.9's increment-with-lease), so retrying leaks."""
    import httpx

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, httpx.HTTPStatusError):
            return seen.response.status_code >= 500
        seen = seen.__cause__ or seen.__context__
    return False


def lease_service_healthy() -> bool:
    """The API server answers and, when leases live in Redis (``REDIS_URL``), Redis pings."""
    import httpx
    from prefect.settings import get_current_settings

    from catwalk.config import get_settings

    api_url = get_current_settings().api.url
    try:
        if api_url and httpx.get(f"{api_url}/health", timeout=3.0).status_code != 200:
            return False
    except httpx.HTTPError:
        return False
    redis_url = get_settings().redis_url
    if not redis_url:
        return True
    import redis

    try:
        return bool(redis.Redis.from_url(redis_url, socket_timeout=2).ping())
    except (redis.RedisError, OSError):
        return False


_T = TypeVar("_T")


def _quietly(what: str, call: Callable[[], _T]) -> _T | None:
    """Book-keeping never stops a paid call: a failure is logged and reconciled later."""
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - a DB blip must not fail a paid call
        logger.warning("slot book: %s failed (%s)", what, exc)
        return None


@contextmanager
def provider_slot(
    capability: str,
    *,
    on_wait: OnWait | None = None,
    deadline: float | None = None,
    book: SlotBook | None = None,
) -> Iterator[None]:
    """Hold one slot of ``capability``'s provider limit for the duration of the block.

    Args:
        on_wait: told ``waiting_text(capability)`` before waiting and ``None`` once the slot
            is held, so the job can show why it waits.
        deadline: a ``time.monotonic()`` value; past it, an unreachable limit service
            raises ``TimeoutError`` instead of waiting on.
        book: records the holder (job, lease) so a reconciler can repair the limit.
    """
    name = limit_name(capability)
    if not shared_limits_enabled():
        yield
        return

    # Prefect's own acquire / renew / release, not its ``concurrency()`` wrapper: the book
    # needs the lease id, and a failed acquisition must be told apart from a failed release.
    from prefect.concurrency._leases import maintain_concurrency_lease
    from prefect.concurrency._sync import (
        acquire_concurrency_slots_with_lease,
        release_concurrency_slots_with_lease,
    )

    notify = on_wait or (lambda _reason: None)
    notify(waiting_text(capability))
    delay = _BACKOFF_FIRST
    while True:
        token = _quietly("open", lambda: book.opening(name)) if book else None
        try:
            # strict=False: a limit nobody created (a bare test server) does not block work.
            response = acquire_concurrency_slots_with_lease(
                [name], 1, lease_duration=LEASE_SECONDS, strict=False
            )
        except Exception as exc:
            if book and token:
                _quietly("close", partial(book.closed, token, released=True))
            notify(_unavailable_text(capability))
            leaked = _may_have_leaked(exc)
            logger.warning(
                "limit service unavailable for %s (%s); %s",
                name,
                exc,
                "waiting until it is healthy" if leaked else "retrying",
            )
            while True:
                if deadline is not None and time.monotonic() + delay > deadline:
                    raise TimeoutError(f"no {name} slot before the job's deadline: {exc}") from exc
                time.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, _BACKOFF_MAX)
                if not leaked or lease_service_healthy():
                    break
            if leaked and book:
                # The failed answer may have kept a slot: give it back before queueing again.
                _quietly("reconcile", book.reconcile)
            continue
        if not response.limits:  # no such limit: nothing to hold
            if book and token:
                _quietly("close", partial(book.closed, token, released=True))
            notify(None)
            yield
            return
        lease_id = response.lease_id
        if book and token:
            _quietly("grant", partial(book.granted, token, lease_id))
        notify(None)
        released = False
        try:
            # raise_on_lease_renewal_failure=False: a renewal hiccup must not kill a paid call.
            with maintain_concurrency_lease(
                lease_id, LEASE_SECONDS, raise_on_lease_renewal_failure=False
            ):
                yield
        finally:
            try:
                release_concurrency_slots_with_lease(lease_id)
                released = True
            except Exception as exc:  # noqa: BLE001 - any failure: the book keeps the lease
                logger.warning("could not release %s (%s); the reconciler will", name, exc)
            if book and token:
                _quietly("close", partial(book.closed, token, released=released))
        return
