"""The one scoring function of batch jobs: `Scorer.score`, a chunk of inputs in (an Arrow table:
the id column and the card's feature columns, or the id column and an `image` column of file
bytes), the predictions and the rejects out. The command line (`app.batch.cli`) and the
distributed job (`app.batch.distributed`) both call it.

Each input is checked as the service checks a request: a tabular row's values must be numbers,
finite and within the card's accepted range (`app.dataplane.inputs.range_refusals`, the typed
endpoints' own message); an image file is opened, checked and preprocessed by
`Inputs.image_array`, the upload route's code. A refused input goes to the rejects with the
reason, never dropped. What passes is scored in one call of the model per chunk.

The prediction's columns are made by a list of column makers (`Scorer.makers`), each a function
of the chunk's accepted rows and the model's outputs with their familiarity scores, which come
from the same model call (`ModelRuntime.predict_scored`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.artifact.card import ModelCard
from app.artifact.familiarity import Scores
from app.core.errors import BadInput, GlassboxError
from app.core.settings import Settings
from app.dataplane import explain, familiarity
from app.dataplane.inputs import Inputs, range_refusals
from app.runtime.model import ModelRuntime, ScoredOutputs

# Text that Arrow's cast reads as Python's float() does (to the same value; Arrow reads
# fewer forms than Python, never more).
PLAIN_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
IMAGE_COLUMN = "image"  # the file bytes of an image model's input table
REASON_COLUMN = "reason"  # why a rejected input was refused

# A column maker: (the accepted rows as the model took them, the model's outputs and their
# familiarity scores) to columns.
ColumnMaker = Callable[[np.ndarray, ScoredOutputs], dict[str, pa.Array]]


@dataclass
class Scored:
    predictions: pa.Table  # the id column, then each maker's columns: one row per accepted input
    rejects: pa.Table  # the id column and `reason`: one row per refused input


class Scorer:
    def __init__(
        self,
        runtime: ModelRuntime,
        settings: Settings,
        id_column: str,
        *,
        explain_top: int = 0,
        explain_steps: int | None = None,
        with_familiarity: bool = False,
    ):
        self.runtime = runtime
        self.card = card = runtime.loaded_card
        self.id_column = id_column
        self.inputs = Inputs(settings)
        self.makers: list[ColumnMaker] = [prediction_columns(card)]
        if explain_top:
            self.makers.append(attribution_columns(runtime, settings, explain_top, explain_steps))
        self.with_familiarity = with_familiarity
        if with_familiarity:
            self.makers.append(familiarity_columns(runtime))
        self._decoders: ThreadPoolExecutor | None = None

    def warm_up(self, rows: int) -> None:
        """The model function this scorer calls, called once at `rows` rows (a chunk's size)."""
        self._outputs(self.runtime.zeros(rows))

    def score(self, table: pa.Table) -> Scored:
        """The predictions and the rejects of one chunk, in the input's order."""
        ids = table.column(self.id_column)
        if self.card.input.kind == "features":
            rows, refusals = feature_rows(self.card, table)
        else:
            rows, refusals = self._image_rows(table.column(IMAGE_COLUMN).to_pylist())
        refused = np.zeros(table.num_rows, dtype=bool)
        refused[list(refusals)] = True
        outputs = self._outputs(rows) if len(rows) else self._no_outputs()
        columns = {self.id_column: ids.filter(pa.array(~refused))}
        for maker in self.makers:
            columns.update(maker(rows, outputs))
        rejects = pa.table(
            {
                self.id_column: ids.filter(pa.array(refused)),
                REASON_COLUMN: pa.array(list(refusals.values()), type=pa.string()),
            }
        )
        return Scored(pa.table(columns), rejects)

    def _outputs(self, rows: np.ndarray) -> ScoredOutputs:
        if self.with_familiarity:
            return self.runtime.predict_scored(rows)
        # Not asked for, the familiarity score is not paid for (a third of housing's time).
        return ScoredOutputs(self.runtime.predict(rows))

    def close(self) -> None:
        if self._decoders is not None:
            self._decoders.shutdown()

    def _image_rows(self, files: list[bytes | None]) -> tuple[np.ndarray, dict[int, str]]:
        """Each file opened, checked and preprocessed as an upload is, on a few threads (Pillow
        decodes without the interpreter's lock)."""
        if self._decoders is None:
            self._decoders = ThreadPoolExecutor(min(4, os.cpu_count() or 1), "batch-decode")
        results = list(self._decoders.map(self._image_row, files))
        refusals = {row: reason for row, (_, reason) in enumerate(results) if reason is not None}
        arrays = [array for array, _ in results if array is not None]
        shape = [0, *cast(list[int], self.card.input.shape[1:])]
        rows = np.concatenate(arrays) if arrays else np.zeros(shape, dtype=np.float32)
        return rows, refusals

    def _image_row(self, data: bytes | None) -> tuple[np.ndarray | None, str | None]:
        if data is None:
            return None, "The file could not be read."
        try:
            return self.inputs.image_array(self.card, data), None
        except GlassboxError as error:
            return None, error.message

    def _no_outputs(self) -> ScoredOutputs:
        width = len(self.card.output.labels or []) or 1
        return ScoredOutputs(np.zeros([0, width], dtype=np.float32))


def feature_rows(card: ModelCard, table: pa.Table) -> tuple[np.ndarray, dict[int, str]]:
    """The accepted rows of a table of features as the model's float32 batch (card order), and
    the refused rows' reasons by their index, in order: a value missing, not a number or not
    finite, or outside the card's accepted range. Python runs for the refused rows alone."""
    specs = card.input.features or []
    values = np.empty([table.num_rows, len(specs)], dtype=np.float64)
    problems: dict[int, list[str]] = {}
    for index, spec in enumerate(specs):
        values[:, index] = _numbers(spec.name, table.column(spec.name), problems)
    for row, in_range in range_refusals(card, values).items():
        problems.setdefault(row, []).append(in_range)
    refusals = {row: "; ".join(problems[row]) for row in sorted(problems)}
    accepted = np.ones(table.num_rows, dtype=bool)
    accepted[list(refusals)] = False
    return values[accepted].astype(np.float32), refusals


def _numbers(name: str, column: pa.ChunkedArray, problems: dict[int, list[str]]) -> np.ndarray:
    """A column of one feature as float64, NaN where a value is refused, with each refusal
    added to its row's problems. Text (a CSV's cells) is read as Python reads a float."""
    unread = np.zeros(len(column), dtype=bool)  # text that is not a number
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        try:
            values = _float64(pc.cast(column, pa.float64()))
        except pa.ArrowInvalid:  # some cell is not a number as Arrow reads one
            values = _text_numbers(name, column, unread, problems)
    elif any(
        is_type(column.type)
        for is_type in (pa.types.is_integer, pa.types.is_floating, pa.types.is_null)
    ):
        values = _float64(pc.cast(column, pa.float64()))
    else:
        raise BadInput(f"Column '{name}' holds {column.type}; a feature must be a number.")
    missing = np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    for row in np.flatnonzero(missing | (~np.isfinite(values) & ~unread)).tolist():
        problems.setdefault(row, []).append(
            _refusal(name, None if missing[row] else float(values[row]))
        )
    return values


def _text_numbers(
    name: str, column: pa.ChunkedArray, unread: np.ndarray, problems: dict[int, list[str]]
) -> np.ndarray:
    """`_numbers` of text that Arrow's cast refuses somewhere: the plain numbers
    (`PLAIN_NUMBER`) cast by Arrow at once, each other cell read by Python's `float` (which
    also reads " 1" and "1_000"), a cell that is not a number marked in `unread`."""
    plain = pc.fill_null(pc.match_substring_regex(column, PLAIN_NUMBER), True)
    values = _float64(pc.cast(pc.if_else(plain, column, pa.scalar(None, column.type)), "float64"))
    others = np.flatnonzero(~np.asarray(plain.to_numpy(zero_copy_only=False), dtype=bool))
    for row, cell in zip(others.tolist(), column.take(others).to_pylist(), strict=True):
        try:
            values[row] = float(cell)
        except ValueError:
            unread[row] = True
            problems.setdefault(row, []).append(f"{name} is not a number (got {cell[:40]!r})")
    return values


def _float64(numbers: pa.ChunkedArray) -> np.ndarray:
    """A float64 column as a writable array, NaN where it is null."""
    return np.array(numbers.to_numpy(zero_copy_only=False), dtype=np.float64)


def _refusal(name: str, value: float | None) -> str:
    """A missing (None) or non-finite value's refusal."""
    if value is None:
        return f"{name} is missing"
    return f"{name} must be a finite number (got {value})"


def prediction_columns(card: ModelCard) -> ColumnMaker:
    """The typed prediction as columns: a regressor's `value` (and `dollars` where the card
    gives the unit in dollars, to the cent as the API answers); a classifier's `label`,
    `class_index` and `probability_<label>` for each class."""
    output = card.output
    labels = output.labels or []

    def columns(rows: np.ndarray, scored: ScoredOutputs) -> dict[str, pa.Array]:
        outputs = scored.outputs
        if output.kind == "value":
            values = outputs[:, 0]  # (rows, 1), as the card's output shape
            made = {"value": pa.array(values, type=pa.float32())}
            if output.unit_scale:
                dollars = np.round(values.astype(np.float64) * output.unit_scale, 2)
                made["dollars"] = pa.array(dollars, type=pa.float64())
            return made
        best = outputs.argmax(axis=1)
        made = {
            "label": pa.array(np.array(labels, dtype=object)[best], type=pa.string()),
            "class_index": pa.array(best, type=pa.int32()),
        }
        for index, label in enumerate(labels):
            made[f"probability_{label}"] = pa.array(outputs[:, index], type=pa.float32())
        return made

    return columns


def attribution_columns(
    runtime: ModelRuntime, settings: Settings, top: int, steps: int | None
) -> ColumnMaker:
    """The `top` features that moved each row's answer most (integrated gradients from the
    training means, as `/explain` computes them, of the predicted class or the value), largest
    magnitude first: `top<i>_feature` and `top<i>_attribution` (in the output's units)."""
    card = runtime.loaded_card
    if card.input.kind != "features":
        raise BadInput(
            f"Top attributions are for tabular models; '{card.name}' takes images. "
            "Ask /explain for an image's attribution map."
        )
    specs = card.input.features or []
    if not 1 <= top <= len(specs):
        raise BadInput(f"'{card.name}' has {len(specs)} features: ask for 1 to {len(specs)}.")
    options = explain.ExplainOptions(steps=steps)
    explain.check_options(card, options, settings)
    path_steps = steps or explain.default_steps(card)
    names = np.array([spec.name for spec in specs], dtype=object)

    def columns(rows: np.ndarray, scored: ScoredOutputs) -> dict[str, pa.Array]:
        outputs = scored.outputs
        attributions = np.zeros([len(rows), len(specs)], dtype=np.float32)
        for index, (row, prediction) in enumerate(zip(rows, outputs, strict=True)):
            target = explain.target_index(card, prediction, None)
            found = explain.integrated_gradients(runtime, row, target, path_steps)
            attributions[index] = found.values
        order = np.argsort(-np.abs(attributions), axis=1, kind="stable")[:, :top]
        made: dict[str, pa.Array] = {}
        for rank in range(top):
            chosen = order[:, rank]
            made[f"top{rank + 1}_feature"] = pa.array(names[chosen], type=pa.string())
            value = attributions[np.arange(len(rows)), chosen]
            made[f"top{rank + 1}_attribution"] = pa.array(value, type=pa.float32())
        return made

    return columns


def familiarity_columns(runtime: ModelRuntime) -> ColumnMaker:
    """Each row's familiarity as the typed answers give it (docs/models.md, "Familiarity"):
    `familiarity_score`, `familiarity_percentile`, `familiar`, and `nearest_class` (image models)
    or `features_outside` (tabular models: the names outside the training range, `;`-joined)."""
    card = runtime.loaded_card
    if card.familiarity is None:
        raise BadInput(f"'{card.name}' version {card.version} has no familiarity in its card.")
    images = card.input.kind != "features"

    def columns(rows: np.ndarray, scored: ScoredOutputs) -> dict[str, pa.Array]:
        scores = scored.familiarity or Scores(np.zeros(0))  # none where no row was accepted
        found = cast(familiarity.Familiarities, familiarity.columns(runtime, rows, scores))
        made = {
            "familiarity_score": pa.array(found.score, type=pa.float32()),
            "familiarity_percentile": pa.array(np.round(found.percentile, 2), type=pa.float32()),
            "familiar": pa.array(found.familiar, type=pa.bool_()),
        }
        if images:
            made["nearest_class"] = pa.array(found.nearest_class, type=pa.string())
        else:
            outside = [";".join(names) for names in found.features_outside or []]
            made["features_outside"] = pa.array(outside, type=pa.string())
        return made

    return columns
