"""How fast the HTTP API answers a submission under load (NFR-001: within 1 second).

    python bench/api.py [--clients 50] [--requests 500] [--queue 5000] [--db sqlite|postgresql]

What it does:
1. Makes a throwaway catwalk home (and, with ``--db postgresql``, a throwaway database on
   the local server), seeds ``--queue`` products that each have a PENDING job (a busy
   queue) and ``--requests`` fresh products, all with a real photo (every submission reads
   and decodes it, as in production).
2. Starts the API in its own process: a real uvicorn server on a free port, the app from
   ``api.create_app``, served as ``catwalk api`` serves it (``api.server.serve``: one socket,
   ``--workers`` processes, by default one per CPU). Its launcher *records* each job instead
   of starting a flow run: 500 flow runs (each a Python process with Prefect) would measure
   this machine, not the API.
3. ``--clients`` concurrent HTTP clients POST one submission per fresh product, then GET
   each job back. Prints p50/p95/p99/max per endpoint.
4. Times the real embedded launcher apart: ``LocalProcessLauncher.launch`` (the Popen of
   ``catwalk run-job``) for jobs that do not exist, so each child exits after its imports
   instead of running a flow. That is the time the launcher adds to a request.

The last line is JSON with ``post_p50_ms`` and ``post_p95_ms``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


TOKEN = "bench-token-" + uuid.uuid4().hex
PREFIX = "/api/admin/video-generation"


class CountingLauncher:
    """Starts nothing; counts what it was asked to start."""

    def __init__(self) -> None:
        self.launched = 0

    def launch(
        self, *, job_id: str, product_id: str, options: dict[str, Any], **_: object
    ) -> str | None:
        self.launched += 1
        return None


def bench_app() -> Any:
    """The app each server process builds: the settings in the environment, no flows."""
    from catwalk.api import create_app
    from catwalk.config import get_settings

    app = create_app(
        get_settings(),
        launcher=CountingLauncher(),
        token=os.environ["BENCH_TOKEN"],
        threads=int(os.environ["BENCH_THREADS"]),
    )
    # The bench starts its clients once every worker has said this (stdout is shared).
    print(f"worker {os.getpid()} ready", flush=True)
    return app


def _serve() -> None:
    """Child mode: serve the API for the settings in the environment until stdin closes."""
    import signal
    import threading

    from catwalk.api.server import serve

    def stop_when_stdin_closes() -> None:
        sys.stdin.read()
        os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's own shutdown, workers and all

    threading.Thread(target=stop_when_stdin_closes, daemon=True).start()
    workers = int(os.environ["BENCH_WORKERS"])
    # Workers import the factory by name: this file's folder is first on their sys.path.
    serve(
        "api:bench_app",
        host="127.0.0.1",
        port=0,
        workers=workers,
        on_bound=lambda url: print(url, flush=True),
        backlog=2048,
        log_level="warning",
    )


def _wait_until_serving(base_url: str) -> None:
    """The port is bound before the workers have loaded the app: wait for an answer."""
    import httpx

    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(f"{base_url}{PREFIX}/stats", timeout=5)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise SystemExit("the API server did not answer") from None
            time.sleep(0.2)


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def _summary(name: str, values: list[float]) -> dict[str, float]:
    figures = {
        "p50": _percentile(values, 50),
        "p95": _percentile(values, 95),
        "p99": _percentile(values, 99),
        "max": max(values),
        "mean": statistics.fmean(values),
    }
    print(
        f"{name:<5} n={len(values):<5} "
        + "  ".join(f"{k}={v * 1000:7.1f} ms" for k, v in figures.items())
    )
    return figures


def _seed(settings: Any, *, queue: int, fresh: int) -> list[str]:
    from catwalk.db import session_scope
    from catwalk.db.models import Product, VideoJob
    from sqlalchemy import insert

    from catwalk.catalog import DEMO_PRODUCTS, write_demo_photos
    from catwalk.domain import JobStatus

    photo = str(write_demo_photos(settings.catwalk_home / "photos")[DEMO_PRODUCTS[0].id])
    busy = [f"busy-{i:06d}" for i in range(queue)]
    new = [f"bench-{i:06d}" for i in range(fresh)]
    with session_scope(settings) as session:
        session.execute(
            insert(Product), [{"id": p, "name": p, "images": [photo]} for p in busy + new]
        )
        if busy:
            session.execute(
                insert(VideoJob),
                [
                    {
                        "id": uuid.uuid4().hex,
                        "product_id": p,
                        "status": JobStatus.PENDING,
                        "options": {"modelType": "female", "videoStyle": "smooth"},
                        "identity_seed": n + 1,
                    }
                    for n, p in enumerate(busy)
                ],
            )
    return new


Send = Callable[[str, str, "dict[str, str] | None"], Awaitable[tuple[int, bytes]]]


@asynccontextmanager
async def _client(base_url: str, clients: int, kind: str) -> AsyncIterator[Send]:
    """A pool of ``clients`` keep-alive connections; yields ``send(method, path, json)``,
    which returns once the whole response body has arrived.

    aiohttp (installed with prefect-aws) by default: its C parser costs the shared machine
    about half the CPU that httpx does, CPU the server under test would otherwise not get.
    ``--client httpx`` measures with httpx, as the bench did before.
    """
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if kind == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(
            base_url=base_url, headers=headers, limits=limits, timeout=60
        ) as http:

            async def send_httpx(
                method: str, path: str, body: dict[str, str] | None
            ) -> tuple[int, bytes]:
                response = await http.request(method, path, json=body)
                return response.status_code, response.content

            yield send_httpx
        return
    import aiohttp

    connector = aiohttp.TCPConnector(limit=clients, limit_per_host=clients)
    async with aiohttp.ClientSession(
        base_url=base_url,
        headers=headers,
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=60),
    ) as session:

        async def send_aiohttp(
            method: str, path: str, body: dict[str, str] | None
        ) -> tuple[int, bytes]:
            async with session.request(method, path, json=body) as response:
                return response.status, await response.read()

        yield send_aiohttp


async def _load(base_url: str, products: list[str], clients: int, kind: str) -> dict[str, Any]:
    post_times: list[float] = []
    get_times: list[float] = []
    codes: dict[str, int] = {}
    job_ids: list[str] = []

    async with _client(base_url, clients, kind) as send:
        pending = list(products)

        async def poster() -> None:
            while pending:
                product = pending.pop()
                started = time.perf_counter()
                status, body = await send("POST", PREFIX, {"productId": product})
                post_times.append(time.perf_counter() - started)
                key = f"POST {status}"
                codes[key] = codes.get(key, 0) + 1
                if status in (200, 202):
                    job_ids.append(json.loads(body)["jobId"])

        wall = time.perf_counter()
        await asyncio.gather(*(poster() for _ in range(clients)))
        post_wall = time.perf_counter() - wall

        to_get = list(job_ids)

        async def getter() -> None:
            while to_get:
                job_id = to_get.pop()
                started = time.perf_counter()
                status, _ = await send("GET", f"{PREFIX}/{job_id}", None)
                get_times.append(time.perf_counter() - started)
                key = f"GET {status}"
                codes[key] = codes.get(key, 0) + 1

        await asyncio.gather(*(getter() for _ in range(clients)))
    return {"post": post_times, "get": get_times, "codes": codes, "post_wall": post_wall}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its live descendants (Linux /proc):
    the server's workers are children of the process this script started."""
    total = 0.0
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        stats[int(entry.name)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    todo = [pid]
    while todo:
        current = todo.pop()
        fields = stats.get(current)
        if fields is not None:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        todo.extend(children.get(current, []))
    return total


def _time_local_launcher(settings: Any, runs: int) -> list[float]:
    from catwalk.submission import LocalProcessLauncher

    launcher = LocalProcessLauncher(settings)
    times = []
    for n in range(runs):
        started = time.perf_counter()
        launcher.launch(job_id=f"bench-no-such-job-{n}", product_id="none", options={})
        times.append(time.perf_counter() - started)
        time.sleep(0.2)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--queue", type=int, default=5000, help="PENDING jobs already queued")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--pg-admin",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="server where --db postgresql makes (and drops) its throwaway database",
    )
    parser.add_argument(
        "--client", choices=("aiohttp", "httpx"), default="aiohttp", help="the load's HTTP client"
    )
    parser.add_argument("--threads", type=int, default=None, help="handler threads a process")
    parser.add_argument(
        "--workers", type=int, default=None, help="server processes (default: as catwalk api)"
    )
    parser.add_argument("--launch-runs", type=int, default=5, help="real LocalProcessLauncher runs")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve()
        return

    home = Path(tempfile.mkdtemp(prefix="catwalk-bench-api-"))
    from catwalk.api.server import cpu_workers
    from catwalk.config import Settings

    defaults = Settings()
    threads = args.threads or defaults.api_threads
    workers = args.workers or cpu_workers(defaults.api_workers)
    env = {
        **os.environ,
        "CATWALK_HOME": str(home),
        "BENCH_TOKEN": TOKEN,
        "BENCH_THREADS": str(threads),
        "BENCH_WORKERS": str(workers),
        # The daily limit is checked (a reservation on today's usage row) but never reached:
        # this measures admissions, not refusals.
        "DAILY_GENERATION_LIMIT": str(10 * (args.requests + args.queue)),
    }
    env.pop("DAILY_BUDGET", None)
    env.pop("DATABASE_URL", None)
    pg_name = None
    if args.db == "postgresql":
        import psycopg

        pg_name = f"catwalk_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(args.pg_admin, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{pg_name}"')
        env["DATABASE_URL"] = f"{args.pg_admin.rsplit('/', 1)[0]}/{pg_name}"
    os.environ.update(
        {
            k: env[k]
            for k in ("CATWALK_HOME", "DAILY_GENERATION_LIMIT")
            + (("DATABASE_URL",) if pg_name else ())
        }
    )

    from catwalk.db import dispose_engines

    from catwalk.config import get_settings

    settings = get_settings()
    try:
        started = time.perf_counter()
        products = _seed(settings, queue=args.queue, fresh=args.requests)
        print(
            f"seeded {args.queue} PENDING jobs and {args.requests} fresh products "
            f"on {args.db} in {time.perf_counter() - started:.1f} s"
        )
        server = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            assert server.stdout is not None
            base_url = server.stdout.readline().strip()
            if not base_url.startswith("http"):
                raise SystemExit("the API server did not start")
            print(
                f"API at {base_url} (uvicorn, {workers} process(es), {threads} handler threads "
                "each; launcher records, starts no flows)"
            )
            for _ in range(workers):
                if not server.stdout.readline().startswith("worker "):
                    raise SystemExit("an API worker did not start")
            _wait_until_serving(base_url)
            print(
                f"{args.clients} concurrent {args.client} clients, {args.requests} POSTs "
                "then as many GETs"
            )
            cpu_before = _cpu_seconds(server.pid)
            client_before = time.process_time()
            result = asyncio.run(_load(base_url, products, args.clients, args.client))
            server_cpu = _cpu_seconds(server.pid) - cpu_before
            client_cpu = time.process_time() - client_before
        finally:
            assert server.stdin is not None
            server.stdin.close()
            server.wait(timeout=60)
        if set(result["codes"]) != {"POST 202", "GET 200"}:
            print(f"warning: not every request succeeded: {result['codes']}")
        post = _summary("POST", result["post"])
        get = _summary("GET", result["get"])
        print(
            f"POST throughput {len(result['post']) / result['post_wall']:.0f}/s; "
            f"status codes {result['codes']}"
        )
        served = len(result["post"]) + len(result["get"])
        print(
            f"server CPU {server_cpu:.2f} s for {served} requests: "
            f"{server_cpu / served * 1000:.1f} ms a request; load average {os.getloadavg()[0]:.1f} "
            f"on {os.cpu_count()} CPUs (a shared machine: latency includes waiting for a CPU)"
        )
        print(
            f"client CPU {client_cpu:.2f} s ({client_cpu / served * 1000:.1f} ms a request): "
            "the clients share the machine with the server"
        )
        launch = _time_local_launcher(settings, args.launch_runs) if args.launch_runs else []
        if launch:
            print(
                f"LocalProcessLauncher.launch (Popen of catwalk run-job): "
                f"median {statistics.median(launch) * 1000:.1f} ms, max {max(launch) * 1000:.1f} ms "
                f"over {len(launch)} runs"
            )
        figures = {
            "post_p50_ms": round(post["p50"] * 1000, 1),
            "post_p95_ms": round(post["p95"] * 1000, 1),
            "post_p99_ms": round(post["p99"] * 1000, 1),
            "post_max_ms": round(post["max"] * 1000, 1),
            "get_p50_ms": round(get["p50"] * 1000, 1),
            "get_p95_ms": round(get["p95"] * 1000, 1),
            "local_launch_ms_median": round(statistics.median(launch) * 1000, 1)
            if launch
            else None,
            "server_cpu_ms_per_request": round(server_cpu / served * 1000, 2),
            "client_cpu_ms_per_request": round(client_cpu / served * 1000, 2),
            "load_average": round(os.getloadavg()[0], 1),
            "threads": threads,
            "workers": workers,
            "clients": args.clients,
            "client": args.client,
            "requests": args.requests,
            "queue_pending": args.queue,
            "db": args.db,
            "launcher": "recording",
            "status_codes": result["codes"],
        }
        print(json.dumps(figures))
    finally:
        dispose_engines()
        shutil.rmtree(home, ignore_errors=True)
        if pg_name:
            import psycopg

            with psycopg.connect(args.pg_admin, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
