"""Triton's perf_analyzer, for tests/clients/test_triton_tools.py and a row of
`python -m bench.protocols`: the binary the tritonclient 2.41.0 wheel ships (later wheels no
longer carry it), taken from that wheel by its pinned hash into a cache folder; it needs Debian's
libb64-0d (`.ci/run` installs it) and the CUDA runtime library of nvidia-cuda-runtime-cu12 (in
the test extra) to start, though it runs on CPU.

The wheel cannot be installed beside the tritonclient the lock pins, so it is downloaded on its
own and only the binary is unpacked from it.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "tritonclient-2.41.0-py3-none-manylinux1_x86_64.whl"
WHEEL_SHA256 = "cf4ed5df836fa99937678a9fd852f86ba05c7b83656dd0a540e20afdb9ab4629"
MEMBER = "tritonclient-2.41.0.data/data/bin/perf_analyzer"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "glassbox"


class Unavailable(Exception):
    """Why perf_analyzer cannot run on this machine."""


def _cuda_runtime_dir() -> Path:
    spec = importlib.util.find_spec("nvidia.cuda_runtime")
    if spec is None or not spec.submodule_search_locations:
        raise Unavailable("nvidia-cuda-runtime-cu12 is not installed (the test extra has it)")
    return Path(next(iter(spec.submodule_search_locations))) / "lib"


def _libb64_present() -> bool:
    # /sbin is not on every PATH (a non-root user's, a clean `env -i`); .ci/run looks there too.
    ldconfig = shutil.which("ldconfig") or shutil.which("ldconfig", path="/sbin:/usr/sbin")
    if ldconfig is None:
        return False
    found = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, check=False)
    return "libb64.so.0d" in found.stdout


def perf_analyzer() -> tuple[Path, dict[str, str]]:
    """The binary and the environment it starts in; Unavailable says why not."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        raise Unavailable(f"the wheel's binary is for Linux x86-64, not {platform.machine()}")
    if not _libb64_present():
        raise Unavailable("Debian's libb64-0d is missing (apt-get install libb64-0d)")
    environment = os.environ | {"LD_LIBRARY_PATH": str(_cuda_runtime_dir())}
    binary = CACHE / "perf_analyzer-2.41.0" / "perf_analyzer"
    if not binary.is_file():
        _unpack(binary)
    return binary, environment


def _unpack(binary: Path) -> None:
    download = CACHE / "wheels"
    download.mkdir(parents=True, exist_ok=True)
    requirement = download / "perf_analyzer.txt"
    requirement.write_text(f"tritonclient==2.41.0 --hash=sha256:{WHEEL_SHA256}\n")
    fetched = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--require-hashes",
            "--only-binary=:all:",
            "--platform",
            "manylinux1_x86_64",
            "-r",
            str(requirement),
            "-d",
            str(download),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if fetched.returncode != 0 or not (download / WHEEL).is_file():
        raise Unavailable(f"the tritonclient 2.41.0 wheel could not be fetched: {fetched.stderr}")
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_suffix(".partial")
    with zipfile.ZipFile(download / WHEEL) as wheel, partial.open("wb") as out:
        out.write(wheel.read(MEMBER))
    partial.chmod(0o755)
    partial.replace(binary)  # whole or not at all, for a test run that was cut off


def measure(
    binary: Path,
    environment: dict[str, str],
    *,
    model: str,
    url: str,
    protocol: str,
    rows: int,
    concurrency: int,
    seconds: float,
) -> dict:
    """One perf_analyzer run at one concurrency: requests a second (each of `rows` rows, its
    random inputs), p50 and p99 in ms, and whether it failed. Three windows of `seconds`, with
    a stability bound no busy machine misses, so every run ends after them."""
    with tempfile.TemporaryDirectory() as folder:
        table = Path(folder) / "perf.csv"
        command = [str(binary), "-m", model, "-u", url, "-i", protocol, "-b", str(rows)]
        command += ["--concurrency-range", str(concurrency)]
        command += ["--measurement-interval", str(round(seconds * 1000))]
        command += ["--stability-percentage", "1000", "-f", str(table)]
        done = subprocess.run(
            command, env=environment, capture_output=True, text=True, timeout=600, check=False
        )
        if done.returncode != 0 or not table.is_file():
            sys.stderr.write(done.stdout[-2000:] + done.stderr[-2000:])
            return {"rps": None, "p50_ms": None, "p99_ms": None, "errors": 1}
        with table.open() as lines:
            (measured,) = list(csv.DictReader(lines))
    return {
        "rps": float(measured["Inferences/Second"]) / rows,
        "p50_ms": int(measured["p50 latency"]) / 1000,
        "p99_ms": int(measured["p99 latency"]) / 1000,
        "errors": 0,
    }
