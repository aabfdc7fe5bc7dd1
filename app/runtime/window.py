"""The rolling window of one model version's answered predictions, for drift (docs/drift.md).

Ring buffers in numpy, sized once: the last `size` rows' input features (tabular models only;
an image is never kept), their answer (the top class of a classifier, the value of a
regressor) and, where one came with it, a familiarity score (NaN where none did). A batch is
written in one vectorised step, whatever its length, so the window costs the same memory
however long the service runs: `nbytes`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WindowRows:
    """A copy of what the window holds, oldest row first."""

    features: np.ndarray | None
    answers: np.ndarray
    scores: np.ndarray
    seen: int  # rows observed since the window was made


class PredictionWindow:
    def __init__(self, size: int, features: int | None, classifier: bool):
        if size <= 0:
            raise ValueError("a window holds at least one row")
        self.size = size
        self._features = None if features is None else np.zeros((size, features), np.float32)
        self._answers = np.zeros(size, np.int32 if classifier else np.float32)
        self._scores = np.full(size, np.nan, np.float32)
        self._next = 0  # where the next row goes
        self.seen = 0
        self._lock = threading.Lock()  # transports may observe from other threads

    @property
    def filled(self) -> int:
        return min(self.seen, self.size)

    @property
    def nbytes(self) -> int:
        arrays = (self._features, self._answers, self._scores)
        return sum(array.nbytes for array in arrays if array is not None)

    def observe(
        self, features: np.ndarray | None, answers: np.ndarray, scores: np.ndarray | None = None
    ) -> None:
        """Add a batch's rows (only its last `size` if it is longer than the window)."""
        rows = len(answers)
        keep = min(rows, self.size)
        with self._lock:
            at = (self._next + np.arange(keep)) % self.size
            if self._features is not None and features is not None:
                self._features[at] = features[rows - keep :]
            self._answers[at] = answers[rows - keep :]
            self._scores[at] = np.nan if scores is None else scores[rows - keep :]
            self._next = int((self._next + keep) % self.size)
            self.seen += rows

    def rows(self, ordered: bool = True) -> WindowRows:
        """A copy of the rows, oldest first, or (`ordered=False`, cheaper: a count needs no
        order) as they lie in the buffers."""
        with self._lock:
            filled = self.filled
            if ordered:  # from the next write position round to the newest row
                at: np.ndarray | slice = (self._next - filled + np.arange(filled)) % self.size
            else:  # a window not yet full holds its rows at the start
                at = slice(0, filled)
            return WindowRows(
                features=None if self._features is None else self._features[at].copy(),
                answers=self._answers[at].copy(),
                scores=self._scores[at].copy(),
                seen=self.seen,
            )
