"""Drift's parts without a transport: the PSI, the bounded window, the figures (familiarity
included, on a card fixture with the familiarity block) and the gauges."""

import math

import numpy as np
import pytest
from prometheus_client import REGISTRY

from app.artifact.card import ModelCard
from app.artifact.drift_reference import bin_counts, decile_bins
from app.artifact.familiarity import Familiarity
from app.core.settings import Settings
from app.dataplane.drift import Drift
from app.dataplane.drift_figures import familiarity_bins, figures, psi
from app.runtime.model import ModelRuntime
from app.runtime.window import PredictionWindow
from tests.conftest import MODELS

HOUSING = MODELS / "housing" / "1"
RNG_SEED = 7


def housing_card() -> ModelCard:
    return ModelCard.read(HOUSING)


# The PSI.


def test_psi_of_the_training_shares_themselves_is_zero():
    assert psi([0.25, 0.25, 0.5], np.array([25, 25, 50])) == pytest.approx(0.0, abs=1e-12)


def test_psi_is_the_sum_of_share_differences_times_their_log_ratio():
    expected = (0.5 - 0.25) * math.log(0.5 / 0.25) + (0.5 - 0.75) * math.log(0.5 / 0.75)
    assert psi([0.25, 0.75], np.array([10, 10])) == pytest.approx(expected, rel=1e-9)


def test_an_empty_bin_counts_as_a_share_of_one_in_ten_thousand():
    expected = (1 - 0.5) * math.log(1 / 0.5) + (1e-4 - 0.5) * math.log(1e-4 / 0.5)
    assert psi([0.5, 0.5], np.array([30, 0])) == pytest.approx(expected, rel=1e-9)


def test_a_value_on_an_edge_goes_to_the_bin_above_it_on_both_sides():
    assert bin_counts(np.array([0.0, 1.0, 1.5, 2.0, 9.0]), [1.0, 2.0]).tolist() == [1, 2, 2]
    bins = decile_bins(np.arange(100, dtype=np.float64))
    assert len(bins.edges) == 9
    assert sum(bins.proportions) == pytest.approx(1.0)


# The window.


def test_the_window_keeps_the_last_rows_oldest_first_across_the_wrap():
    window = PredictionWindow(10, features=2, classifier=False)
    for start in range(0, 15, 3):  # 5 batches of 3 rows: 15 rows through 10 places
        values = np.arange(start, start + 3, dtype=np.float32)
        window.observe(np.stack([values, -values], axis=1), values)
    rows = window.rows()
    assert rows.answers.tolist() == list(range(5, 15))
    assert rows.features[:, 1].tolist() == [-value for value in range(5, 15)]
    assert rows.seen == 15


def test_a_batch_longer_than_the_window_leaves_its_last_rows():
    window = PredictionWindow(4, features=1, classifier=True)
    window.observe(np.array([[1.0], [2.0]]), np.array([1, 2]))
    window.observe(np.arange(10, 20, dtype=np.float32)[:, None], np.arange(10, 20))
    rows = window.rows()
    assert rows.answers.tolist() == [16, 17, 18, 19]
    assert rows.features[:, 0].tolist() == [16, 17, 18, 19]
    assert window.filled == 4


def test_the_window_costs_the_same_memory_however_many_rows_pass():
    window = PredictionWindow(1000, features=8, classifier=False)
    size = window.nbytes
    assert size == 1000 * (8 * 4 + 4 + 4)
    rows = np.ones((700, 8), np.float32)
    for _ in range(50):
        window.observe(rows, rows[:, 0], np.zeros(700, np.float32))
    assert window.nbytes == size
    assert window.filled == 1000


def test_rows_without_a_score_are_unscored_ones():
    window = PredictionWindow(5, features=None, classifier=True)
    window.observe(None, np.array([0, 1]), np.array([0.5, 0.25], np.float32))
    window.observe(None, np.array([1]))
    assert np.isnan(window.rows().scores).tolist() == [False, False, True]


# The figures.


def housing_rows(count: int, shift: dict[int, float] | None = None) -> PredictionWindow:
    """A window of `count` rows drawn from the card's own training bins (each column
    uniform inside a decile bin), with `shift` added to some columns."""
    card = housing_card()
    reference = card.drift
    rng = np.random.default_rng(RNG_SEED)
    columns = []
    for feature in reference.features:
        edges = np.array([feature.edges[0] - 1, *feature.edges, feature.edges[-1] + 1])
        shares = np.array(feature.proportions) / sum(feature.proportions)
        chosen = rng.choice(len(shares), size=count, p=shares)
        columns.append(rng.uniform(edges[chosen], edges[chosen + 1]))
    features = np.stack(columns, axis=1).astype(np.float32)
    for column, amount in (shift or {}).items():
        features[:, column] += amount
    answers = np.quantile(np.linspace(0.5, 5.0, 100), rng.uniform(size=count))
    window = PredictionWindow(count, features=features.shape[1], classifier=False)
    window.observe(features, answers.astype(np.float32))
    return window


def test_a_window_below_the_cards_minimum_has_no_figure_and_no_alarm():
    card = housing_card()
    window = housing_rows(card.drift.thresholds.min_predictions - 1, shift={0: 100.0})
    found = figures(card, card.drift, window.rows())
    assert found
    assert all(figure.psi is None and figure.crossed is None for figure in found)


def test_shifting_one_feature_crosses_that_features_threshold_only():
    card = housing_card()
    found = figures(card, card.drift, housing_rows(1000, shift={1: 25.0}).rows())
    features = {f.name: f for f in found if f.kind == "feature"}
    assert features["HouseAge"].crossed
    assert [name for name, f in features.items() if f.crossed] == ["HouseAge"]


def familiar_card() -> ModelCard:
    quantiles = [float(q) for q in np.linspace(0.0, 10.0, 101)]  # uniform on [0, 10]
    block = Familiarity(method="input_mahalanobis", threshold=9.5, validation_quantiles=quantiles)
    return housing_card().model_copy(update={"familiarity": block})


def familiarity_figure(scores: np.ndarray | None):
    card = familiar_card()
    window = PredictionWindow(500, features=8, classifier=False)
    window.observe(np.zeros((500, 8), np.float32), np.zeros(500, np.float32), scores)
    return next(f for f in figures(card, card.drift, window.rows()) if f.kind == "familiarity")


def test_the_familiarity_bins_are_the_deciles_of_the_validation_quantiles():
    bins = familiarity_bins(familiar_card())
    assert bins.edges == pytest.approx([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    assert bins.proportions == pytest.approx([0.1] * 10)
    no_block = housing_card().model_copy(update={"familiarity": None})
    assert familiarity_bins(no_block) is None  # no block: no figure


def test_scores_like_the_validation_ones_stay_under_the_threshold():
    scores = np.random.default_rng(RNG_SEED).uniform(0, 10, 500).astype(np.float32)
    figure = familiarity_figure(scores)
    assert figure.psi is not None
    assert not figure.crossed


def test_less_familiar_scores_cross_the_threshold():
    scores = np.random.default_rng(RNG_SEED).uniform(6, 14, 500).astype(np.float32)
    assert familiarity_figure(scores).crossed


def test_without_scores_the_familiarity_figure_waits_for_data():
    figure = familiarity_figure(None)
    assert figure.rows == 0
    assert figure.psi is None


# The gauges.


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"model": "drift-gauges", "version": "3", **labels})


def test_the_gauges_follow_the_window_each_tenth_of_it():
    runtime = ModelRuntime("drift-gauges", 3, HOUSING)
    runtime.card = housing_card()
    monitor = Drift(Settings(model_dir=MODELS, drift_window=400))
    shifted = housing_rows(400, shift={1: 25.0}).rows()
    monitor.observe(runtime, shifted.features[:39], shifted.answers[:39, None])
    assert gauge("glassbox_drift_window_rows") is None  # under a tenth: nothing published
    monitor.observe(runtime, shifted.features[39:], shifted.answers[39:, None])
    assert gauge("glassbox_drift_window_rows") == 400
    assert gauge("glassbox_drift_crossed", figure="HouseAge") == 1
    assert gauge("glassbox_drift_crossed", figure="MedInc") == 0
    assert gauge("glassbox_drift_psi", figure="HouseAge") > runtime.card.drift.thresholds.psi


def test_a_window_of_zero_turns_drift_off():
    runtime = ModelRuntime("drift-off", 1, HOUSING)
    runtime.card = housing_card()
    monitor = Drift(Settings(model_dir=MODELS, drift_window=0))
    monitor.observe(runtime, np.zeros((5, 8), np.float32), np.zeros((5, 1), np.float32))
    assert runtime.window is None
    assert monitor.report(runtime).figures == []
