"""Every module's imports follow the layering the README draws; its Layout lists every folder."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
# The folders mapped into the package by package-dir in pyproject.toml.
MAPPED = ("flows", "tasks", "db", "dashboards", "deployments")


def _readme_layers() -> list[set[str]]:
    block = re.search(r"```text\nlayers, top to bottom\n(.*?)```", README, re.DOTALL)
    assert block, "README has no 'layers, top to bottom' block"
    return [
        {name.strip() for name in line.split(",")}
        for line in block.group(1).splitlines()
        if line.strip()
    ]


LAYERS = _readme_layers()
RANK = {unit: rank for rank, layer in enumerate(LAYERS) for unit in layer}


def _unit_files() -> dict[str, list[Path]]:
    """Each unit of the catwalk package (a subpackage or a top-level module) and its files."""
    units: dict[str, list[Path]] = {}
    for path in sorted((ROOT / "catwalk").iterdir()):
        if path.name.startswith(("_", ".")) or path.suffix not in (".py", ""):
            continue
        if path.is_dir():
            units[path.name] = sorted(path.rglob("*.py"))
        else:
            units[path.stem] = [path]
    for folder in MAPPED:
        units[folder] = sorted((ROOT / folder).rglob("*.py"))
    return units


UNITS = _unit_files()


def _imported_units(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
            if node.module == "catwalk":  # from catwalk import config, pricing
                modules += [f"catwalk.{alias.name}" for alias in node.names]
        for module in modules:
            parts = module.split(".")
            if parts[0] == "catwalk" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_every_unit_is_placed_in_the_readme_layers() -> None:
    assert set(UNITS) == set(RANK), (
        f"not in the README's layers: {sorted(set(UNITS) - set(RANK))}; "
        f"in the layers but not in catwalk: {sorted(set(RANK) - set(UNITS))}"
    )


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_imports_point_down_the_layers(unit: str) -> None:
    wrong = []
    for path in UNITS[unit]:
        for target in _imported_units(path) - {unit}:
            if RANK.get(target, -1) <= RANK[unit]:
                wrong.append(f"{path.relative_to(ROOT)} imports catwalk.{target}")
    assert not wrong, "imports up or sideways in the README's layers: " + "; ".join(wrong)


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    # The checker itself: a db module importing tasks is seen as catwalk.tasks.
    bad = tmp_path / "bad.py"
    bad.write_text("from catwalk.tasks import start_job\nfrom catwalk import config\n")
    assert _imported_units(bad) == {"tasks", "config"}
    assert RANK["tasks"] < RANK["db"]


def _layout_block() -> str:
    section = README.split("## Layout", 1)[1]
    block = re.search(r"```\n(.*?)```", section, re.DOTALL)
    assert block, "README's Layout section has no block"
    return block.group(1)


def test_the_layout_block_lists_every_folder() -> None:
    listed_top: set[str] = set()
    listed_sub: set[str] = set()
    for line in _layout_block().splitlines():
        names = re.findall(r"(?:^|\s{2,})([\w.]+/)", line)
        (listed_sub if line.startswith("  ") else listed_top).update(n.rstrip("/") for n in names)
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    folders = {p.split("/", 1)[0] for p in tracked if "/" in p}
    packages = {p.split("/")[1] for p in tracked if p.startswith("catwalk/") and p.count("/") >= 2}
    assert folders - listed_top == set(), "folders missing from README's Layout"
    assert packages - listed_sub == set(), "catwalk/ packages missing from README's Layout"
