"""app/ type-checks under mypy --strict (the settings are pyproject.toml's [tool.mypy])."""

import subprocess
import sys

from tests.ops.server import ROOT


def test_app_type_checks_strictly():
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
