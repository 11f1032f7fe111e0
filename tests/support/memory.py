"""Peak memory of a command: run it as the child of a small Python wrapper that reports the child's ru_maxrss.

An address-space limit (RLIMIT_AS) on the child keeps a regression from taking the machine
down with it: past the limit the command fails instead of swapping.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

_WRAPPER = """
import json, resource, subprocess, sys
limit = int(sys.argv[1])
def cap():
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
done = subprocess.run(sys.argv[2:], capture_output=True, text=True, preexec_fn=cap)
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr, "peak_mib": peak_kib / 1024}))
"""


def run_measured(command: list[str], address_space_mib: int = 6144, timeout: float = 300) -> dict:
    """{"rc", "stdout", "stderr", "peak_mib"} of `command` run under an address-space limit."""
    env = {**os.environ, "NO_COLOR": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _WRAPPER, str(address_space_mib << 20), *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=True,
    )
    return json.loads(done.stdout)
