"""The wheel is what a Docker image or a deploy installs: it must hold `catwalk/` only, with
its data files, and work from a directory that is not the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (found,) = out.glob("catwalk-*.whl")
    return found


def test_the_wheel_holds_the_catwalk_package_and_its_data_only(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"catwalk", f"catwalk-{_version(wheel)}.dist-info"}
    for required in (
        "catwalk/prices.toml",
        "catwalk/db/migrations/env.py",
        "catwalk/db/migrations/script.py.mako",
        "catwalk/db/migrations/versions/0001_initial_schema.py",
        "catwalk/dashboards/streamlit_app.py",
        "catwalk/dashboards/app_pages/products.py",
        "catwalk/flows/generate_product_video.py",
        "catwalk/tasks/video.py",
        "catwalk/deployments/stack.py",
    ):
        assert required in names, required
    assert not [n for n in names if n.startswith(("catwalk/tests", "tests/", "bench/"))]


def _version(wheel: Path) -> str:
    return wheel.name.split("-")[1]


@pytest.mark.slow
def test_a_wheel_install_makes_a_video_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True, timeout=900)
    work = tmp_path / "empty"
    work.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "DATABASE_URL", "CATWALK_", "PYTHONPATH"))
    }
    env.update(
        OFFLINE_FRAME_WIDTH="160",
        VIDEO_DURATION_SECONDS="2",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    done = subprocess.run(
        [str(env_dir / "bin" / "catwalk"), "demo", "--limit", "1"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    videos = list((work / ".catwalk" / "media").rglob("*.mp4"))
    assert videos and videos[0].stat().st_size > 1000
    # Nothing of the checkout was on the path: the package came from the venv.
    where = subprocess.run(
        [
            str(python),
            "-c",
            "import catwalk, catwalk.db; print(catwalk.__file__, catwalk.db.__file__)",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(ROOT) not in where and str(env_dir) in where
