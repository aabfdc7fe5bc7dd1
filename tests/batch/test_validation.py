"""The scorer's column-wise checks of feature tables against the service's checks of one
instance at a time: the same rows refused, with the same reasons."""

import math

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from app.artifact.card import ModelCard
from app.batch.scoring import feature_rows
from app.http.schemas import features_model
from tests.batch.conftest import FEATURES

# Cells a file may hold: numbers as Arrow reads them, numbers only Python's float() reads, and
# what is missing, not a number, not finite or outside a feature's range.
CELLS = [None, "", "abc", "0x10", "1,5", " 1.5", "1_0", "+3", ".5", "5.", "nan", "-inf"]
CELLS += ["Infinity", "1e400", "1e-400", "-5", "1e6", "00012", "0", "-0"]


def one_at_a_time(card: ModelCard, cells: dict[str, object]) -> str | None:
    """Why the service refuses the row, checked alone: each cell read as Python reads a float,
    then the typed endpoint's own model (its range check and message) on what is usable."""
    problems, usable = [], {}
    for spec in card.input.features or []:
        cell = cells[spec.name]
        if cell is None:
            problems.append(f"{spec.name} is missing")
            continue
        try:
            value = float(str(cell))
        except ValueError:
            problems.append(f"{spec.name} is not a number (got {str(cell)[:40]!r})")
            continue
        if not math.isfinite(value):
            problems.append(f"{spec.name} must be a finite number (got {value})")
            continue
        usable[spec.name] = value
    # What is unusable stands in with the feature's mean, inside its range.
    instance = {spec.name: usable.get(spec.name, spec.mean) for spec in card.input.features or []}
    try:
        features_model(card).model_validate(instance)
    except ValidationError as refused:
        problems += [error["ctx"]["error"].args[0] for error in refused.errors()]
    return "; ".join(problems) or None


def spoiled(rows: np.ndarray, cells: list[object], seed: int) -> list[dict[str, object]]:
    """`rows` as dicts of cells, a third of them with one to three cells from `cells`."""
    rng = np.random.default_rng(seed)
    found = []
    for row in rows:
        values: dict[str, object] = {name: float(v) for name, v in zip(FEATURES, row, strict=True)}
        if rng.random() < 1 / 3:
            for name in rng.choice(FEATURES, size=rng.integers(1, 4), replace=False):
                values[str(name)] = cells[rng.integers(len(cells))]
        found.append(values)
    return found


def as_table(rows: list[dict[str, object]], text: bool) -> pa.Table:
    """Two record batches (a chunk read from two blocks), text cells or float ones."""

    def column(name: str, part: list[dict[str, object]]) -> pa.Array:
        values = [row[name] for row in part]
        if text:
            return pa.array([None if v is None else str(v) for v in values], pa.string())
        return pa.array(values, pa.float64())

    half = len(rows) // 2
    return pa.Table.from_batches(
        [
            pa.record_batch({name: column(name, part) for name in FEATURES})
            for part in (rows[:half], rows[half:])
        ]
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_text_cells_are_refused_as_the_service_refuses_each_row(
    housing_runtime, housing_rows, seed
):
    card = housing_runtime.loaded_card
    rows = spoiled(np.tile(housing_rows, (5, 1)), CELLS, seed)
    expected = {i: one_at_a_time(card, row) for i, row in enumerate(rows)}
    refused = {i: reason for i, reason in expected.items() if reason is not None}
    assert 0 < len(refused) < len(rows)

    accepted, refusals = feature_rows(card, as_table(rows, text=True))

    assert refusals == refused
    kept = [[float(str(rows[i][name])) for name in FEATURES] for i in expected if i not in refused]
    np.testing.assert_allclose(accepted, np.array(kept, dtype=np.float32), rtol=1e-6)


def test_numeric_columns_are_refused_as_the_service_refuses_each_row(housing_runtime, housing_rows):
    card = housing_runtime.loaded_card
    numbers = [None, math.nan, math.inf, -math.inf, -5.0, 1e6, 0.5]
    rows = spoiled(np.tile(housing_rows, (5, 1)), numbers, seed=3)
    expected = {i: one_at_a_time(card, row) for i, row in enumerate(rows)}

    _, refusals = feature_rows(card, as_table(rows, text=False))

    assert refusals == {i: reason for i, reason in expected.items() if reason is not None}
