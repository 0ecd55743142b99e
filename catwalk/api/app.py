"""The HTTP API of the original specification, for the shop's other systems.

    POST /api/admin/video-generation            submit (202 new job, 200 job already in flight)
    GET  /api/admin/video-generation/stats      jobs and spend
    GET  /api/admin/video-generation/{jobId}    one job's state, result and cost

Every endpoint needs ``Authorization: Bearer <CATWALK_API_TOKEN>``. Submissions go through
``submission.submit_job``, the path the CLI and the dashboard use, so the API answers as soon
as the job is recorded and a launcher has been asked to start it; the flow never runs inside
the request. Handlers are plain ``def``: their database work runs in Starlette's threadpool,
never on the event loop. Dependencies are ``async def``: they do no I/O, and a plain ``def``
one would cost each request another trip through that threadpool.

``catwalk api`` serves it with one process per CPU (``API_WORKERS``), each building its app
with ``create_app_from_env``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy.exc import DBAPIError

from catwalk.api.auth import bearer_scheme, check_request, resolve_token
from catwalk.api.guard import RefuseBeforeReading
from catwalk.api.schemas import (
    ErrorBody,
    GenerationRequest,
    GenerationStats,
    JobState,
    LimitErrorBody,
    SubmittedJob,
    ValidationErrorBody,
)
from catwalk.config import Settings, get_settings
from catwalk.db import get_engine, queries, session_scope, unreachable
from catwalk.db.stats import compute_stats
from catwalk.domain import JobStatus
from catwalk.errors import (
    CatwalkError,
    DatabaseUnavailable,
    InputError,
    LimitExceeded,
    ProductImageError,
    ProductNotFound,
    is_db_outage,
)
from catwalk.scrub import without_paths
from catwalk.submission import Launcher, default_launcher, submit_job

PREFIX = "/api/admin/video-generation"

_UNAUTHORIZED = {"model": ErrorBody, "description": "Missing or wrong bearer token."}
_INVALID = {
    "model": ValidationErrorBody,
    "description": "Malformed body, unknown product, unusable photo, bad option.",
}


async def _require_token(
    request: Request,
    # Only so the OpenAPI document declares the scheme; the check reads the header itself.
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> None:
    refusal = check_request(request)
    if refusal is not None:
        raise refusal


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_launcher(request: Request) -> Launcher:
    return request.app.state.launcher


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
LauncherDep = Annotated[Launcher, Depends(get_launcher)]


def _issue(loc: list[str | int], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}


def _invalid(detail: str, errors: list[dict[str, Any]]) -> JSONResponse:
    # Errors quote photo paths and files: the caller gets their names, never the server's folders.
    for error in errors:
        error["msg"] = without_paths(str(error.get("msg", "")))
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={"detail": without_paths(detail), "errors": errors},
    )


def _one_line(errors: list[dict[str, Any]]) -> str:
    parts = []
    for error in errors[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", ""))
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    # FastAPI parses a JSON body before it runs dependencies; an unauthenticated caller
    # must still get a 401, never a hint about the body it sent.
    refusal = check_request(request)
    if refusal is not None:
        return JSONResponse(
            status_code=refusal.status_code,
            content={"detail": refusal.detail},
            headers=refusal.headers,
        )
    assert isinstance(exc, RequestValidationError)
    errors = [
        _issue(list(e.get("loc", ())), str(e.get("msg", "invalid")), str(e.get("type", "invalid")))
        for e in exc.errors()
    ]
    return _invalid(_one_line(errors), errors)


# What a client is told to wait before trying again while the database is down.
DB_RETRY_AFTER_SECONDS = 5


async def _on_database_error(request: Request, exc: Exception) -> Response:
    """503 with Retry-After while the database is unreachable; one line, no traceback."""
    if not is_db_outage(exc):
        raise exc
    message = unreachable(exc, request.app.state.settings).user_message
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        # An SQLite database is named by its file: say which, not where.
        content={"detail": without_paths(message)},
        headers={"Retry-After": str(DB_RETRY_AFTER_SECONDS)},
    )


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Connect (and migrate) before the first request, not during it: otherwise the first
    # burst of submissions all wait behind Alembic.
    get_engine(app.state.settings)
    anyio.to_thread.current_default_thread_limiter().total_tokens = app.state.threads
    yield


def create_app(
    settings: Settings | None = None,
    *,
    launcher: Launcher | None = None,
    token: str | None = None,
    threads: int | None = None,
) -> FastAPI:
    """The API for ``settings``; ``launcher``, ``token`` and ``threads`` default to what
    settings say.

    ``threads`` caps how many requests run their (blocking) handlers at once.

    Raises:
        ConfigError: no token given and ``CATWALK_API_TOKEN`` unset (or too short).
    """
    settings = settings or get_settings()
    app = FastAPI(
        title="catwalk",
        summary="On-model product videos from product photos.",
        version="1.0.0",
        description=(
            "The original video-generation contract. Every endpoint needs "
            "`Authorization: Bearer <CATWALK_API_TOKEN>`."
        ),
        lifespan=_lifespan,
        docs_url=None,  # served from the installed swagger-ui-bundle instead (extra.py)
    )
    app.state.settings = settings
    app.state.api_token = token if token is not None else resolve_token(settings)[0]
    app.state.launcher = launcher or default_launcher(settings)
    app.state.threads = threads or settings.api_threads
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    # Outermost: refuses an unauthenticated or oversized request before FastAPI reads it.
    app.add_middleware(
        RefuseBeforeReading,
        token=app.state.api_token,
        max_body_bytes=settings.api_max_body_bytes,
        prefix="/api/",
    )
    app.add_exception_handler(DBAPIError, _on_database_error)
    app.add_exception_handler(DatabaseUnavailable, _on_database_error)

    guarded = [Depends(_require_token)]

    @app.post(
        PREFIX,
        status_code=status.HTTP_202_ACCEPTED,
        response_model=SubmittedJob,
        dependencies=guarded,
        summary="Request a video for a product",
        responses={
            200: {"model": SubmittedJob, "description": "The product's job already in flight."},
            202: {"description": "Job recorded and started; follow it at `Location`."},
            401: _UNAUTHORIZED,
            422: _INVALID,
            429: {
                "model": LimitErrorBody,
                "description": "Refused by the daily limit or budget; see `Retry-After`.",
            },
            503: {"model": ErrorBody, "description": "The job could not be started."},
        },
    )
    def request_video(
        body: GenerationRequest,
        response: Response,
        settings: SettingsDep,
        launcher: LauncherDep,
    ) -> Any:
        options = body.options.model_dump(exclude_none=True) if body.options else None
        try:
            submission = submit_job(body.productId, options, settings=settings, launcher=launcher)
        except LimitExceeded as exc:
            retry_after = max(0, int(exc.retry_after_seconds))
            return JSONResponse(
                status_code=status.HTTP_429_TOO_MANY_REQUESTS,
                content={"detail": exc.user_message, "retryAfter": retry_after},
                headers={"Retry-After": str(retry_after)},
            )
        except (ProductNotFound, ProductImageError) as exc:
            kind = "product_not_found" if isinstance(exc, ProductNotFound) else "product_image"
            return _invalid(
                exc.user_message, [_issue(["body", "productId"], exc.user_message, kind)]
            )
        except InputError as exc:
            return _invalid(exc.user_message, [_issue(["body"], exc.user_message, "invalid_input")])
        except ValueError as exc:  # options the request model let through but jobs refuse
            return _invalid(str(exc), [_issue(["body", "options"], str(exc), "value_error")])
        except DatabaseUnavailable:
            raise
        except CatwalkError as exc:
            return JSONResponse(
                status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                content={
                    "detail": without_paths(f"the job could not be started: {exc.user_message}")
                },
            )
        response.headers["Location"] = f"{PREFIX}/{submission.job_id}"
        if not submission.created:
            response.status_code = status.HTTP_200_OK
        return SubmittedJob(
            jobId=submission.job_id,
            status=submission.status,
            estimatedTime=submission.estimated_time,
        )

    # Declared before /{jobId} so "stats" is never taken for a job id.
    @app.get(
        f"{PREFIX}/stats",
        response_model=GenerationStats,
        dependencies=guarded,
        summary="Jobs and spend",
        responses={401: _UNAUTHORIZED},
    )
    def stats(settings: SettingsDep) -> Any:
        # The dashboard's and `catwalk stats`' numbers; the response model keeps the
        # contract's fields of them.
        with session_scope(settings) as session:
            return compute_stats(session=session, settings=settings)

    @app.get(
        f"{PREFIX}/{{jobId}}",
        response_model=JobState,
        response_model_exclude_unset=True,
        dependencies=guarded,
        summary="A job's state, result and cost",
        responses={
            401: _UNAUTHORIZED,
            404: {"model": ErrorBody, "description": "No job with that id."},
        },
    )
    def job_state(jobId: str, request: Request, settings: SettingsDep) -> Any:
        with session_scope(settings) as session:
            job = queries.get_job(session=session, job_id=jobId)
            if job is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown job {jobId!r}")
            return _job_state(job, request, settings)

    from catwalk.api import extra

    extra.register(app, prefix=PREFIX, guarded=guarded, job_state=_job_state)
    from catwalk.api import review

    review.register(app, prefix=PREFIX, guarded=guarded)
    return app


def create_app_from_env() -> FastAPI:
    """The app for the settings in the environment: what each ``catwalk api`` worker serves."""
    return create_app(get_settings())


def _job_state(job: Any, request: Request, settings: Settings) -> JobState:
    """A job as the contract shows it; media URLs any other system can fetch."""
    from catwalk.api.media import fetchable_url

    video_url = poster_url = None
    if job.status is JobStatus.COMPLETED:
        video_url = fetchable_url(request, job.video_key, settings)
        poster_url = fetchable_url(request, job.poster_key, settings)
    payload = queries.job_to_contract(job, video_url=video_url, poster_url=poster_url)
    if payload.get("error"):
        # A job's error is written for the operator (the photo's path, the file that failed).
        payload["error"] = without_paths(payload["error"])
    return JobState.model_validate(payload)
