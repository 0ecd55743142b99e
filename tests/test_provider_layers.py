"""Clients and fakes stay below the orchestration: no Prefect, tasks, flows or db imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = ("prefect", "catwalk.tasks", "catwalk.flows", "catwalk.db", "catwalk.dashboards")
# clients/limits.py holds Prefect's concurrency limits on purpose (its docstring says why).
EXEMPT = {"limits.py"}
MODULES = sorted(
    p
    for p in [*ROOT.glob("catwalk/clients/*.py"), *ROOT.glob("catwalk/fakes/*.py")]
    if p.name not in EXEMPT
)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_upward_imports(path: Path) -> None:
    # Whole names: `prefect_aws` (the S3 block storage.py builds on) is not `prefect`.
    upward = {n for n in _imports(path) if any(n == f or n.startswith(f + ".") for f in FORBIDDEN)}
    assert not upward


def test_the_provider_modules_are_checked() -> None:
    names = {f"{p.parent.name}/{p.name}" for p in MODULES}
    assert {"clients/gemini.py", "clients/fal_pika.py", "fakes/gemini.py", "fakes/fal.py"} <= names
