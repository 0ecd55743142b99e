"""Start-up benchmark: CPU-seconds of a flow run's process before it does any work.

    python bench/startup.py                # 5 runs, median
    python bench/startup.py --runs 9
    python bench/startup.py --code DIR     # run the flow code of another checkout (e.g. an old commit)
    python bench/startup.py --code OLD --code .   # compare, runs alternating under the same load

What a worker does for each job, minus the worker: a throwaway ``prefect server`` (SQLite),
``prefect deploy --all`` from prefect.yaml, one flow run per measurement created from the
``generate-product-video/default`` deployment, then ``python -m prefect.engine`` started with
``PREFECT__FLOW_RUN_ID`` exactly as the process worker starts it. A small probe in that child
records ``time.process_time()`` (CPU of the whole process since it started: interpreter,
imports, Prefect's threads) when the flow body is entered, when the first task's body is
entered and when that task ends (it is the first to open the database), then ends the
process: what comes after is the job's own work, not start-up.

``--code DIR`` runs the child with ``PYTHONPATH=DIR`` and the deployment's pull step pointed
at DIR (the entrypoint is relative to it; each child reports where ``catwalk`` came from), so a checkout of an older commit
(with ``catwalk/flows`` etc. symlinked to its top-level folders) runs against the same
server; given several times, runs alternate between them so they share the machine's load. Figures are printed as they come;
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
        if "flow_body" not in marks:
            marks["flow_body"] = cpu
            return original(fn, parameters)
        marks["first_task"] = cpu
        # The first task (start_job) is the first to open the database: its end includes
        # the engine, the schema check (or migration) and the job's first writes.
        try:
            original(fn, parameters)
        finally:
            marks["first_task_done"] = time.process_time()
            loaded = {m: m in sys.modules for m in ("alembic", "boto3", "av")}
            where = str(Path(sys.modules["catwalk"].__file__ or "").parent.parent)
            out.write_text(
                json.dumps({**marks, "fn": fn.__name__, "loaded": loaded, "from": where})
            )
            os._exit(0)

    callables.call_with_parameters = call_with_parameters
    sys.argv = ["prefect.engine"]
    runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--runs", type=int, default=5)
    p.add_argument(
        "--code",
        type=Path,
        action="append",
        help="checkout whose flow code is run (repeat to compare; runs alternate between them)",
    )
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args()


def _child_env(code: Path) -> dict[str, str]:
    env = {**os.environ, "CATWALK_PROJECT_DIR": str(code)}
    if code != ROOT:
        env["PYTHONPATH"] = str(code)
    return env


def main() -> None:
    args = _args()
    if args.child:
        _probe()
        return
    codes = [c.resolve() for c in (args.code or [ROOT])]
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
    marks_by_code: dict[Path, list[dict[str, float]]] = {code: [] for code in codes}
    loads: list[float] = []
    try:
        os.environ["PREFECT_API_URL"] = server.start()
        stack.ensure_work_pool(settings)
        stack.ensure_provider_limits(settings)
        stack.deploy_all(project_dir=codes[0], env=_child_env(codes[0]))
        photo = str(next(iter(catalog.write_demo_photos(home / "photos").values())))

        from prefect import get_client
        from prefect.client.schemas.actions import DeploymentUpdate

        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name("generate-product-video/default")
            for i in range(args.runs):
                # Alternating between checkouts puts them under the same load.
                for n, code in enumerate(codes):
                    product = f"startup-{i}-{n}"
                    with session_scope() as session:
                        queries.upsert_product(
                            session=session, product_id=product, name=product, images=[photo]
                        )
                    # `prefect deploy` fixed the pull step's folder ({{ $CATWALK_PROJECT_DIR }})
                    # when it deployed, and the engine imports from that folder: point it at
                    # this run's checkout (the engine reads the deployment when it starts).
                    client.update_deployment(
                        deployment.id,
                        DeploymentUpdate(
                            pull_steps=[
                                {
                                    "prefect.deployments.steps.set_working_directory": {
                                        "directory": str(code)
                                    }
                                }
                            ]
                        ),
                    )
                    run = client.create_flow_run_from_deployment(
                        deployment.id, parameters={"product_id": product}
                    )
                    marks = home / f"marks-{i}-{n}.json"
                    env = {
                        **_child_env(code),
                        "PREFECT__FLOW_RUN_ID": str(run.id),
                        PROBE_ENV: str(marks),
                    }
                    wall = time.monotonic()
                    subprocess.run(
                        [sys.executable, str(Path(__file__).resolve()), "--child"],
                        cwd=code,
                        env=env,
                        check=True,
                        timeout=300,
                    )
                    wall = time.monotonic() - wall
                    loads.append(os.getloadavg()[0])
                    got = json.loads(marks.read_text())
                    marks_by_code[code].append(got)
                    print(
                        f"run {i + 1} {code}: flow body at {got['flow_body']:.2f} CPU-s, first "
                        f"task ({got['fn']}) at {got['first_task']:.2f}, done at "
                        f"{got['first_task_done']:.2f} CPU-s, {wall:.1f} s wall; catwalk from "
                        f"{got['from']}, loaded {[m for m, on in got['loaded'].items() if on]}",
                        flush=True,
                    )
    finally:
        server.stop()

    def median(code: Path, key: str) -> float:
        return round(statistics.median(m[key] for m in marks_by_code[code]), 3)

    summary = {
        "runs": args.runs,
        "results": {
            str(code): {
                "flow_body_cpu_s": median(code, "flow_body"),
                "first_task_cpu_s": median(code, "first_task"),
                "first_task_done_cpu_s": median(code, "first_task_done"),
            }
            for code in codes
        },
        "load_average_1m": [round(min(loads), 1), round(max(loads), 1)],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
