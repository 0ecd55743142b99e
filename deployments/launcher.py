"""Production launcher: start a flow run of the deployment (a worker picks it up)."""

from __future__ import annotations

from typing import Any

from config import Settings


class DeploymentLauncher:
    """Starts ``generate-product-video`` through the Prefect API and returns at once."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def launch(
        self, *, job_id: str, product_id: str, options: dict[str, Any], run_key: str | None = None
    ) -> str | None:
        from prefect.deployments import run_deployment

        run = run_deployment(
            self._settings.deployment_name,
            parameters={"product_id": product_id, "options": options, "job_id": job_id},
            timeout=0,
            # The same job can never become two flow runs, whatever retries the caller does.
            idempotency_key=run_key or f"job-{job_id}",
            tags=[f"product:{product_id}"[:100], f"job:{job_id}"],
            as_subflow=False,
        )
        return str(run.id)
