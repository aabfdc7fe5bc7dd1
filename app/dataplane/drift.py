"""Drift of the traffic: each model version's rolling window of answered predictions compared
with the training distribution in its card's `drift` block (docs/drift.md).

`Drift.observe` is called once per answered batch by `Predictor.predict`, which every transport
passes through; it writes the batch into the version's `PredictionWindow` (vectorised) and, each
time another tenth of the window has arrived, recomputes the figures into the
`glassbox_drift_*` gauges (values only); `Drift.report` computes them with their bins on
request (`drift_figures`). Each figure is a population stability index over the card's bins:
every input feature of a tabular model, the predicted class against the training priors
(classifiers), the answers against the model's answers on its training inputs (regressors)
and, where the card has a `familiarity` block and scores came with the predictions, the scores
against the deciles of its validation quantiles. A figure needs the card's `min_predictions`
rows; before that it is null ("not enough data"), never an alarm.
"""

from __future__ import annotations

import weakref

import numpy as np

from app.core.settings import Settings
from app.dataplane import metrics
from app.dataplane.drift_figures import Figures
from app.dataplane.schemas import ModelDrift
from app.runtime.model import ModelRuntime
from app.runtime.window import PredictionWindow


class Drift:
    def __init__(self, settings: Settings):
        self.size = settings.drift_window  # 0: off
        # Each window's figures' training side, made with it and gone with it.
        self._figures: weakref.WeakKeyDictionary[PredictionWindow, Figures] = (
            weakref.WeakKeyDictionary()
        )

    def observe(
        self,
        runtime: ModelRuntime,
        batch: np.ndarray,
        outputs: np.ndarray,
        scores: np.ndarray | None = None,
    ) -> None:
        """Add an answered batch to the version's window (`scores`: one familiarity score per
        row, where the caller has them)."""
        window = self._window(runtime)
        if window is None:
            return
        card = runtime.loaded_card
        features = batch if card.input.kind == "features" else None
        if card.output.kind == "probabilities":
            answers = outputs.argmax(axis=1)
        else:
            answers = outputs.reshape(len(outputs), -1)[:, 0]
        before = window.seen
        window.observe(features, answers, scores)
        step = max(1, window.size // 10)
        if before // step != window.seen // step:
            self.publish(runtime)

    def report(self, runtime: ModelRuntime) -> ModelDrift:
        card = runtime.loaded_card
        window = self._window(runtime)
        reference = card.drift
        if window is None or reference is None:  # off, or a card without the block
            return ModelDrift(
                model=runtime.name,
                version=runtime.version,
                window_size=0 if window is None else window.size,
                rows=0,
                seen=0,
                min_rows=0 if reference is None else reference.thresholds.min_predictions,
                enough_data=False,
                figures=[],
                crossed=[],
            )
        rows = window.rows(ordered=False)
        minimum = reference.thresholds.min_predictions
        found = self._prepared(window, runtime).figures(rows)
        return ModelDrift(
            model=runtime.name,
            version=runtime.version,
            window_size=window.size,
            rows=len(rows.answers),
            seen=rows.seen,
            min_rows=minimum,
            enough_data=len(rows.answers) >= minimum,
            figures=found,
            crossed=[figure.name for figure in found if figure.crossed],
        )

    def publish(self, runtime: ModelRuntime) -> None:
        """The version's figures into the gauges: their values only, no bins or answer."""
        window, reference = runtime.window, runtime.loaded_card.drift
        if window is None or reference is None:
            return
        rows = window.rows(ordered=False)
        values = self._prepared(window, runtime).values(rows)
        threshold = reference.thresholds.psi
        metrics.set_drift(runtime.name, runtime.version, len(rows.answers), values, threshold)

    def _window(self, runtime: ModelRuntime) -> PredictionWindow | None:
        """The version's window, made on its first prediction; None when drift is off or the
        card has no reference to compare with."""
        card = runtime.loaded_card
        if runtime.window is None and self.size and card.drift is not None:
            features = card.input.features
            window = PredictionWindow(
                self.size,
                None if features is None else len(features),
                classifier=card.output.kind == "probabilities",
            )
            runtime.window = window
        return runtime.window

    def _prepared(self, window: PredictionWindow, runtime: ModelRuntime) -> Figures:
        """The window's figures' training side, made on first use."""
        prepared = self._figures.get(window)
        if prepared is None:
            card = runtime.loaded_card
            assert card.drift is not None  # a window is only made for a card with the block
            prepared = self._figures[window] = Figures.of(card, card.drift)
        return prepared
