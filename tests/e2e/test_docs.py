"""Swagger UI and ReDoc work with no internet: every request to another host is blocked, the
pages' scripts, styles and images load from the service alone, and the browser refuses nothing
under the content security policy (ReDoc's bundle is served without the logo it drew from its
CDN: tests/e2e/test_docs_pages.py)."""

from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import BROWSER_TIMEOUT_MS, screenshot

pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
)
from playwright.sync_api import expect

expect.set_options(timeout=BROWSER_TIMEOUT_MS)  # the machine's speed is not under test


@pytest.fixture
def offline_page(browser, server, request):
    """A page that can reach the service and nothing else; records what it tried elsewhere
    and every console message."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    page = context.new_page()
    own_host = urlsplit(server).netloc
    elsewhere: list[str] = []
    console: list[str] = []

    def only_the_service(route):
        if urlsplit(route.request.url).netloc == own_host:
            route.continue_()
        else:
            elsewhere.append(f"{route.request.resource_type} {route.request.url}")
            route.abort()

    page.route("**/*", only_the_service)
    page.on("console", lambda message: console.append(message.text))
    page.on("pageerror", lambda error: console.append(f"page error: {error}"))
    yield page, elsewhere, console
    screenshot(page, request.node.name)
    context.close()


def assert_clean(elsewhere: list[str], console: list[str]) -> None:
    assert elsewhere == [], "requests to other hosts"
    refused = [
        text
        for text in console
        if "Content Security Policy" in text
        or "page error" in text
        or ("error" in text.lower() and "Failed to load resource" not in text)
    ]
    assert refused == [], refused


def test_swagger_ui_runs_the_iris_example_offline(offline_page, server):
    page, elsewhere, console = offline_page
    page.goto(server + "/docs")
    operation = page.locator("#operations-iris-predict_api_models_iris_predict_post")
    expect(operation).to_be_visible()
    expect(page.locator(".opblock")).not_to_have_count(0)
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    status = operation.locator(".live-responses-table .response .response-col_status")
    expect(status).to_have_text("200")
    expect(operation.locator(".live-responses-table .microlight").first).to_contain_text('"label"')
    assert_clean(elsewhere, console)


def test_redoc_lists_the_operations_offline(offline_page, server):
    page, elsewhere, console = offline_page
    page.goto(server + "/redoc")
    expect(page.locator("h2").filter(has_text="Predict with iris").first).to_be_visible()
    assert_clean(elsewhere, console)
