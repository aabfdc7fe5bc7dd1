"""End-to-end fixtures: the service as a real uvicorn process, and a real headless Chromium.

Chromium is Debian's `chromium` package (Playwright's own browser download is not used), driven
by Playwright for Python. Where either is missing the browser tests skip and say which, except
in CI (`GLASSBOX_REQUIRE_BROWSER=1`, which .ci/run sets, or `CI=true`, as CI services set it):
there every browser test must run, and one that would skip fails instead, saying why.
"""

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import MODELS, ROOT
from tests.ops.server import serve

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
# The longest any browser step waits (an answer, a drawing, a page): a bound on a hang, never a
# measure of the machine's speed (Playwright's own default is 5 s).
BROWSER_TIMEOUT_MS = 120_000
SERVER_LOG = ARTIFACTS / "e2e-server.log"


def browser_required() -> bool:
    """In CI the browser tests must run: a skip there would hide a page nobody tested."""
    return (
        os.environ.get("GLASSBOX_REQUIRE_BROWSER") == "1"
        or os.environ.get("CI", "").lower() == "true"
    )


def _fail_a_skip(report) -> None:
    """Where the browser tests are required, turn a skip (a test's, a fixture's, or a whole
    module's at import) into a failure that gives the skip's reason."""
    if not (report.skipped and browser_required()) or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    report.outcome = "failed"
    report.longrepr = (
        f"{reason.removeprefix('Skipped: ')}: the browser tests must run here, not skip "
        "(GLASSBOX_REQUIRE_BROWSER=1 or CI=true)"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_a_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_a_skip(outcome.get_result())


def chromium_path() -> str | None:
    """GLASSBOX_CHROMIUM, else /usr/bin/chromium, else `chromium` on the PATH."""
    for candidate in (os.environ.get("GLASSBOX_CHROMIUM"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file():
            return candidate
    return shutil.which("chromium")


# Module scope, not session: Playwright's sync API keeps an asyncio loop running in the main
# thread while it is open, and later tests call asyncio.run().
@pytest.fixture(scope="module")
def sync_playwright():
    module = pytest.importorskip(
        "playwright.sync_api",
        reason="playwright is not installed (pip install -e '.[test]' installs it)",
    )
    return module.sync_playwright


@pytest.fixture(scope="module")
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


@pytest.fixture(scope="module")
def server(browser) -> str:
    """The service on a free loopback port, started by the real server command
    (deploy/serve.sh, as the container runs it), until the session ends. Yields its base URL once
    /health/ready says every model serves."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    env = {
        "GLASSBOX_MODEL_DIR": os.environ.get("GLASSBOX_E2E_MODEL_DIR", str(MODELS)),
        "PYTHONUNBUFFERED": "1",
        # The page sends requests together; behind a slow batch they must not time out.
        "GLASSBOX_REQUEST_TIMEOUT_S": str(BROWSER_TIMEOUT_MS // 1000),
    }
    with serve(SERVER_LOG, env, ready_timeout_s=READY_TIMEOUT_S) as running:
        yield running.base


@pytest.fixture
def page(browser, server, request):
    """A fresh desktop-sized page on `/`, with every model's panel built. Fails the test on
    any uncaught script error; saves a screenshot as tests/artifacts/<test>.png."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
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
