"""Production launcher: start a flow run of the deployment (a worker picks it up)."""

from __future__ import annotations

import threading
from typing import Any
from uuid import UUID

from catwalk.config import Settings

# One Prefect client and deployment id per (API, deployment) for the whole process: the
# dashboard and the API submit many jobs, and a fresh client plus a deployment lookup per
# submission doubled its latency (measured in bench/README.md).
_lock = threading.Lock()
_targets: dict[tuple[str, str], tuple[Any, UUID]] = {}


def _target(deployment_name: str) -> tuple[Any, UUID]:
    from prefect import get_client
    from prefect.settings import get_current_settings

    key = (str(get_current_settings().api.url), deployment_name)
    with _lock:
        if key not in _targets:
            client = get_client(sync_client=True)
            client.__enter__()  # kept open for the process's life, like a DB engine
            deployment = client.read_deployment_by_name(deployment_name)
            _targets[key] = (client, deployment.id)
        return _targets[key]


class DeploymentLauncher:
    """Starts ``generate-product-video`` through the Prefect API and returns at once.

    Creating a flow run is one API call that touches only the Prefect server's database
    (no leases, no Redis), which is what keeps a submission well under a second however
    long the queue is: the work pool's limit, not the submitter, holds jobs back.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def launch(
        self, *, job_id: str, product_id: str, options: dict[str, Any], run_key: str | None = None
    ) -> str | None:
        from prefect.exceptions import ObjectNotFound

        # The same job can never become two flow runs, whatever retries the caller does; a
        # retry or a relaunch by housekeeping names its new run with ``run_key``.
        key = run_key or f"job-{job_id}"
        kwargs: dict[str, Any] = {
            "parameters": {"product_id": product_id, "options": options, "job_id": job_id},
            "idempotency_key": key,
            "tags": [f"product:{product_id}"[:100], f"job:{job_id}"],
        }
        client, deployment_id = _target(self._settings.deployment_name)
        try:
            run = client.create_flow_run_from_deployment(deployment_id, **kwargs)
        except ObjectNotFound:
            # Redeployed since we looked it up: look again once.
            with _lock:
                _targets.clear()
            client, deployment_id = _target(self._settings.deployment_name)
            run = client.create_flow_run_from_deployment(deployment_id, **kwargs)
        return str(run.id)
