"""The web page at `/`, end to end: a real Chromium drives the page against a real server.

Each test leaves a full-page screenshot in tests/artifacts/ (gitignored).
"""

import base64
import itertools
import re
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import FIXTURES
from tests.e2e.conftest import BROWSER_TIMEOUT_MS, screenshot

pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
)
from playwright.sync_api import expect

# Each answer waits on a model call and drawing on two busy cores: Playwright's 5 s default
# would make these tests a measure of the machine's speed.
expect.set_options(timeout=BROWSER_TIMEOUT_MS)

MODELS = ("catdog", "housing", "iris", "mnist")
# Strokes as fractions of the drawing canvas, drawn as a person would with a mouse.
DIGIT_STROKES = {
    "1": [[(0.52, 0.15), (0.50, 0.50), (0.48, 0.85)]],
    "7": [[(0.25, 0.18), (0.75, 0.18), (0.62, 0.45), (0.45, 0.85)]],
}


def _points(canvas, stroke) -> list[tuple[float, float]]:
    box = canvas.bounding_box()
    return [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in stroke]


def draw(page, canvas, strokes) -> None:
    for stroke in strokes:
        points = _points(canvas, stroke)
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point, steps=12)
        page.mouse.up()


def draw_with_finger(page, canvas, strokes) -> None:
    """Touch events through the DevTools protocol, as a phone sends them."""
    cdp = page.context.new_cdp_session(page)

    def touch(kind: str, point=None) -> None:
        points = [] if point is None else [{"x": point[0], "y": point[1], "id": 1}]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    for stroke in strokes:
        points = _points(canvas, stroke)
        touch("touchStart", points[0])
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            for step in range(1, 13):
                t = step / 12
                touch("touchMove", (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t))
        touch("touchEnd")
    cdp.detach()


def answer(page, model: str):
    return page.locator(f"#m-{model}-answer .answer")


def test_page_lists_every_model_with_its_card(page):
    for name in MODELS:
        section = page.locator(f"#model-{name}")
        expect(section.locator("h2")).to_contain_text(name)
        expect(section.locator(".metric")).to_contain_text(re.compile(r"Test (accuracy|rmse)"))
        expect(section.locator(".metric")).to_contain_text("target")
        expect(section.locator("details.layers summary")).to_contain_text("Layers")
        expect(section.locator(".panel")).to_be_visible()
    expect(page.locator("#model-nav a")).to_have_count(len(MODELS))
    expect(page.locator("#model-iris table.plain").first).to_contain_text("petal_length")


@pytest.mark.parametrize("digit", ["7", "1"])
def test_drawn_digit_is_read_with_its_trace(page, digit):
    section = page.locator("#model-mnist")
    section.scroll_into_view_if_needed()
    draw(page, section.locator("canvas.draw"), DIGIT_STROKES[digit])

    expect(answer(page, "mnist")).to_have_attribute("data-label", digit)
    expect(page.locator("#m-mnist-answer .probabilities li")).to_have_count(10)
    expect(section.locator(".seen canvas.map")).to_be_visible()
    # The full trace: feature maps for the convolutions, bars for the dense layer.
    conv = section.locator(".trace li[data-layer=conv_1]")
    expect(conv.locator("canvas.map")).to_have_count(32)
    expect(section.locator(".trace li[data-layer=dense] canvas.bars")).to_be_visible()
    expect(section.locator(".trace li[data-layer=probabilities] li.best")).to_have_attribute(
        "data-label", digit
    )


def test_example_digit_by_keyboard_alone(page):
    section = page.locator("#model-mnist")
    section.get_by_role("button", name="Try the example digit").focus()
    page.keyboard.press("Enter")
    expect(answer(page, "mnist")).to_have_attribute("data-label", re.compile(r"^[0-9]$"))
    expect(section.locator(".seen canvas.map")).to_be_visible()


def test_digit_drawn_with_a_finger_on_a_phone(browser, server):
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True
    )
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    page = context.new_page()
    try:
        page.goto(server + "/")
        page.wait_for_selector("body[data-ready=true]")
        canvas = page.locator("#model-mnist canvas.draw")
        canvas.scroll_into_view_if_needed()
        draw_with_finger(page, canvas, DIGIT_STROKES["7"])
        expect(answer(page, "mnist")).to_have_attribute("data-label", "7")
        expect(page.locator("#model-mnist .trace li[data-layer=flatten] canvas")).to_be_visible()
        screenshot(page, "phone-digit")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow}px wider than a phone screen"
    finally:
        context.close()


def _a_photo(server: str, label: str) -> Path:
    """The first committed `label` photo that the served model calls a `label`."""
    for path in sorted((FIXTURES / "catdog" / "test" / label).glob("*.jpg")):
        response = httpx.post(
            f"{server}/api/models/catdog/predict",
            files={"file": (path.name, path.read_bytes(), "image/jpeg")},
            timeout=BROWSER_TIMEOUT_MS / 1000,
        )
        response.raise_for_status()
        if response.json()["label"] == label:
            return path
    pytest.fail(f"the catdog model calls none of the committed {label} photos a {label}")


def test_uploaded_cat_photo_is_a_cat_with_feature_maps(page, server):
    photo = _a_photo(server, "cat")
    section = page.locator("#model-catdog")
    section.locator("input[type=file]").set_input_files(str(photo))

    expect(answer(page, "catdog")).to_have_attribute("data-label", "cat")
    expect(section.locator(".answer-p")).to_contain_text("%")
    expect(section.locator("img.preview")).to_be_visible()
    # The full trace: the photo as the model saw it, then the first convolutions' feature maps.
    expect(section.locator(".trace li[data-layer=rescale] canvas.map")).to_have_count(1)
    first_conv = section.locator(".trace li.layer").filter(has_text="Conv2D").first
    expect(first_conv.locator("canvas.map").first).to_be_visible()
    expect(first_conv.locator("canvas.map")).to_have_count(16)
    expect(section.locator(".trace-status")).to_have_text("")


def test_dropped_photo_is_answered(page, server):
    photo = _a_photo(server, "dog")
    section = page.locator("#model-catdog")
    section.scroll_into_view_if_needed()
    # A drag and drop from the desktop, as the browser delivers it: a DataTransfer with a file.
    page.evaluate(
        """([data, name]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const files = new DataTransfer();
            files.items.add(new File([bytes], name, { type: "image/jpeg" }));
            const zone = document.querySelector("#model-catdog .dropzone");
            for (const type of ["dragenter", "dragover", "drop"]) {
                const init = { dataTransfer: files, bubbles: true, cancelable: true };
                zone.dispatchEvent(new DragEvent(type, init));
            }
        }""",
        [base64.b64encode(photo.read_bytes()).decode(), photo.name],
    )
    expect(answer(page, "catdog")).to_have_attribute("data-label", "dog")
    expect(section.locator("img.preview")).to_have_attribute("alt", re.compile(photo.name))


def test_moving_iris_sliders_changes_the_answer(page):
    section = page.locator("#model-iris")
    section.scroll_into_view_if_needed()
    label = answer(page, "iris")
    expect(label).to_have_count(1)
    # Keyboard: Home and End move a slider to its ends, firing input events as a drag does.
    for feature in ("petal_length", "petal_width"):
        section.locator(f"input[type=range][name={feature}]").press("Home")
    expect(label).to_have_attribute("data-label", "setosa")
    for feature in ("petal_length", "petal_width"):
        section.locator(f"input[type=range][name={feature}]").press("End")
    expect(label).to_have_attribute("data-label", "virginica")
    expect(section.locator("input[name=petal_width-number]")).not_to_have_value("")

    # The walk-through: input, normalize, x @ kernel + bias with its weights, ReLU, the
    # temperature (a fixed Dense, kernel I/T), softmax.
    steps = section.locator(".walkthrough > li")
    expect(steps.first).to_have_attribute("data-layer", "input")
    expect(section.locator("table.matrix")).to_have_count(3)
    expect(section.locator(".walkthrough")).to_contain_text("x @ kernel + bias")
    temperature = section.locator(".walkthrough li[data-layer=temperature]")
    expect(temperature).to_contain_text("x / T")
    temperature.screenshot(
        path=str(screenshot(page, "iris-walkthrough").with_suffix(".temperature.png"))
    )
    expect(section.locator(".walkthrough")).to_contain_text("max(0, x)")
    expect(section.locator(".walkthrough li[data-layer=softmax]")).to_contain_text("virginica")


def test_housing_answer_follows_income(page):
    section = page.locator("#model-housing")
    section.scroll_into_view_if_needed()
    value = answer(page, "housing")
    expect(value).to_contain_text("$")
    slider = section.locator("input[type=range][name=MedInc]")

    def after(key: str, before: str) -> float:
        slider.press(key)
        expect(value).not_to_have_attribute("data-value", before)
        return float(value.get_attribute("data-value"))

    low = after("Home", value.get_attribute("data-value"))
    high = after("End", str(value.get_attribute("data-value")))
    assert high > low, f"the highest income gave {high}, the lowest {low}"


def test_api_error_is_shown_in_plain_words(page, tmp_path):
    text_file = tmp_path / "notes.txt"
    text_file.write_text("this is not a picture\n")
    section = page.locator("#model-mnist")
    section.locator("input[type=file]").set_input_files(str(text_file))
    error = page.locator("#m-mnist-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("not an image the model can read")
    expect(error).to_contain_text("supported format")


def test_out_of_range_number_is_refused_in_plain_words(page):
    section = page.locator("#model-iris")
    section.locator("input[name=sepal_length-number]").fill("500")
    error = page.locator("#m-iris-error")
    expect(error).to_contain_text("The model refused the input")
    expect(error).to_contain_text("sepal_length must be between")


def test_every_control_has_a_label(page):
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, button, select, textarea')]
            .filter((e) => !(e.labels?.length || e.getAttribute('aria-label')
                             || e.textContent.trim()))
            .map((e) => e.outerHTML)"""
    )
    assert unlabelled == []


# The parts of a model's panel, each a box on the page that nothing else may cover.
PANEL_PARTS = ".panel .try, .panel .result, .panel .trace-section"


def overlapping_parts(page, model: str) -> list[str]:
    """Pairs of the model panel's parts whose boxes, as drawn now, intersect."""
    return page.evaluate(
        """([model, selector]) => {
            const parts = [...document.querySelectorAll(`#model-${model} ` +
                selector.split(", ").join(`, #model-${model} `))];
            const boxes = parts.map((part) => [part.className, part.getBoundingClientRect()]);
            const found = [];
            for (let i = 0; i < boxes.length; i++) {
                for (let j = i + 1; j < boxes.length; j++) {
                    const [a, r] = boxes[i], [b, s] = boxes[j];
                    if (r.left < s.right - 1 && s.left < r.right - 1 &&
                        r.top < s.bottom - 1 && s.top < r.bottom - 1) found.push(`${a} / ${b}`);
                }
            }
            return found;
        }""",
        [model, PANEL_PARTS],
    )


@pytest.mark.parametrize("model", ["mnist", "catdog", "iris"])
def test_the_answer_never_covers_the_trace_while_scrolling(browser, server, model):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    page = context.new_page()
    page.goto(server + "/")
    page.wait_for_selector("body[data-ready=true]")
    section = page.locator(f"#model-{model}")
    section.scroll_into_view_if_needed()
    if model == "mnist":
        draw(page, section.locator("canvas.draw"), DIGIT_STROKES["7"])
    elif model == "catdog":
        section.get_by_role("button", name="Try the example photo").click()
    expect(answer(page, model)).to_be_visible()
    expect(section.locator(".trace-area")).not_to_be_empty()
    top = section.evaluate("node => node.getBoundingClientRect().top + window.scrollY")
    bottom = section.evaluate("node => node.getBoundingClientRect().bottom + window.scrollY")
    for y in range(int(top), int(bottom), 250):  # through the whole panel, trace included
        page.evaluate("y => window.scrollTo(0, y)", y)
        assert overlapping_parts(page, model) == [], f"at scroll {y}"
    screenshot(page, f"scrolled-{model}")
    context.close()


def test_iris_explanation_shows_signed_bars_and_the_counterfactual(page):
    section = page.locator("#model-iris")
    section.scroll_into_view_if_needed()
    for feature in ("petal_length", "petal_width"):
        section.locator(f"input[type=range][name={feature}]").press("End")
    expect(answer(page, "iris")).to_have_attribute("data-label", "virginica")
    why = section.locator(".explain-section")
    expect(why.locator(".attributions li")).to_have_count(4)
    expect(why.locator(".attribution-bar.up").first).to_be_visible()
    expect(why.locator(".counterfactual")).to_contain_text("would make it")
    expect(why.locator(".note")).to_contain_text("training mean")
    expect(section.locator(".explanation-methods")).to_have_text(
        "Explanations: integrated gradients."
    )
    screenshot(page, "explained-iris")


def test_digit_explanation_is_an_overlay_and_the_method_can_be_switched(page):
    section = page.locator("#model-mnist")
    section.scroll_into_view_if_needed()
    expect(section.locator(".explanation-methods")).to_contain_text("grad cam")
    section.get_by_role("button", name="Try the example digit").click()
    expect(answer(page, "mnist")).to_have_attribute("data-label", "7")
    overlay = section.locator(".explain-section img.overlay")
    expect(overlay).to_be_visible()
    expect(overlay).to_have_attribute("alt", re.compile("Integrated gradients"))
    section.locator("select[aria-label='Explanation method']").select_option("grad_cam")
    expect(overlay).to_have_attribute("alt", re.compile("Grad-CAM"))
    # The overlay is an image the browser decoded, not a broken one.
    width = overlay.evaluate("image => image.naturalWidth")
    assert width >= 28
    screenshot(page, "explained-mnist")


@pytest.mark.parametrize("model", ["mnist", "iris", "catdog"])
def test_classifier_card_shows_its_reliability_table(page, model):
    details = page.locator(f"#model-{model} details.calibration")
    expect(details.locator("summary")).to_contain_text(re.compile(r"temperature [0-9.]+ · ECE"))
    details.locator("summary").click()
    table = details.locator("table.reliability")
    expect(table).to_be_visible()
    expect(table.locator("thead")).to_contain_text("before (T = 1)")
    expect(table.locator("thead")).to_contain_text("accuracy")
    expect(table.locator("tbody tr").first).to_be_visible()
    expect(details.locator("canvas.reliability-diagram")).to_be_visible()
    expect(details.locator(".ece-interval")).to_contain_text("95% interval")
    if model == "iris":
        expect(details.locator(".ece-interval")).to_contain_text("out-of-fold")
    expect(page.locator("#model-housing details.calibration")).to_have_count(0)
    details.scroll_into_view_if_needed()
    details.screenshot(path=str(screenshot(page, f"calibration-{model}").with_suffix(".table.png")))


def test_every_model_shows_its_drift_and_housing_its_figures_after_traffic(page, server):
    for name in MODELS:
        expect(page.locator(f"#model-{name} .drift h3")).to_contain_text("Traffic drift")
    panel = page.locator("#model-housing .drift")
    with np.load(FIXTURES / "housing_sample.npz") as data:
        rows = data["x_test"]
    card = httpx.get(f"{server}/api/models/housing/card", timeout=60).json()
    names = [feature["name"] for feature in card["input"]["features"]]
    # Twice the 500 held-out rows: the window's 1,000 places hold them and nothing else.
    for start in range(0, 2 * len(rows), 250):
        chunk = rows[start % len(rows) :][:250]
        instances = [dict(zip(names, map(float, row), strict=True)) for row in chunk]
        response = httpx.post(
            f"{server}/api/models/housing/predict", json={"instances": instances}, timeout=60
        )
        assert response.status_code == 200
    panel.locator("button.drift-refresh").click()
    expect(panel.locator(".drift-summary")).to_contain_text("every figure under its threshold")
    expect(panel.locator("canvas.drift-bars")).to_be_visible()
    # The features, the prediction and the familiarity scores.
    expect(panel.locator(".drift-names li")).to_have_count(len(names) + 2)
    panel.scroll_into_view_if_needed()
    panel.screenshot(path=str(screenshot(page, "drift-housing").with_suffix(".panel.png")))
