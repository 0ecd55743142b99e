"""Benchmark: CPU-seconds of ``catwalk --help`` and ``catwalk jobs`` (median of N runs).

CPU time (user + system of the child, from ``os.wait4``), not wall time: the machines are
shared, and the CPU a command burns before it answers is what lazy imports change. Each run
is a fresh interpreter, as a user's shell starts it, against a throwaway CATWALK_HOME (the
first ``jobs`` run, which creates and migrates the SQLite database, is a warm-up and not
counted). Prints one line per command and a last line of JSON. ``--all`` measures the
other everyday commands too (``products``, ``alerts``, ``doctor``, ``stats``: the last loads
pandas, which is its work).

    python bench/cli.py [--runs 5] [--all]
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


def cpu_seconds(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one run of ``catwalk *args``."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "catwalk.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"catwalk {' '.join(args)} exited with {proc.returncode}")
    return usage.ru_utime + usage.ru_stime, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--all", action="store_true", help="every everyday command too")
    options = parser.parse_args()
    runs = options.runs
    commands: list[tuple[str, list[str]]] = [("--help", ["--help"]), ("jobs", ["jobs"])]
    if options.all:
        commands += [(name, [name]) for name in ("products", "alerts", "doctor", "stats")]
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PREFECT_API_URL")}
        env["CATWALK_HOME"] = home
        cpu_seconds(["jobs"], env)  # warm-up: creates and migrates the database
        result: dict[str, dict[str, float]] = {}
        for label, args in commands:
            samples = [cpu_seconds(args, env) for _ in range(runs)]
            cpu = statistics.median(s[0] for s in samples)
            wall = statistics.median(s[1] for s in samples)
            result[label] = {"cpu_s": round(cpu, 3), "wall_s": round(wall, 3)}
            print(f"catwalk {label:8s} CPU {cpu:.2f} s, wall {wall:.2f} s (median of {runs})")
    print(json.dumps({"runs": runs, "load_avg_1m": os.getloadavg()[0], **result}))


if __name__ == "__main__":
    main()
