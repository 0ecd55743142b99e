"""``POST .../{jobId}/approve`` and ``.../reject``: review decisions over HTTP."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, FastAPI, HTTPException, Request, status
from fastapi.params import Depends
from fastapi.responses import JSONResponse

from catwalk.api.extra import unknown_job
from catwalk.api.schemas import (
    ErrorBody,
    ReviewDecisionBody,
    ReviewOutcome,
    ValidationErrorBody,
)
from catwalk.config import Settings
from catwalk.db import queries, session_scope
from catwalk.errors import CatwalkError, InputError
from catwalk.scrub import without_paths

_CONFLICT = {
    "model": ErrorBody,
    "description": "The job does not wait for a decision (any more): another admin decided "
    "first, it expired or was cancelled. `detail` says which.",
}


def register(app: FastAPI, *, prefix: str, guarded: list[Depends]) -> None:
    responses: dict[int | str, dict[str, Any]] = {
        401: {"model": ErrorBody, "description": "Missing or wrong bearer token."},
        404: {"model": ErrorBody, "description": "No job with that id."},
        409: _CONFLICT,
        400: {"model": ErrorBody, "description": "A body that is not UTF-8 JSON."},
        422: {"model": ValidationErrorBody, "description": "A malformed body."},
    }

    def decide(request: Request, job_id: str, decision: str, note: str) -> ReviewOutcome:
        from catwalk import review

        settings: Settings = request.app.state.settings
        with session_scope(settings) as session:
            if queries.get_job(session=session, job_id=job_id) is None:
                raise unknown_job(job_id)
        try:
            decided = review.decide(
                job_id,
                decision,
                by="api",
                note=note,
                settings=settings,
                launcher=request.app.state.launcher,
            )
        except InputError as exc:
            raise HTTPException(
                status.HTTP_409_CONFLICT, detail=without_paths(exc.user_message)
            ) from exc
        except CatwalkError as exc:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, detail=without_paths(exc.user_message)
            ) from exc
        with session_scope(settings) as session:
            job = queries.get_job(session=session, job_id=job_id)
            assert job is not None
            return ReviewOutcome(
                jobId=job_id,
                decision=decision,
                point=decided.point,  # type: ignore[arg-type]
                status=job.status,
            )

    @app.post(
        f"{prefix}/{{jobId}}/approve",
        response_model=ReviewOutcome,
        dependencies=guarded,
        summary="Approve a job waiting for review (or remake one of its keyframes)",
        responses=responses,
    )
    def approve(
        jobId: str, request: Request, body: Annotated[ReviewDecisionBody | None, Body()] = None
    ) -> Any:
        body = body or ReviewDecisionBody()
        decision = f"regenerate-{body.regenerate}" if body.regenerate else "approve"
        return decide(request, jobId, decision, body.note)

    @app.post(
        f"{prefix}/{{jobId}}/reject",
        response_model=ReviewOutcome,
        dependencies=guarded,
        summary="Reject a job waiting for review: it ends CANCELLED, nothing more is spent",
        responses=responses,
    )
    def reject(
        jobId: str, request: Request, body: Annotated[ReviewDecisionBody | None, Body()] = None
    ) -> Any:
        body = body or ReviewDecisionBody()
        if body.regenerate:
            why = "regenerate goes with approve, not reject"
            return JSONResponse(
                status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
                content={
                    "detail": why,
                    "errors": [{"loc": ["body", "regenerate"], "msg": why, "type": "value_error"}],
                },
            )
        return decide(request, jobId, "reject", body.note)
