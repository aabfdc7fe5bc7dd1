"""ReDoc and Swagger UI load in a real browser with a clean console: no error, no page error, no
content security policy violation and no request to another host (ReDoc's bundle used to draw
Redocly's logo from its CDN, which the policy blocked with an error on every load; the service
serves the bundle without that image, app/http/routes/docs.py). Swagger UI still offers a file
picker for the image uploads, whose schema names the file in OpenAPI 3.0's words too."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

from app.http.routes.docs import REDOC_SCRIPT_PATH
from tests.e2e.conftest import BROWSER_TIMEOUT_MS, screenshot

# Every `securitypolicyviolation` event of the page, kept where the test can read it; Playwright
# adds this script before the page's own, outside the page's policy.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


@dataclass
class Watched:
    page: object
    console: list[str] = field(default_factory=list)  # errors and warnings, and page errors
    elsewhere: list[str] = field(default_factory=list)  # requests to any other host

    def violations(self) -> list[str]:
        return self.page.evaluate("window.__violations")

    def assert_clean(self) -> None:
        assert self.violations() == [], "content security policy violations"
        assert self.console == [], "console errors"
        assert self.elsewhere == [], "requests to other hosts"


@pytest.fixture
def watched(browser, server, request):
    """A page that reaches the service alone and records what the test checks."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(BROWSER_TIMEOUT_MS)  # a bound on a hang, not a speed check
    page = context.new_page()
    seen = Watched(page)
    own_host = urlsplit(server).netloc

    def only_the_service(route):
        if urlsplit(route.request.url).netloc == own_host:
            route.continue_()
        else:
            seen.elsewhere.append(f"{route.request.resource_type} {route.request.url}")
            route.abort()

    page.route("**/*", only_the_service)
    page.add_init_script(RECORD_VIOLATIONS)
    page.on(
        "console",
        lambda message: (
            seen.console.append(f"{message.type}: {message.text}")
            if message.type in ("error", "warning")
            else None
        ),
    )
    page.on("pageerror", lambda error: seen.console.append(f"page error: {error}"))
    yield seen
    screenshot(page, request.node.name)
    context.close()


def test_redoc_loads_with_a_clean_console(watched, server):
    page = watched.page
    page.goto(server + "/redoc")
    page.locator("h2", has_text="Predict with iris").first.wait_for()
    footer = page.locator('a[href="https://redocly.com/redoc/"]')
    footer.wait_for()  # drawn with the sidebar; its logo was the image from the CDN
    page.wait_for_load_state("networkidle")
    assert footer.inner_text().strip() == "API docs by Redocly"
    assert footer.locator("img").count() == 0
    watched.assert_clean()


def test_swagger_ui_loads_with_a_clean_console_and_a_file_picker(watched, server):
    page = watched.page
    page.goto(server + "/docs")
    operation = page.locator("#operations-mnist-predict_upload_api_models_mnist_predict_post")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.locator('input[type="file"]').wait_for()
    page.wait_for_load_state("networkidle")
    watched.assert_clean()


def test_the_redoc_bundle_names_no_remote_image(app_client):
    response = app_client.get(REDOC_SCRIPT_PATH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert b"Redoc" in response.content
    assert b"cdn.redoc.ly" not in response.content
    again = app_client.get(REDOC_SCRIPT_PATH, headers={"if-none-match": response.headers["etag"]})
    assert again.status_code == 304
    assert app_client.head(REDOC_SCRIPT_PATH).status_code == 200
