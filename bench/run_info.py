"""The run header both harnesses (`python -m bench`, `python -m bench.soak`) record.

When the run started, which code it ran (the git commit, marked when the tree differs from it)
and the machine's facts. Taken once, before any server starts: the servers import the code as
it is then, whatever changes during the run.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.servers import ROOT

DIRTY = " (uncommitted changes)"


def git_commit(root: Path = ROOT) -> str:
    """HEAD's short hash in `root`, `DIRTY` appended when `git status` lists anything (tracked
    changes or untracked files git does not ignore: both change what a server imports);
    'unknown' outside a git checkout or without git."""

    def git(*command: str) -> str:
        return subprocess.run(
            ["git", *command], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (DIRTY if dirty else "")


def loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, rounded; None where the OS has none."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def cpus_usable() -> int | None:
    """The cores this process may run on (its affinity), os.cpu_count() where unknown."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


@dataclass(frozen=True)
class RunHeader:
    started: dt.datetime  # local time, with its zone
    commit: str
    cpu_count: int | None
    cpus_usable: int | None
    loadavg_start: list[float] | None
    platform: str  # platform.platform()
    machine: str  # platform.machine(), e.g. x86_64
    python: str

    def as_dict(self) -> dict:
        """The header as JSON fields (`date` as ISO 8601, to the second)."""
        return {
            "date": self.started.isoformat(timespec="seconds"),
            "commit": self.commit,
            "cpu_count": self.cpu_count,
            "cpus_usable": self.cpus_usable,
            "loadavg_start": self.loadavg_start,
            "platform": self.platform,
            "machine": self.machine,
            "python": self.python,
        }


def run_header(root: Path = ROOT) -> RunHeader:
    """The header of a run starting now, of the code in `root`."""
    return RunHeader(
        started=dt.datetime.now().astimezone(),
        commit=git_commit(root),
        cpu_count=os.cpu_count(),
        cpus_usable=cpus_usable(),
        loadavg_start=loadavg(),
        platform=platform.platform(),
        machine=platform.machine(),
        python=platform.python_version(),
    )
