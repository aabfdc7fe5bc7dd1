"""The memory bound of an explanation: a gradient over many rows (a long integrated-gradients
path, many SmoothGrad samples) is computed a chunk of rows at a time, its parts summed as they
come, so memory follows the chunk, not the number of steps; and a caller gone stops it at the
next chunk."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np

from app.artifact.card import ModelCard
from app.core.errors import ClientGone
from app.runtime.model import ModelRuntime

# What one gradient call may hold, about: the activations of every layer for each row in it,
# which the tape keeps for the backward pass, with that pass's own of the same size.
CHUNK_BYTES = 192 * 1024 * 1024
_BYTES_PER_VALUE = 4 * 2 * 2  # float32; forward and backward; the mirrored batch of catdog


def chunk_rows(card: ModelCard) -> int:
    """Rows per gradient call for `card`'s model, from its layers' output sizes."""
    values = int(np.prod(card.input.shape[1:]))  # type: ignore[arg-type]
    values += sum(int(np.prod(cast(list[int], layer.output_shape[1:]))) for layer in card.layers)
    return max(1, CHUNK_BYTES // (values * _BYTES_PER_VALUE))


def never_stop() -> bool:
    """The `stop` of a caller that cannot go away (a test, a benchmark)."""
    return False


def summed_gradients(
    runtime: ModelRuntime,
    rows: Callable[[int, int], np.ndarray],
    count: int,
    weights: np.ndarray,
    output: int,
    stop: Callable[[], bool],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sum of the rows' gradients of `output`, each times its weight, with the first and
    the last row's outputs. `rows(start, end)` makes rows start..end-1 when they are needed;
    `stop()` is asked before each chunk, and ClientGone raised when it says so."""
    size = chunk_rows(runtime.loaded_card)
    total: np.ndarray | None = None
    first = last = np.empty(0)
    for start in range(0, count, size):
        if stop():
            raise ClientGone("The client went away; the explanation stopped before its end.")
        end = min(start + size, count)
        values, gradients = runtime.output_gradients(rows(start, end), output)
        part = np.tensordot(weights[start:end], gradients, axes=1)
        total = part if total is None else total + part
        if start == 0:
            first = values[0]
        last = values[-1]
    assert total is not None  # count >= 1
    return total, first, last
