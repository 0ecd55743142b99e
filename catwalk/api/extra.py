"""Endpoints beyond the original contract, for systems that act on jobs, not only read one.

    GET  /api/admin/video-generation?productId=&status=&cursor=&limit=   newest first, paged
    POST /api/admin/video-generation/{jobId}/retry                       re-run a failed job
    POST /api/admin/video-generation/{jobId}/cancel                      stop a job
    GET  /media/<key>                                                    local media (media.py)

Retry and cancel call ``submission.retry_job`` / ``cancel_job``, the CLI's and the
dashboard's path, so the rules (only failed or cancelled jobs retry, paid steps are reused)
are the same everywhere.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Body, FastAPI, HTTPException, Query, Request, Response, status
from fastapi.params import Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import and_, or_, select

from catwalk.api.media import router as media_router
from catwalk.api.schemas import ErrorBody, JobState, RetryBody, SubmittedJob, ValidationErrorBody
from catwalk.config import Settings
from catwalk.db import queries, session_scope
from catwalk.db.models import VideoJob
from catwalk.domain import JobStatus
from catwalk.errors import CatwalkError, InputError
from catwalk.scrub import without_paths


class JobPage(BaseModel):
    """One page of jobs, newest first; pass ``nextCursor`` back as ``cursor`` for the next."""

    jobs: list[JobState]
    nextCursor: str | None = Field(description="Absent on the last page.")


class CancelledJob(BaseModel):
    jobId: str
    status: JobStatus


def _encode_cursor(job: VideoJob) -> str:
    raw = json.dumps([job.created_at.isoformat(), job.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, job_id = json.loads(raw)
        return dt.datetime.fromisoformat(created), str(job_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail="invalid cursor: pass back nextCursor"
        ) from exc


def unknown_job(job_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown job {job_id!r}")


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    # Starlette's 405 lists the methods of the first route matching the path only; the list
    # endpoint shares its path with the submission, so gather every route's methods.
    allowed: set[str] = set()
    for route in request.app.routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(request.url.path):
            allowed |= set(getattr(route, "methods", None) or ())
    return JSONResponse(
        status_code=status.HTTP_405_METHOD_NOT_ALLOWED,
        content={"detail": "Method Not Allowed"},
        headers={"Allow": ", ".join(sorted(allowed))},
    )


def _offline_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the installed swagger-ui-bundle package: FastAPI's default
    page loads it from a CDN and is blank on a closed network."""
    import swagger_ui_bundle
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    app.mount("/docs/static", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), "docs")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - Swagger UI",
            swagger_js_url="/docs/static/swagger-ui-bundle.js",
            swagger_css_url="/docs/static/swagger-ui.css",
            swagger_favicon_url="/docs/static/favicon-32x32.png",
        )


def register(
    app: FastAPI,
    *,
    prefix: str,
    guarded: list[Depends],
    job_state: Callable[[Any, Request, Settings], JobState],
) -> None:
    """Add the list, retry, cancel and media endpoints to ``app``."""
    app.include_router(media_router())
    _offline_docs(app)
    app.add_exception_handler(status.HTTP_405_METHOD_NOT_ALLOWED, _method_not_allowed)
    unauthorized = {"model": ErrorBody, "description": "Missing or wrong bearer token."}

    @app.get(
        prefix,
        response_model=JobPage,
        response_model_exclude_unset=True,
        dependencies=guarded,
        summary="Jobs, newest first, filtered by product and status",
        responses={401: unauthorized, 422: {"model": ErrorBody}},
    )
    def list_jobs(
        request: Request,
        productId: Annotated[str | None, Query(max_length=255)] = None,
        status_: Annotated[JobStatus | None, Query(alias="status")] = None,
        cursor: Annotated[str | None, Query(max_length=500)] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> Any:
        settings: Settings = request.app.state.settings
        stmt = select(VideoJob).order_by(VideoJob.created_at.desc(), VideoJob.id.desc())
        if productId is not None:
            stmt = stmt.where(VideoJob.product_id == productId)
        if status_ is not None:
            stmt = stmt.where(VideoJob.status == status_)
        if cursor:
            created, job_id = _decode_cursor(cursor)
            stmt = stmt.where(
                or_(
                    VideoJob.created_at < created,
                    and_(VideoJob.created_at == created, VideoJob.id < job_id),
                )
            )
        with session_scope(settings) as session:
            rows = list(session.scalars(stmt.limit(limit + 1)))
            page = [job_state(job, request, settings) for job in rows[:limit]]
            more = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
        return JobPage(jobs=page, nextCursor=more)

    @app.post(
        f"{prefix}/{{jobId}}/retry",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=SubmittedJob,
        dependencies=guarded,
        summary="Run a failed or cancelled job again (paid steps are reused)",
        responses={
            401: unauthorized,
            404: {"model": ErrorBody, "description": "No job with that id."},
            409: {"model": ErrorBody, "description": "The job is not failed or cancelled."},
            400: {"model": ErrorBody, "description": "A body that is not UTF-8 JSON."},
            422: {"model": ValidationErrorBody, "description": "A malformed body."},
            503: {"model": ErrorBody, "description": "The job could not be started."},
        },
    )
    def retry(
        jobId: str, request: Request, body: Annotated[RetryBody | None, Body()] = None
    ) -> Any:
        from catwalk.submission import retry_job

        settings: Settings = request.app.state.settings
        with session_scope(settings) as session:
            if queries.get_job(session=session, job_id=jobId) is None:
                raise unknown_job(jobId)
        try:
            submission = retry_job(
                jobId,
                settings=settings,
                launcher=request.app.state.launcher,
                new_keyframes=bool(body and body.newKeyframes),
            )
        except InputError as exc:
            raise HTTPException(
                status.HTTP_409_CONFLICT, detail=without_paths(exc.user_message)
            ) from exc
        except CatwalkError as exc:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                detail=without_paths(f"the job could not be started: {exc.user_message}"),
            ) from exc
        return SubmittedJob(
            jobId=submission.job_id,
            status=submission.status,
            estimatedTime=submission.estimated_time,
        )

    @app.post(
        f"{prefix}/{{jobId}}/cancel",
        response_model=CancelledJob,
        dependencies=guarded,
        summary="Stop a job (at once if it has not started, else at its next check)",
        responses={401: unauthorized, 404: {"model": ErrorBody, "description": "No such job."}},
    )
    def cancel(jobId: str, request: Request) -> Any:
        from catwalk.submission import cancel_job

        settings: Settings = request.app.state.settings
        with session_scope(settings) as session:
            if queries.get_job(session=session, job_id=jobId) is None:
                raise unknown_job(jobId)
        return CancelledJob(jobId=jobId, status=cancel_job(jobId, settings=settings))
