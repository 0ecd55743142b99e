"""Start-up benchmark: CPU-seconds of a flow run's process before it does any work.

    python bench/startup.py                # 5 runs, median
    python bench/startup.py --runs 9
    python bench/startup.py --code DIR     # run the flow code of another checkout (e.g. an old commit)

What a worker does for each job, minus the worker: a throwaway ``prefect server`` (SQLite),
``prefect deploy --all`` from prefect.yaml, one flow run per measurement created from the
``generate-product-video/default`` deployment, then ``python -m prefect.engine`` started with
``PREFECT__FLOW_RUN_ID`` exactly as the process worker starts it. A small probe in that child
records ``time.process_time()`` (CPU of the whole process since it started: interpreter,
imports, Prefect's threads) when the flow body is entered and when the first task's body is
entered, then ends the process: what comes after is the job's own work, not start-up.

``--code DIR`` runs the child with ``PYTHONPATH=DIR`` and the deployments from DIR's
prefect.yaml, so a checkout of an older commit (with ``catwalk/flows`` etc. symlinked to its
top-level folders) is measured against the same server. Figures are printed as they come;
the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE_ENV = "CATWALK_STARTUP_PROBE"


def _probe() -> None:
    """Child side: note the CPU time at the flow body and the first task, then run the engine."""
    import runpy

    out = Path(os.environ[PROBE_ENV])
    marks: dict[str, float] = {}
    # The engines call user code through this one function (flow_engine and task_engine
    # import it by name, so it is replaced before either is imported).
    from prefect.utilities import callables

    original = callables.call_with_parameters

    def call_with_parameters(fn, parameters):  # type: ignore[no-untyped-def]
        cpu = time.process_time()
        key = "flow_body" if "flow_body" not in marks else "first_task"
        marks[key] = cpu
        if key == "first_task":
            out.write_text(json.dumps({**marks, "fn": getattr(fn, "__name__", "?")}))
            os._exit(0)
        return original(fn, parameters)

    callables.call_with_parameters = call_with_parameters
    sys.argv = ["prefect.engine"]
    runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--code", type=Path, default=ROOT, help="checkout whose flow code is run")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args()


def main() -> None:
    args = _args()
    if args.child:
        _probe()
        return
    code = args.code.resolve()
    home = Path(tempfile.mkdtemp(prefix="catwalk-startup-"))
    os.environ.update(
        {
            "CATWALK_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
    )
    for key in ("PREFECT_API_URL", "DATABASE_URL"):
        os.environ.pop(key, None)

    from catwalk.db import queries, session_scope
    from catwalk.deployments import stack

    from catwalk import catalog
    from catwalk.config import get_settings

    settings = get_settings()
    server = stack.ManagedServer(settings, port=stack.free_port())
    try:
        os.environ["PREFECT_API_URL"] = server.start()
        child_env = {**os.environ, "CATWALK_PROJECT_DIR": str(code)}
        if code != ROOT:
            child_env["PYTHONPATH"] = str(code)
        stack.ensure_work_pool(settings)
        stack.ensure_provider_limits(settings)
        stack.deploy_all(project_dir=code, env=child_env)
        photo = str(next(iter(catalog.write_demo_photos(home / "photos").values())))

        from prefect import get_client

        flow_body: list[float] = []
        first_task: list[float] = []
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name("generate-product-video/default")
            for i in range(args.runs):
                product = f"startup-{i}"
                with session_scope() as session:
                    queries.upsert_product(
                        session=session, product_id=product, name=product, images=[photo]
                    )
                run = client.create_flow_run_from_deployment(
                    deployment.id, parameters={"product_id": product}
                )
                marks = home / f"marks-{i}.json"
                env = {**child_env, "PREFECT__FLOW_RUN_ID": str(run.id), PROBE_ENV: str(marks)}
                wall = time.monotonic()
                subprocess.run(
                    [sys.executable, str(Path(__file__).resolve()), "--child"],
                    cwd=code,
                    env=env,
                    check=True,
                    timeout=300,
                )
                wall = time.monotonic() - wall
                got = json.loads(marks.read_text())
                flow_body.append(got["flow_body"])
                first_task.append(got["first_task"])
                print(
                    f"run {i + 1}: flow body at {got['flow_body']:.2f} CPU-s, first task "
                    f"({got['fn']}) at {got['first_task']:.2f} CPU-s, {wall:.1f} s wall",
                    flush=True,
                )
    finally:
        server.stop()
    load = os.getloadavg()[0]
    summary = {
        "runs": args.runs,
        "code": str(code),
        "flow_body_cpu_s": round(statistics.median(flow_body), 3),
        "first_task_cpu_s": round(statistics.median(first_task), 3),
        "load_average_1m": round(load, 2),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
