"""Real read-only and full file systems for tests, without touching the machine.

`unshare -rm` gives the command its own user and mount namespace, where it may
bind-mount a folder read-only or mount a tiny tmpfs over it; nothing outside the
command sees either. Where namespaces are not allowed, the tests that need them skip.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conftest import imgclass_command  # noqa: E402


@functools.lru_cache(maxsize=1)
def namespaces() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=16k tmpfs /mnt"],
                           capture_output=True, timeout=30)  # fmt: skip
    return probe.returncode == 0


def need_namespaces() -> None:
    if not namespaces():
        pytest.skip("needs unprivileged user and mount namespaces (unshare -rm) for a real read-only or full disk")


def run_in(setup: str, *args, after: str = ":", env: dict | None = None, input: str | None = None,
           timeout: float = 300):  # fmt: skip
    """Run the installed imgclass after `setup` (shell, run as root of a private mount namespace).

    `after` runs in the same namespace once imgclass has ended (to look at what it left on
    a file system that vanishes with the namespace); the exit status is imgclass's.
    """
    need_namespaces()
    command = " ".join(shlex.quote(c) for c in [*imgclass_command(), *map(str, args)])
    script = f"set -e; {setup}; set +e; {command}; rc=$?; {after}; exit $rc"
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, input=input,
                          env={**os.environ, "NO_COLOR": "1", **(env or {})}, timeout=timeout)  # fmt: skip


def read_only(folder: Path) -> str:
    """Setup that makes `folder` (and all below it) a read-only file system."""
    quoted = shlex.quote(str(folder))
    return f"mount --bind {quoted} {quoted} && mount -o remount,bind,ro {quoted}"


def full_disk(folder: Path, kib: int) -> str:
    """Setup that mounts an empty tmpfs of `kib` KiB over `folder`: writing past it fails with ENOSPC."""
    return f"mount -t tmpfs -o size={kib}k tmpfs {shlex.quote(str(folder))}"
