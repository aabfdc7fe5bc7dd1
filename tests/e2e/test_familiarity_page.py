"""The page says when the model is guessing: "this doesn't look like a digit", with the score
against the threshold; and that an ordinary input looks like what the model knows."""

import numpy as np
import pytest
from PIL import Image

from tests.e2e.conftest import ARTIFACTS

pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
)
from playwright.sync_api import expect


def noise_png(path) -> str:
    pixels = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    Image.fromarray(pixels).resize((140, 140), Image.NEAREST).save(path, format="PNG")
    return str(path)


def test_noise_sent_to_mnist_does_not_look_like_a_digit(page, tmp_path):
    section = page.locator("#model-mnist")
    section.scroll_into_view_if_needed()
    section.locator("input[type=file]").set_input_files(noise_png(tmp_path / "noise.png"))
    note = page.locator("#m-mnist-answer .familiarity")
    expect(note).to_have_attribute("data-familiar", "false")
    expect(note).to_contain_text("This doesn't look like a digit.")
    expect(note).to_contain_text("above the threshold")
    note.scroll_into_view_if_needed()
    section.screenshot(path=str(ARTIFACTS / "familiarity-mnist-noise.png"))


def test_the_example_digit_looks_like_a_digit(page):
    section = page.locator("#model-mnist")
    section.get_by_role("button", name="Try the example digit").click()
    note = page.locator("#m-mnist-answer .familiarity")
    expect(note).to_have_attribute("data-familiar", "true")
    expect(note).to_contain_text("This looks like a digit.")


def test_an_odd_flower_says_which_measurement_is_outside_the_training_range(page):
    section = page.locator("#model-iris")
    section.locator("input[name=petal_length-number]").fill("9")
    note = page.locator("#m-iris-answer .familiarity")
    expect(note).to_have_attribute("data-familiar", "false")
    expect(note).to_contain_text("Outside the training range: petal_length.")
