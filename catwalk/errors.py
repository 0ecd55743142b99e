"""catwalk's error tree: every failure a user can meet, typed by what the caller should do.

    CatwalkError                      shown to users as one clear line (``user_message``)
    ├── InputError                    the request is wrong; nothing was spent
    │   ├── ProductNotFound
    │   └── ProductImageError         no image, unreadable or not an image
    ├── LimitExceeded                 refused by a daily limit or budget (carries ``retry_after``)
    ├── ConfigError                   settings missing or inconsistent
    ├── NotificationError             an alert could not be delivered to the webhook
    ├── LaunchError                   a recorded job could not be started (it is marked FAILED)
    ├── DatabaseUnavailable           the database cannot be reached (an outage): nothing recorded
    └── PipelineError                 a step of a video job failed
        ├── ProviderError             an AI provider failed
        │   ├── TransientProviderError  429, 5xx, timeouts, connection errors: retry
        │   └── PermanentProviderError  bad input, bad key, safety refusal: fail now
        ├── StorageError              the blob store failed
        │   └── TransientStorageError   worth retrying (network, 5xx, throttling)
        ├── VideoCheckError           the delivered video is not fit to publish
        ├── KeyframeCheckFailed       the keyframes never passed the check (no video bought)
        ├── JobTimedOut               the job's time limit passed (provider request cancelled)
        ├── JobCancelled              an admin cancelled the job
        └── JobAlreadyEnded           a step found its job already ended (cancelled, failed)

The first split answers the caller's real question: did the job do something wrong
(``InputError``), or did something it depends on fail (``PipelineError``)? Within
``PipelineError`` the only question a retry policy asks is ``is_transient``.
Foreign exceptions (httpx, botocore, OSError) are translated at the client edge and chained
with ``from exc``. Messages never contain secrets: clients build them from status codes and
provider messages, never from request headers.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from catwalk.domain import Usage

from catwalk.scrub import install_log_scrubbing, scrub


class CatwalkError(Exception):
    """Base of every error catwalk raises on purpose."""

    # Every message of ours (API and CLI errors, job rows, Prefect state messages, which are
    # made from str(exc)) is scrubbed of secrets here, in one place.
    def __str__(self) -> str:
        return scrub(super().__str__())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    @property
    def user_message(self) -> str:
        return str(self)


class InputError(CatwalkError):
    """The request cannot be served as given; nothing was spent."""


class ReviewConflict(InputError):
    """A review decision for a job that waits for none (any more): another admin, the
    expiry or a cancel decided first. Nothing was changed."""


class ProductNotFound(InputError):
    """No product with that id."""

    def __init__(self, product_id: str) -> None:
        super().__init__(f"unknown product {product_id!r}")
        self.product_id = product_id


class ProductImageError(InputError):
    """A product has no usable image (none, unreadable, not an image)."""


class LimitExceeded(CatwalkError):
    """Refused by a spending limit; says why and when to try again."""

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class ConfigError(CatwalkError):
    """Settings are missing or inconsistent."""


class NotificationError(CatwalkError):
    """An alert could not be delivered (the message never contains the webhook URL)."""


class LaunchError(CatwalkError):
    """A job was recorded but its run could not be started; the job is marked FAILED."""

    def __init__(self, message: str, *, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class DatabaseUnavailable(CatwalkError):
    """The database cannot be reached; the message names host:port, never the password."""


class PipelineError(CatwalkError):
    """A step of a video job failed."""

    is_transient: bool = False


class ProviderError(PipelineError):
    """An AI provider call failed."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status_code: int | None = None,
        request_id: str | None = None,
        retry_after_seconds: float | None = None,
        usage: Usage | None = None,
    ) -> None:
        super().__init__(message)
        # What the failed call was billed for (a ``domain.Usage``), so it reaches the ledger.
        self.usage = usage
        self.provider = provider
        self.status_code = status_code
        self.request_id = request_id
        self.retry_after_seconds = retry_after_seconds


class TransientProviderError(ProviderError):
    """Worth retrying: rate limited, overloaded, timed out, connection lost."""

    is_transient = True


class PermanentProviderError(ProviderError):
    """Retrying will not help: invalid input, bad key, safety refusal, content policy."""


class StorageError(PipelineError):
    """The blob store failed (missing bucket, bad credentials, full disk, ...)."""


class TransientStorageError(StorageError):
    """A storage failure worth retrying (network, throttling, 5xx)."""

    is_transient = True


class VideoCheckError(PipelineError):
    """The delivered video failed the pre-publish check (duration, size, codec)."""


class KeyframeCheckFailed(PipelineError):
    """The keyframes failed the keyframe check and its regenerations: no video is bought."""

    def __init__(self, message: str, *, issues: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.issues = issues


class JobTimedOut(PipelineError):
    """The job's time limit (JOB_TIMEOUT_SECONDS) passed; its provider request was cancelled."""


class JobCancelled(PipelineError):
    """An admin cancelled the job."""


class JobAlreadyEnded(PipelineError):
    """A step found its job already ended by another path: it stops without changing it."""


# Driver texts of a lost or refused connection (psycopg 3, libpq, SQLAlchemy's pool).
_DISCONNECT_MARKERS = (
    "connection refused",
    "connection failed",
    "could not connect",
    "server closed the connection",
    "terminating connection",
    "connection reset",
    "connection is closed",
    "connection timeout",
    "timeout expired",
    "consuming input failed",
    "the database system is shutting down",
    "the database system is starting up",
    "admin shutdown",
    "no connection to the server",
    "connection to server",
    "ssl syscall error",
    "broken pipe",
)


def is_db_outage(exc: BaseException) -> bool:
    """True for a connection-level database failure (refused, reset, admin shutdown, ...).

    A wrong query (no such table, a constraint) is not an outage and must not be retried.
    SQLAlchemy is only looked at when loaded: this module stays import-light.
    """
    if isinstance(exc, DatabaseUnavailable):
        return True
    import sys

    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is None or not isinstance(exc, sa_exc.DBAPIError):
        return False
    if getattr(exc, "connection_invalidated", False):
        return True
    if not isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        return False
    text = str(getattr(exc, "orig", None) or exc).lower()
    return any(marker in text for marker in _DISCONNECT_MARKERS)


def is_transient(exc: BaseException) -> bool:
    """True when retrying the step that raised ``exc`` may succeed."""
    if isinstance(exc, PipelineError):
        return exc.is_transient
    if is_db_outage(exc):
        return True
    # A timeout from the orchestrator or the OS is worth another attempt.
    return isinstance(exc, TimeoutError | ConnectionError)


def describe(exc: BaseException) -> str:
    """One readable line for an admin, whatever was raised."""
    if isinstance(exc, CatwalkError):
        return exc.user_message
    if is_db_outage(exc):
        orig = getattr(exc, "orig", None) or exc
        first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        return f"the database was unreachable: {first[:200]}"
    if isinstance(exc, TimeoutError):
        return f"timed out: {exc}" if str(exc) else "timed out"
    if isinstance(exc, asyncio.CancelledError):
        # What Prefect raises inside a task when the flow's time limit interrupts it.
        return "stopped before finishing: the job ran past its time limit or was cancelled"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"internal error ({type(exc).__name__}){': ' + text if text else ''}"


# Every log record, from any library (Prefect's API log handler included), is scrubbed when
# it is made; errors.py is imported by every entry point, so this runs before any logging.
install_log_scrubbing()
