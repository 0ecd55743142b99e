"""Production launcher: start a flow run of the deployment (a worker picks it up)."""

from __future__ import annotations

from typing import Any

from config import Settings


class DeploymentLauncher:
    """Starts ``generate-product-video`` through the Prefect API and returns at once.

    Creating a flow run is one API call that touches only the Prefect server's database
    (no leases, no Redis), which is what keeps a submission well under a second however
    long the queue is: the work pool's limit, not the submitter, holds jobs back.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def launch(
        self, *, job_id: str, product_id: str, options: dict[str, Any], relaunch: int = 0
    ) -> str | None:
        from prefect.deployments import run_deployment

        # The same job can never become two flow runs, whatever retries the caller does;
        # housekeeping passes ``relaunch`` to start a fresh run for a job whose run vanished.
        key = f"job-{job_id}" if not relaunch else f"job-{job_id}-relaunch-{relaunch}"
        run = run_deployment(
            self._settings.deployment_name,
            parameters={"product_id": product_id, "options": options, "job_id": job_id},
            timeout=0,
            idempotency_key=key,
            tags=[f"product:{product_id}"[:100], f"job:{job_id}"],
            as_subflow=False,
        )
        return str(run.id)
