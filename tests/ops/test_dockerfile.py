"""The Dockerfile: lint-clean, and it runs the server the way the tests run it."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ops.server import ROOT, SERVE_COMMAND, SERVE_SCRIPT

DOCKERFILE = ROOT / "Dockerfile"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending += line
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    return result


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail('hadolint is missing: python -m pip install -e ".[test]" installs it')
    return found


def test_hadolint_finds_nothing():
    result = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_entrypoint_is_the_command_the_tests_start():
    entrypoint = [args for keyword, args in final_stage() if keyword == "ENTRYPOINT"]
    assert len(entrypoint) == 1
    assert json.loads(entrypoint[0]) == SERVE_COMMAND  # exec form, word for word
    assert not [args for keyword, args in final_stage() if keyword == "CMD"]


def test_the_served_script_is_in_the_image_where_the_command_looks():
    stage = final_stage()
    workdir = [args for keyword, args in stage if keyword == "WORKDIR"][-1]
    copies = [args.split()[-2:] for keyword, args in stage if keyword == "COPY"]
    assert [SERVE_SCRIPT, f"./{SERVE_SCRIPT}"] in copies, copies
    assert workdir.startswith("/")
    script = (ROOT / SERVE_SCRIPT).read_text()
    assert re.search(r'^exec "\$\{PYTHON:-python\}" -m app\.serve app\.main:app', script, re.M)
    assert "--timeout-graceful-shutdown" in script


def test_runtime_stage_runs_unprivileged_and_checks_readiness():
    stage = final_stage()
    user = [args for keyword, args in stage if keyword == "USER"][-1]
    assert user.split(":")[0] not in ("0", "root")
    healthcheck = [args for keyword, args in stage if keyword == "HEALTHCHECK"]
    assert len(healthcheck) == 1
    assert "/health/ready" in healthcheck[0]
    assert "urllib" in healthcheck[0]
    assert all("pip install" not in args for keyword, args in stage if keyword == "RUN")


def test_dependencies_install_before_the_code_is_copied():
    steps = instructions()
    pip_install = next(i for i, (k, a) in enumerate(steps) if k == "RUN" and "pip install" in a)
    copies_before = [a for k, a in steps[:pip_install] if k == "COPY"]
    assert copies_before == ["pyproject.toml requirements.lock ./"]


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path or a folder above it decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatchcase(candidate, body) for candidate in candidates):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_data_caches_tests_and_runs_out():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for path in [
        "data/mnist/train.npz",
        "runs/catdog.log",
        "tests/conftest.py",
        ".git/HEAD",
        ".venv/bin/python",
        ".pytest_cache/v/cache",
        "app/__pycache__/main.cpython-311.pyc",
        "models/iris/1/__pycache__/x.pyc",
    ]:
        assert dockerignored(path, patterns), path
    for path in [
        "pyproject.toml",
        "app/main.py",
        "app/static/index.html",
        SERVE_SCRIPT,
        "models/iris/1/metadata.json",
    ]:
        assert not dockerignored(path, patterns), path
    # Every COPY source from the build context is in it.
    for keyword, args in instructions():
        if keyword == "COPY" and "--from" not in args:
            source = next(word for word in args.split() if not word.startswith("--"))
            assert not dockerignored(source, patterns), source
