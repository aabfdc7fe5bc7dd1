"""`python -m bench.explanations`: the explanation numbers in docs/api.md and the closing note,
on the committed models: integrated gradients' completeness (worst and median relative error of
20 inputs, at each model's default steps and at a quarter of them) and the deletion test on 50
MNIST test digits for every image method. The inputs are those tests/service/test_explain.py
asserts on (tests/fixtures), so the table and the test see the same cases."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from app.artifact import imaging
from app.dataplane import explain
from app.runtime.model import ModelRuntime

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def load(name: str) -> ModelRuntime:
    runtime = ModelRuntime(name, 1, ROOT / "models" / name / "1")
    runtime.load()
    return runtime


def inputs(name: str, runtime: ModelRuntime, count: int) -> np.ndarray:
    card = runtime.loaded_card
    if name in ("mnist", "housing"):
        with np.load(FIXTURES / f"{name}_sample.npz") as data:
            return data["x_test"][:count].astype(np.float32)
    if name == "iris":
        rng = np.random.default_rng(0)
        specs = card.input.features or []
        return np.array(
            [[s.observed_min + rng.random() * (s.observed_max - s.observed_min) for s in specs]
             for _ in range(count)],
            np.float32,
        )  # fmt: skip
    photos = sorted((FIXTURES / "catdog").rglob("*.jpg"))[:count]
    return np.stack(
        [
            imaging.preprocess(
                imaging.decode(p.read_bytes(), max_bytes=10**7, max_pixels=10**8),
                card.input.image_spec,
            )
            for p in photos
        ]
    ).astype(np.float32)


def completeness(runtime: ModelRuntime, rows: np.ndarray, steps: int) -> list[tuple[float, float]]:
    """Per row: (|sum of the attributions - the output's change from the baseline|, the
    change's size)."""
    found = []
    for row in rows:
        output = explain.target_index(runtime.loaded_card, runtime.predict(row[None])[0], None)
        attribution = explain.integrated_gradients(runtime, row, output, steps)
        assert attribution.output is not None
        assert attribution.baseline_output is not None
        change = attribution.output - attribution.baseline_output
        found.append((abs(float(attribution.values.sum()) - change), abs(change)))
    return found


def relative_errors(found: list[tuple[float, float]]) -> list[float]:
    return [error / max(change, 1e-6) for error, change in found]


def attribute(runtime: ModelRuntime, row: np.ndarray, label: int, method: str) -> np.ndarray:
    if method == "integrated_gradients":
        return explain.integrated_gradients(runtime, row, label, 128).values
    if method == "gradient_x_input":
        return explain.gradient_x_input(runtime, row, label).values
    if method == "smoothgrad":
        return explain.smoothgrad(runtime, row, label, 32).values
    return explain.grad_cam(runtime, row, label).values


def deletion(runtime: ModelRuntime, rows: np.ndarray, method: str) -> tuple[float, float]:
    """Mean drop of the predicted class's probability when the 10% most attributed pixels are
    blanked, and when 10% chosen at random are."""
    rng = np.random.default_rng(0)
    count = int(0.1 * rows[0].size)
    top, random = [], []
    for row in rows:
        probabilities = runtime.predict(row[None])[0]
        label = int(np.argmax(probabilities))
        values = attribute(runtime, row, label, method)
        for chosen, drops in (
            (np.argsort(values.reshape(-1))[::-1][:count], top),
            (rng.choice(row.size, count, replace=False), random),
        ):
            blanked = row.reshape(-1).copy()
            blanked[chosen] = 0
            after = runtime.predict(blanked.reshape(row.shape)[None])[0][label]
            drops.append(float(probabilities[label] - after))
    return float(np.mean(top)), float(np.mean(random))


def say(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> int:
    say("| model | steps | worst relative error | median | worst absolute error |")
    say("| --- | --- | --- | --- | --- |")
    runtimes = {name: load(name) for name in ("iris", "housing", "mnist", "catdog")}
    for name, runtime in runtimes.items():
        rows = inputs(name, runtime, 20)
        default = explain.default_steps(runtime.loaded_card)
        for steps in (default // 4, default):
            found = completeness(runtime, rows, steps)
            errors = relative_errors(found)
            worst = max(error for error, _ in found)
            say(f"| {name} | {steps} | {max(errors):.2%} | {np.median(errors):.3%} | {worst:.4f} |")
    say()
    say("| method | top 10% blanked | random 10% blanked |")
    say("| --- | --- | --- |")
    digits = inputs("mnist", runtimes["mnist"], 50)
    for method in explain.IMAGE_METHODS:
        top, random = deletion(runtimes["mnist"], digits, method)
        say(f"| {method} | {top:.3f} | {random:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
