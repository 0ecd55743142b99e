"""A really full disk for tests: a tiny tmpfs mounted over a folder (needs root)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def tiny_disk(path: Path, size_kib: int, *, read_only: bool = False) -> Iterator[Path]:
    """Mount a ``size_kib`` tmpfs at ``path`` for the block; skip the test where we can't.

    A real filesystem running out of space is the honest way to get ENOSPC from every
    syscall that can raise it (write, fsync, mkdir, rename). Mounting needs root (or
    CAP_SYS_ADMIN); our machines run tests as root, CI included.
    """
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        [
            "mount",
            "-t",
            "tmpfs",
            "-o",
            f"size={size_kib}k,mode=0755{',ro' if read_only else ''}",
            "tmpfs",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill(path: Path, leave_bytes: int = 0) -> None:
    """Fill the filesystem holding ``path`` until ``leave_bytes`` or fewer are free."""
    stats = os.statvfs(path)
    free = stats.f_bavail * stats.f_frsize
    with (path / ".filler").open("wb") as fh:
        try:
            fh.write(b"\0" * max(0, free - leave_bytes))
            fh.flush()
        except OSError:
            pass  # full already: that is the point
