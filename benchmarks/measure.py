"""Run one client process and measure it: wall time, CPU time and peak RSS (via ``os.wait4``).

The client is spawned by a small launcher (``drivers/launch.py``), so that its peak RSS is its own
and not the benchmark's (a forked child inherits the parent's high-water mark until it execs).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

LAUNCHER = Path(__file__).resolve().parent / "drivers" / "launch.py"


@dataclass(frozen=True)
class Measurement:
    """What one process cost. ``cpu`` is user + system time of the process and its waited-for children."""

    wall: float
    user: float
    sys: float
    rss_mib: float
    returncode: int
    timed_out: bool
    stderr_tail: str

    @property
    def cpu(self) -> float:
        return self.user + self.sys


def run(cmd: Sequence[str], env: Mapping[str, str], timeout: float, stderr_path: Path,
        cwd: Path | None = None) -> Measurement:
    """Run ``cmd`` (killing its process group after ``timeout`` s) and return its costs.

    ``os.wait4`` in the launcher reports the rusage of the client together with its own reaped
    children (``RUSAGE_BOTH`` on Linux), so wrappers that start another process are measured whole.
    """
    stderr_path.parent.mkdir(parents=True, exist_ok=True)
    out = stderr_path.with_suffix(".cost.json")
    out.unlink(missing_ok=True)
    timed_out = False
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-I", "-S", str(LAUNCHER), str(out), "--", *cmd], env=dict(env),
                                cwd=cwd, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)  # the launcher's own session: only what we started
            proc.wait(timeout=60)
    tail = stderr_path.read_bytes()[-2000:].decode(errors="replace").strip()
    if timed_out or not out.exists():
        return Measurement(float(timeout) if timed_out else 0.0, 0.0, 0.0, 0.0, proc.returncode or -1, timed_out,
                           tail or f"launcher exited {proc.returncode}")
    cost = json.loads(out.read_text())
    out.unlink()
    return Measurement(
        wall=cost["wall"],
        user=cost["user"],
        sys=cost["sys"],
        rss_mib=cost["maxrss_kib"] / 1024,  # KiB on Linux
        returncode=cost["returncode"],
        timed_out=False,
        stderr_tail=tail,
    )


@dataclass(frozen=True)
class Profile:
    """One pos3 run under pyinstrument: the text dump and where the sampled time went.

    ``shares`` is the fraction of sampled (non-idle) time whose innermost frame is in each package;
    ``top`` the functions with the most self time, as ``(name, fraction)``. Both come from the
    driver's JSON, so the page's sentences about a profile are generated from it.
    """

    scenario: str
    text: str
    seconds: float
    shares: dict[str, float]
    top: list[tuple[str, float]]
