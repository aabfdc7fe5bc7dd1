"""The page shows a model's rollout: labels, the canary split and the shadow's disagreement,
from a real server with two iris versions and a rollout file."""

import json

import httpx
import pytest

from tests.e2e.conftest import ARTIFACTS, BROWSER_TIMEOUT_MS, READY_TIMEOUT_S, screenshot
from tests.ops.server import serve, wait_for
from tests.rollout_models import FLOWERS, IRIS, add_version

pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
)
from playwright.sync_api import expect

expect.set_options(timeout=BROWSER_TIMEOUT_MS)  # the machine's speed is not under test

ROLLOUT = {
    "labels": {"stable": 1, "canary": 2},
    "weights": {"1": 90, "2": 10},
    "shadow": {"version": 2, "fraction": 1.0},
}


@pytest.fixture(scope="module")
def rollout_server(browser, tmp_path_factory, iris_v2):
    root = tmp_path_factory.mktemp("rollout-models")
    add_version(root, IRIS, 1)
    add_version(root, iris_v2, 2)
    (root / "iris" / "rollout.json").write_text(json.dumps(ROLLOUT))
    env = {
        "GLASSBOX_MODEL_DIR": str(root),
        "GLASSBOX_POLL_INTERVAL_S": "0",
        # Every copy must be compared, however long a busy machine takes to compute it.
        "GLASSBOX_SHADOW_TIMEOUT_S": "120",
    }
    with serve(ARTIFACTS / "e2e-rollout-server.log", env, READY_TIMEOUT_S) as running:
        names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
        with httpx.Client(base_url=running.base, timeout=60) as client:

            def compared() -> int:
                return client.get("/api/models/iris/rollout").json()["shadow"]["compared_rows"]

            for done, row in enumerate(FLOWERS, start=1):
                body = dict(zip(names, row.tolist(), strict=True))
                # Version 1 serves these (named by label), so each is copied to the shadow.
                answer = client.post("/api/models/iris/predict?label=stable", json=body)
                assert answer.status_code == 200, answer.text
                # Each copy compared before the next request: a copy offered while too many
                # are still computing (a busy machine) would be dropped, not compared.
                wait_for(lambda done=done: compared() == done, f"the shadow comparing {done}")
        yield running.base


def test_the_page_shows_labels_split_and_shadow_disagreement(browser, rollout_server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(rollout_server + "/")
    page.wait_for_selector("body[data-ready=true]")
    rollout = page.locator("#model-iris .rollout")
    expect(rollout.locator("h3")).to_have_text("Rollout")
    expect(rollout.locator(".rollout-labels")).to_contain_text("canary → v2")
    expect(rollout.locator(".rollout-labels")).to_contain_text("stable → v1")
    expect(rollout.locator(".rollout-split")).to_contain_text("v1 90.0 %, v2 10.0 %")
    table = rollout.locator("table.rollout-shadow")
    expect(table.locator("caption")).to_contain_text("v2 answers 100.0 % of v1's requests")
    expect(table).to_contain_text(f"Compared rows{len(FLOWERS)}")
    expect(table).to_contain_text("Top class changed")
    rollout.scroll_into_view_if_needed()
    screenshot(page, "rollout-page")
    context.close()
    assert not errors, errors
