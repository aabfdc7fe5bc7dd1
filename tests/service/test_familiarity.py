"""The familiarity score on small fixtures: each method against its definition, the
percentiles, the training range, and the batcher handing each request its own scores."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from app.artifact.card import LayerSpec
from app.artifact.familiarity import Familiarity, Scorer, Scores, channel_means, quantiles_of
from app.core.settings import BatchPolicy
from app.runtime.batching import Batcher
from app.runtime.model import ScoredOutputs
from training.familiarity import fit_class_mahalanobis, fit_ensemble, fit_inputs, fit_mixture


def card(method, **extra) -> Familiarity:
    return Familiarity.model_validate(
        {"method": method, "threshold": 4.0, "validation_quantiles": list(range(101))} | extra
    )


def test_class_mahalanobis_is_the_squared_distance_to_the_nearest_class_mean():
    rng = np.random.default_rng(0)
    means = np.array([[0.0, 0.0, 0.0], [5.0, 5.0, 0.0]])
    labels = rng.integers(0, 2, 2000)
    features = means[labels] + rng.normal(size=(2000, 3)) * [1.0, 2.0, 0.5]
    arrays = fit_class_mahalanobis(features, labels)
    scorer = Scorer(card("class_mahalanobis", layer="07_dense"), arrays)
    rows = np.array([[0.1, -0.2, 0.0], [4.0, 6.0, 0.3], [-30.0, -30.0, 5.0]])
    scores = scorer.scores(rows)
    precision = arrays["precision"]
    by_hand = [
        min(float((row - mean) @ precision @ (row - mean)) for mean in arrays["means"])
        for row in rows
    ]
    np.testing.assert_allclose(scores.score, by_hand, rtol=1e-9)
    assert scores.nearest.tolist() == [0, 1, 0]
    # The fitted precision undoes the per-axis spread: about 1 / variance on each axis.
    np.testing.assert_allclose(np.diag(precision), [1.0, 0.25, 4.0], rtol=0.15)


def test_energy_is_minus_logsumexp_of_the_logits_and_names_the_top_class():
    logits = np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, 0.0], [-5.0, -5.0, -5.0]])
    scores = Scorer(card("energy", layer="09_logits"), {}).scores(logits)
    by_hand = [-np.log(np.exp([1.0, 2.0, 3.0]).sum()), -1000.0, 5.0 - np.log(3.0)]
    np.testing.assert_allclose(scores.score, by_hand, rtol=1e-9)
    assert scores.nearest.tolist() == [2, 0, 0]


def test_input_mahalanobis_standardises_after_log1p_and_names_features_outside_the_range():
    rng = np.random.default_rng(1)
    x = np.c_[rng.normal(10, 2, 1000), rng.lognormal(3, 1, 1000)]
    arrays = fit_inputs(x, np.array([False, True]))
    quantiles = {"a": [x[:, 0].min(), x[:, 0].max()], "b": [x[:, 1].min(), x[:, 1].max()]}
    scorer = Scorer(card("input_mahalanobis", feature_quantiles=quantiles), arrays)
    centre = np.array([[10.0, np.expm1(np.log1p(x[:, 1]).mean())]])
    far = np.array([[10.0, x[:, 1].max() * 50]])
    assert scorer.scores(centre).score[0] < 0.05
    assert scorer.scores(far).score[0] > 9
    # The mean squared distance of the training rows is their dimension (2).
    assert scorer.scores(x).score.mean() == pytest.approx(2.0, rel=0.01)
    rows = np.r_[centre, far, [[-100.0, centre[0, 1]]]]
    assert scorer.named(scorer.outside_mask(rows)) == [[], ["b"], ["a"]]


def test_input_mixture_finds_the_gap_between_two_modes_that_one_gaussian_calls_its_centre():
    rng = np.random.default_rng(4)
    modes = np.array([[-4.0, 0.0], [4.0, 0.0]])
    x = modes[rng.integers(0, 2, 2000)] + rng.normal(size=(2000, 2)) * 0.5
    no_log = np.zeros(2, bool)
    mixture = Scorer(card("input_mixture"), fit_mixture(x, no_log))
    one_gaussian = Scorer(card("input_mahalanobis"), fit_inputs(x, no_log))
    at_mode, between = np.array([[4.0, 0.0]]), np.array([[0.0, 0.0]])
    assert one_gaussian.scores(between).score[0] < one_gaussian.scores(at_mode).score[0]
    assert mixture.scores(between).score[0] > np.quantile(mixture.scores(x).score, 0.99)


def test_a_feature_outside_the_training_range_is_unfamiliar_only_where_the_card_says_so():
    x = np.random.default_rng(2).normal(size=(500, 2))
    quantiles = {"a": [x[:, 0].min(), x[:, 0].max()], "b": [x[:, 1].min(), x[:, 1].max()]}
    beyond = np.array([[0.0, 0.0], [0.0, x[:, 1].max() + 0.01]])  # both below the threshold
    scores = Scorer(card("input_mahalanobis"), fit_inputs(x, np.zeros(2, bool))).scores(beyond)
    for unfamiliar, expected in ((True, [True, False]), (False, [True, True])):
        block = card(
            "input_mahalanobis",
            threshold=100.0,
            feature_quantiles=quantiles,
            outside_range_unfamiliar=unfamiliar,
        )
        scorer = Scorer(block, fit_inputs(x, np.zeros(2, bool)))
        assert scorer.familiar(scores.score, scorer.outside_mask(beyond)).tolist() == expected
        assert scorer.named(scorer.outside_mask(beyond)) == [[], ["b"]]


def test_channel_means_average_positions_channel_by_channel():
    activations = np.arange(2 * 3 * 3 * 4, dtype=float).reshape(2, 3, 3, 4)
    rows = channel_means(activations, 4)
    np.testing.assert_allclose(rows, activations.mean(axis=(1, 2)))
    np.testing.assert_allclose(channel_means(rows, 4), rows)  # already averaged
    assert channel_means(activations, None).shape == (2, 36)


def test_a_feature_ensemble_sums_each_layers_standardised_distance():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 3000)
    # Two layers of one input: a 2x2 map of 3 channels, and a dense layer of 2 values.
    maps = labels[:, None, None, None] * 3.0 + rng.normal(size=(3000, 2, 2, 3))
    dense = labels[:, None] * 4.0 + rng.normal(size=(3000, 2))
    outputs = {"00_conv": maps, "01_dense": dense}
    layers = [
        LayerSpec(
            name="conv", type="Conv2D", trace_key="00_conv", output_shape=[None, 2, 2, 3], params=0
        ),
        LayerSpec(
            name="dense", type="Dense", trace_key="01_dense", output_shape=[None, 2], params=0
        ),
    ]
    train, val = np.arange(2000), np.arange(2000, 3000)

    def values(key, rows, channels):
        return channel_means(outputs[key][rows], channels)

    parts, arrays = fit_ensemble(
        layers, ("conv", "dense"), (train, labels[train], val, val), values
    )
    assert [(part.layer, part.channels) for part in parts] == [("00_conv", 3), ("01_dense", None)]
    scorer = Scorer(card("feature_ensemble", parts=parts), arrays)
    assert scorer.layers == {"00_conv": 3, "01_dense": None}
    held_in = scorer.scores_of(val, {key: value[val] for key, value in outputs.items()})
    # Each layer is standardised so that its validation median is 0 and 95th percentile 1.
    assert -1.0 < np.median(held_in.score) < 1.0
    assert np.mean(held_in.nearest == labels[val]) > 0.95
    far = {"00_conv": np.full((1, 2, 2, 3), 20.0), "01_dense": np.array([[0.0, 0.0]])}
    assert scorer.scores_of(np.zeros(1), far).score[0] > np.quantile(held_in.score, 0.99)


def test_percentiles_interpolate_the_validation_quantiles():
    scorer = Scorer(card("energy", validation_quantiles=quantiles_of(np.arange(1001.0))), {})
    np.testing.assert_allclose(
        scorer.percentiles(np.array([-5.0, 0.0, 500.0, 995.0, 2000.0])), [0, 0, 50, 99.5, 100]
    )
    assert scorer.familiar(np.array([3.9, 4.0, 4.1])).tolist() == [True, True, False]


def test_a_card_needs_101_validation_quantiles():
    with pytest.raises(ValueError, match="validation_quantiles"):
        card("energy", validation_quantiles=[0.0] * 100)


def test_the_batcher_hands_each_request_its_own_rows_and_scores():
    def scored(batch):
        return ScoredOutputs(batch * 2, Scores(batch[:, 0] + 0.5, batch[:, 0].astype(int)))

    async def run():
        with ThreadPoolExecutor(1) as executor:
            batcher = Batcher(scored, executor, BatchPolicy(max_batch_size=16))
            answers = await asyncio.gather(
                *(batcher.submit(np.full((n, 1), float(n))) for n in (1, 2, 3))
            )
            await batcher.close()
            return answers

    for n, answer in zip((1, 2, 3), asyncio.run(run()), strict=True):
        assert answer.outputs.tolist() == [[2.0 * n]] * n
        assert answer.familiarity.score.tolist() == [n + 0.5] * n
        assert answer.familiarity.nearest.tolist() == [n] * n


def test_a_card_with_familiarity_but_no_statistics_file_fails_to_load_and_says_why(tmp_path):
    import shutil

    from app.artifact.card import ModelCard, hash_files
    from app.runtime.model import ModelRuntime
    from tests.conftest import MODELS

    target = tmp_path / "iris" / "1"
    shutil.copytree(MODELS / "iris" / "1", target)
    (target / "familiarity.npz").unlink()
    card = ModelCard.read(target)
    card.files = hash_files(target)
    card.write(target)
    runtime = ModelRuntime("iris", 1, target)
    runtime.load()
    assert not runtime.ready
    assert "familiarity.npz is missing" in runtime.reason


def test_numpys_blas_runs_on_one_thread_once_the_threads_are_configured():
    """Its spinning threads would slow the model call after each score (configure_threads)."""
    from threadpoolctl import threadpool_info

    from app.runtime.model import configure_threads

    configure_threads(0, 0)  # TensorFlow's own choice, as the service's defaults are
    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert blas, "numpy has a BLAS library"
    assert {pool["num_threads"] for pool in blas} == {1}
