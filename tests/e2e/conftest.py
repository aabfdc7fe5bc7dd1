"""End-to-end fixtures: the service as a real uvicorn process, and a real headless Chromium.

Chromium is Debian's `chromium` package (Playwright's own browser download is not used), driven
by Playwright for Python. Where either is missing the browser tests skip and say which.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import MODELS, ROOT

ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Loading (and hash-checking) all four models on a busy 2-core machine takes a while.
READY_TIMEOUT_S = 240
SERVER_LOG = ARTIFACTS / "e2e-server.log"


def chromium_path() -> str | None:
    """GLASSBOX_CHROMIUM, else /usr/bin/chromium, else `chromium` on the PATH."""
    for candidate in (os.environ.get("GLASSBOX_CHROMIUM"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file():
            return candidate
    return shutil.which("chromium")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _log_tail(lines: int = 40) -> str:
    if not SERVER_LOG.exists():
        return ""
    return "\n".join(SERVER_LOG.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="session")
def sync_playwright():
    module = pytest.importorskip(
        "playwright.sync_api",
        reason="playwright is not installed (pip install -e '.[test]' installs it)",
    )
    return module.sync_playwright


@pytest.fixture(scope="session")
def browser(sync_playwright):
    executable = chromium_path()
    if executable is None:
        pytest.skip("Chromium is not installed (apt-get install chromium; .ci/run does it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def server(browser) -> str:
    """The service on a free loopback port, from `python -m uvicorn app.main:app`, until the
    session ends. Yields its base URL once /health/ready says every model serves."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    # Only the test's own settings: no API keys or model filter from the calling shell.
    env = {key: value for key, value in os.environ.items() if not key.startswith("GLASSBOX_")}
    env |= {
        "GLASSBOX_MODEL_DIR": os.environ.get("GLASSBOX_E2E_MODEL_DIR", str(MODELS)),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "uvicorn", "app.main:app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    with SERVER_LOG.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(process, base)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_ready(process: subprocess.Popen, base: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{_log_tail()}")
        try:
            response = httpx.get(f"{base}/health/ready", timeout=2)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:300]}"
        except httpx.TransportError as error:
            last = repr(error)
        time.sleep(0.5)
    pytest.fail(f"the server was not ready in {READY_TIMEOUT_S} s ({last}):\n{_log_tail()}")


@pytest.fixture
def page(browser, server, request):
    """A fresh desktop-sized page on `/`, with every model's panel built. Fails the test on
    any uncaught script error; saves a screenshot as tests/artifacts/<test>.png."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server + "/")
    page.wait_for_selector("body[data-ready=true]")
    yield page
    screenshot(page, request.node.name)
    context.close()
    assert not errors, f"script errors on the page: {errors}"


def screenshot(page, name: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
    path = ARTIFACTS / f"{safe}.png"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path
