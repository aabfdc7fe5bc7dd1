"""The payload log's record: one prediction as one JSON line of at most `max_record_bytes`
(docs/payload-log.md), the redacted names' values replaced, and what did not fit left out and
named in `cut`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic_core import to_json

from app.artifact.card import ModelCard
from app.core.logging import utc_timestamp

REDACTED = "[redacted]"
# The fewest bytes one value takes in a JSON line ("0.0,"): an array with more values than the
# record's limit over this can never fit, so it is not even kept for the writer.
_MIN_VALUE_BYTES = 4
# Arrays up to this many values are written with the shortest digits that read back as the
# same float32 (5.1, not 5.099999904632568); larger ones (images) as their exact values.
_SHORTEST_VALUES = 1024


@dataclass(frozen=True, slots=True)
class Exchange:
    """One prediction as the request offered it; the writer thread makes the line."""

    at: float
    request_id: str | None
    surface: str | None
    model: str
    version: int
    card: ModelCard
    latency_s: float
    rows: int
    inputs: np.ndarray | None  # None: too large for a record, cut before it was queued
    outputs: np.ndarray | None


def unless_too_large(values: np.ndarray, max_record_bytes: int) -> np.ndarray | None:
    """`values`, or None when there are too many of them to fit a record at all."""
    return values if values.size <= max_record_bytes // _MIN_VALUE_BYTES else None


def line(exchange: Exchange, *, max_record_bytes: int, redact: frozenset[str]) -> bytes:
    """The record as one JSON line of at most max_record_bytes (inputs, then outputs,
    left out and named in `cut` when it would be longer)."""
    card = exchange.card
    entry: dict[str, Any] = {
        "ts": utc_timestamp(exchange.at),
        "request_id": exchange.request_id,
        "surface": exchange.surface,
        "model": exchange.model,
        "version": exchange.version,
        "rows": exchange.rows,
        "latency_ms": round(exchange.latency_s * 1000, 3),
    }
    cut = []
    for field, name, values in (
        ("inputs", card.input.name, exchange.inputs),
        ("outputs", card.output.name, exchange.outputs),
    ):
        if values is None:
            cut.append(field)
        elif name in redact:
            entry[field] = REDACTED
        elif field == "inputs" and card.input.features:
            entry[field] = _feature_rows(card, values, redact)
        else:
            entry[field] = _numbers(values)
    if cut:
        entry["cut"] = cut
    encoded = _encode(entry)
    for field in ("inputs", "outputs"):
        if len(encoded) < max_record_bytes:
            break
        if field in entry:
            del entry[field]
            entry["cut"] = cut = [*cut, field]
            encoded = _encode(entry)
    return encoded + b"\n"


def _feature_rows(
    card: ModelCard, values: np.ndarray, redact: frozenset[str]
) -> list[dict[str, Any]]:
    """A tabular batch as {feature: value} rows, the redacted features' values replaced."""
    names = [feature.name for feature in card.input.features or []]
    hidden = [name in redact for name in names]
    return [
        {
            name: REDACTED if secret else value
            for name, secret, value in zip(names, hidden, row, strict=True)
        }
        for row in _numbers(values)
    ]


def _numbers(values: np.ndarray) -> Any:
    """Nested lists of the float32 values, small arrays in their shortest digits."""
    if values.size <= _SHORTEST_VALUES:
        return values.astype(str).astype(np.float64).tolist()
    return values.tolist()


def _encode(entry: dict[str, Any]) -> bytes:
    # NaN and infinity are not JSON: null, as the wire protocols would have to say them.
    return to_json(entry, inf_nan_mode="null")
