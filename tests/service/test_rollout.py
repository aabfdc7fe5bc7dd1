"""Rollouts in the logic layer: labels, the canary split, shadow comparison, rollout files."""

import asyncio
import contextlib
import json
import math
import random
import threading
from collections import Counter

import numpy as np
import pytest

from app.core.errors import BadInput, ModelNotFound, RolloutRefused
from app.core.settings import Settings
from app.dataplane.service import InferenceService
from app.dataplane.shadow import FAILURES_BEFORE_PAUSE
from app.runtime import rollout
from app.runtime.model import ModelState
from app.runtime.registry import Asked
from app.runtime.rollout import ROLLOUT_FILE, RolloutPlan, ShadowPlan, caller_var
from tests.rollout_models import FLOWERS, IRIS, add_version


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.fixture
def root(tmp_path, iris_v2):
    add_version(tmp_path, IRIS, 1)
    add_version(tmp_path, iris_v2, 2)
    return tmp_path


async def started(root, **settings) -> InferenceService:
    # A shadow copy has all the time a busy machine needs, but where a test sets its own timeout.
    settings = {"shadow_timeout_s": 120, **settings}
    service = InferenceService(Settings(model_dir=root, poll_interval_s=0, **settings))
    await service.catalog.reload()
    return service


@contextlib.asynccontextmanager
async def serving(root, **settings):
    service = await started(root, **settings)
    try:
        yield service
    finally:
        await service.aclose()


def test_without_a_rollout_the_newest_ready_version_serves(root):
    async def main():
        async with serving(root) as service:
            return service.registry.resolve("iris", split=True).version, service.registry.resolve(
                "iris", ready=False
            ).version

    assert run(main()) == (2, 2)


def test_stable_label_is_the_default_and_labels_address_versions(root):
    async def main():
        async with serving(root) as service:
            service.registry.set_plan("iris", RolloutPlan(labels={"stable": 1, "canary": 2}))
            registry = service.registry
            assert registry.resolve("iris", split=True).version == 1
            assert registry.resolve("iris", Asked(label="canary")).version == 2
            assert registry.resolve("iris", Asked(version=2)).version == 2
            with pytest.raises(ModelNotFound, match=r"no version label 'beta'\. Labels: canary"):
                registry.resolve("iris", Asked(label="beta"))
            assert service.catalog.summary("iris").default_version == 1

    run(main())


def test_a_label_on_a_version_that_is_not_ready_is_refused_and_the_old_one_serves(root):
    async def main():
        async with serving(root) as service:
            registry = service.registry
            registry.set_plan("iris", RolloutPlan(labels={"stable": 1}))
            registry.resolve("iris", Asked(version=2), ready=False).state = ModelState.LOADING
            with pytest.raises(RolloutRefused, match=r"not ready: 2 \(loading\)"):
                registry.set_plan("iris", RolloutPlan(labels={"stable": 2}))
            with pytest.raises(RolloutRefused, match=r"not ready: 7 \(absent\)"):
                registry.set_plan("iris", RolloutPlan(weights={1: 50, 7: 50}))
            assert registry.plan("iris") == RolloutPlan(labels={"stable": 1})
            assert registry.resolve("iris", split=True).version == 1

    run(main())


def test_a_shadow_that_is_the_default_version_itself_is_refused(root):
    async def main():
        async with serving(root) as service:
            registry = service.registry
            with pytest.raises(RolloutRefused, match="version 2, the default version itself"):
                registry.set_plan("iris", RolloutPlan(shadow=ShadowPlan(version=2)))
            with pytest.raises(RolloutRefused, match="version 1, the default version itself"):
                registry.set_plan(
                    "iris", RolloutPlan(labels={"stable": 1}, shadow=ShadowPlan(version=1))
                )
            registry.set_plan(
                "iris", RolloutPlan(labels={"stable": 1}, shadow=ShadowPlan(version=2))
            )
            return registry.plan("iris").shadow

    assert run(main()) == ShadowPlan(version=2)


@pytest.mark.parametrize("weights", [{1: 1e308, 2: 1e308}, {1: 1_000_001}, {1: math.inf}])
def test_weights_are_finite_and_bounded_so_their_sum_is_too(weights):
    with pytest.raises(ValueError, match="weights"):
        RolloutPlan.model_validate({"weights": weights})
    assert RolloutPlan(weights={1: rollout.MAX_WEIGHT, 2: rollout.MAX_WEIGHT}).pick("iris", "a")


def test_canary_split_of_unkeyed_requests_lands_within_three_points(root, monkeypatch):
    # Seeded: with the process's own generator, 2,000 draws miss by over 3 points in about one
    # run in 1,300.
    monkeypatch.setattr(rollout, "random", random.Random(19))

    async def main():
        async with serving(root) as service:
            service.registry.set_plan("iris", RolloutPlan(weights={1: 80, 2: 20}))
            return Counter(
                service.registry.resolve("iris", split=True).version for _ in range(2000)
            )

    counts = run(main())
    assert set(counts) == {1, 2}
    assert abs(counts[2] / 2000 - 0.20) <= 0.03, counts


def test_keyed_callers_never_switch_versions(root):
    async def main():
        async with serving(root) as service:
            service.registry.set_plan("iris", RolloutPlan(weights={1: 50, 2: 50}))
            seen: dict[str, set[int]] = {}
            for _ in range(5):
                for index in range(300):
                    token = caller_var.set(f"caller-{index}")
                    seen.setdefault(f"caller-{index}", set()).add(
                        service.registry.resolve("iris", split=True).version
                    )
                    caller_var.reset(token)
            return seen

    seen = run(main())
    assert all(len(versions) == 1 for versions in seen.values())
    # and the callers are spread over both versions
    assert Counter(next(iter(v)) for v in seen.values()).keys() == {1, 2}


def test_a_version_asked_for_bypasses_the_split(root):
    async def main():
        async with serving(root) as service:
            service.registry.set_plan("iris", RolloutPlan(weights={2: 100}))
            return {
                service.registry.resolve("iris", Asked(version=1), split=True).version
                for _ in range(50)
            }

    assert run(main()) == {1}


def test_shadow_disagreement_matches_a_count_made_here(root):
    async def main():
        async with serving(root) as service:
            registry = service.registry
            registry.set_plan(
                "iris", RolloutPlan(labels={"stable": 1}, shadow=ShadowPlan(version=2))
            )
            answers = []
            for row in FLOWERS:
                answers.append(
                    await service.predictor.predict(
                        registry.resolve("iris", split=True), row[np.newaxis]
                    )
                )
                await _shadows_done(service)
            return answers, service.catalog.rollout_status("iris")

    answers, status = run(main())
    first = np.concatenate(answers)
    expected_v1 = _outputs(IRIS, FLOWERS)
    np.testing.assert_allclose(first, expected_v1, atol=1e-6)  # callers got version 1
    v2 = _outputs(_version_folder(root, 2), FLOWERS)
    flips = int((expected_v1.argmax(1) != v2.argmax(1)).sum())
    assert flips > 0  # the perturbed version does disagree
    shadow = status.shadow
    assert shadow is not None
    assert (shadow.version, shadow.compared_with, shadow.compared_rows) == (2, 1, len(FLOWERS))
    assert shadow.class_changes == flips
    assert shadow.class_change_rate == pytest.approx(flips / len(FLOWERS))
    differences = np.abs(expected_v1 - v2).mean(axis=1)
    assert shadow.mean_abs_difference == pytest.approx(differences.mean(), abs=1e-6)
    assert shadow.max_abs_difference == pytest.approx(differences.max(), abs=1e-6)
    assert (shadow.errors, shadow.timeouts, shadow.dropped) == (0, 0, 0)


def test_a_nan_row_leaves_the_shadow_tally_as_the_finite_rows_make_it(root):
    """Open Inference v2 takes raw NaN as sent, so an answer may hold NaN: such a row compares
    as nothing, rather than making every later mean NaN."""

    async def main():
        async with serving(root) as service:
            candidate = service.registry.resolve("iris", Asked(version=2))
            answered = _outputs(IRIS, FLOWERS[:2])
            answered[0, 0] = np.nan
            service.shadow.offer(candidate, 1.0, FLOWERS[:2], answered)
            await _shadows_done(service)
            return service.shadow.tally("iris", 2)

    tally = run(main())
    assert tally.compared_rows == 1
    assert math.isfinite(tally.abs_difference_sum)
    assert math.isfinite(tally.max_abs_difference)


def test_a_shadow_that_raises_never_changes_the_answer(root):
    async def main():
        async with serving(root) as service:
            registry = service.registry
            registry.set_plan(
                "iris", RolloutPlan(labels={"stable": 1}, shadow=ShadowPlan(version=2))
            )

            def broken(batch):
                raise RuntimeError("candidate is broken")

            registry.resolve("iris", Asked(version=2), ready=False).predict = broken
            loop, tally = asyncio.get_running_loop(), service.shadow.tally("iris", 2)
            answers = []
            for index, row in enumerate(FLOWERS):
                before = loop.time()
                answers.append(
                    await service.predictor.predict(
                        registry.resolve("iris", split=True), row[np.newaxis]
                    )
                )
                await _shadows_done(service)
                if index == FAILURES_BEFORE_PAUSE - 1:
                    # The third failure in a row pauses the candidate for 1 s from then...
                    assert before + 1 <= tally.paused_until <= loop.time() + 1
                    # ...held open here, so the rest come within it however slow the machine.
                    tally.paused_until = math.inf
            return np.concatenate(answers), service.catalog.rollout_status("iris").shadow

    answers, shadow = run(main())
    np.testing.assert_allclose(answers, _outputs(IRIS, FLOWERS), atol=1e-6)
    # Three failures in a row pause the candidate: the other copies are not even made.
    assert shadow.errors == FAILURES_BEFORE_PAUSE
    assert shadow.paused == len(FLOWERS) - FAILURES_BEFORE_PAUSE
    assert shadow.compared_rows == 0


def test_a_shadow_that_hangs_holds_up_no_request_and_its_copies_are_dropped(root):
    release = threading.Event()

    async def main():
        service = await started(root, shadow_max_in_flight=1, shadow_timeout_s=0.05)
        try:
            registry = service.registry
            registry.set_plan(
                "iris", RolloutPlan(labels={"stable": 1}, shadow=ShadowPlan(version=2))
            )
            entered = threading.Event()

            def hanging(batch):
                entered.set()
                release.wait(30)
                return np.zeros((len(batch), 3), np.float32)

            registry.resolve("iris", Asked(version=2), ready=False).predict = hanging
            answers = []
            for row in FLOWERS:
                answers.append(
                    await service.predictor.predict(
                        registry.resolve("iris", split=True), row[np.newaxis]
                    )
                )
            # Every request was answered while the candidate's first copy is still running.
            assert entered.wait(30)
            assert not release.is_set()
            await asyncio.sleep(0.2)  # past the shadow timeout
            status = service.catalog.rollout_status("iris").shadow
            release.set()
            await _shadows_done(service)
            return np.concatenate(answers), status
        finally:
            release.set()
            await service.aclose()

    answers, shadow = run(main())
    np.testing.assert_allclose(answers, _outputs(IRIS, FLOWERS), atol=1e-6)
    assert shadow.dropped == len(FLOWERS) - 1  # one copy in flight at most
    assert shadow.timeouts == 1
    assert shadow.compared_rows == 0  # a late answer is not compared


def test_requests_served_by_the_candidate_or_another_version_are_not_copied(root):
    async def main():
        async with serving(root) as service:
            registry = service.registry
            registry.set_plan(
                "iris", RolloutPlan(labels={"stable": 1}, shadow=ShadowPlan(version=2))
            )
            await service.predictor.predict(registry.resolve("iris", Asked(version=2)), FLOWERS)
            await _shadows_done(service)
            return service.catalog.rollout_status("iris").shadow

    assert run(main()).compared_rows == 0


def test_the_rollout_file_is_read_at_reload_and_a_refused_one_keeps_the_old(root):
    async def main():
        async with serving(root) as service:
            (root / "iris" / ROLLOUT_FILE).write_text(json.dumps({"labels": {"stable": 1}}))
            await service.catalog.reload()
            assert service.registry.resolve("iris", split=True).version == 1
            (root / "iris" / ROLLOUT_FILE).write_text(json.dumps({"labels": {"stable": 9}}))
            await service.catalog.reload()
            status = service.catalog.rollout_status("iris")
            assert status.labels == {"stable": 1}
            assert "not ready: 9 (absent)" in (status.refused or "")
            (root / "iris" / ROLLOUT_FILE).write_text("{not json")
            await service.catalog.reload()
            assert "is not a valid rollout" in (
                service.catalog.rollout_status("iris").refused or ""
            )
            assert service.registry.resolve("iris", split=True).version == 1
            (root / "iris" / ROLLOUT_FILE).unlink()
            await service.catalog.reload()
            assert service.catalog.rollout_status("iris").refused is None
            return service.registry.resolve("iris", split=True).version

    assert run(main()) == 2


def test_set_rollout_writes_the_file_other_workers_read(root):
    async def main():
        service = await started(root)
        other = await started(root)
        try:
            await service.catalog.set_rollout(
                "iris", RolloutPlan(labels={"stable": 1}, weights={1: 9, 2: 1})
            )
            await other.catalog.reload()  # another worker's poll
            return other.registry.plan("iris")
        finally:
            await service.aclose()
            await other.aclose()

    assert run(main()) == RolloutPlan(labels={"stable": 1}, weights={1: 9, 2: 1})
    assert json.loads((root / "iris" / ROLLOUT_FILE).read_text())["weights"] == {"1": 9.0, "2": 1.0}


def test_compare_answers_both_versions_and_layer_distances(root):
    async def main():
        async with serving(root) as service:
            registry = service.registry
            return await service.predictor.compare(
                registry.resolve("iris", Asked(version=1)),
                registry.resolve("iris", Asked(version=2)),
                FLOWERS,
            )

    comparison = run(main())
    v1, v2 = _outputs(IRIS, FLOWERS), _outputs(_version_folder(root, 2), FLOWERS)
    assert (comparison.a, comparison.b, len(comparison.rows)) == (1, 2, len(FLOWERS))
    for row, a, b in zip(comparison.rows, v1, v2, strict=True):
        assert row.class_changed == (a.argmax() != b.argmax())
        assert row.mean_abs_difference == pytest.approx(np.abs(a - b).mean(), abs=1e-6)
    layers = {layer.layer: layer for layer in comparison.layers}
    assert comparison.unmatched_layers == []
    # The normalization layer is the same in both; the perturbed Dense layers are not.
    assert layers["normalize"].mean_abs_difference == 0
    assert layers["dense"].mean_abs_difference > 0


async def _shadows_done(service: InferenceService) -> None:
    """Wait until every shadow copy offered so far has finished."""
    await asyncio.wait_for(service.shadow.idle(), 120)  # a bound on a hang, not a timing


def _version_folder(root, version):
    return root / "iris" / str(version)


def _outputs(folder, rows):
    import tensorflow as tf

    serve = tf.saved_model.load(str(folder)).signatures["serving_default"]
    (name,) = serve.structured_input_signature[1]
    return serve(**{name: tf.constant(rows)})["probabilities"].numpy()


def test_compare_refuses_versions_with_other_inputs_but_not_other_ranges(root):
    async def main():
        async with serving(root) as service:
            registry = service.registry
            second = registry.resolve("iris", Asked(version=2))
            card = second.loaded_card
            assert card.input.features is not None
            card.input.features[0].allowed_max += 1  # a retrained version's ranges differ
            await service.predictor.compare(
                registry.resolve("iris", Asked(version=1)), second, FLOWERS
            )
            card.input.features[0].name = "sepal_len"
            with pytest.raises(BadInput, match="take different inputs"):
                await service.predictor.compare(
                    registry.resolve("iris", Asked(version=1)), second, FLOWERS
                )

    run(main())


def test_a_paused_candidate_gets_copies_again_once_it_answers(root, monkeypatch):
    monkeypatch.setattr("app.dataplane.shadow.FAILURES_BEFORE_PAUSE", 1)

    async def main():
        async with serving(root) as service:
            registry = service.registry
            plan = RolloutPlan(labels={"stable": 1}, shadow=ShadowPlan(version=2))
            registry.set_plan("iris", plan)
            candidate = registry.resolve("iris", Asked(version=2), ready=False)
            working = candidate.predict

            def broken(batch):
                raise RuntimeError("candidate is broken")

            candidate.predict = broken
            await service.predictor.predict(registry.resolve("iris", split=True), FLOWERS[:1])
            await _shadows_done(service)
            tally = service.shadow.tally("iris", 2)
            assert (tally.errors, tally.paused_until > 0) == (1, True)
            tally.paused_until = 0.0  # as if the pause had passed
            candidate.predict = working
            await service.predictor.predict(registry.resolve("iris", split=True), FLOWERS[:1])
            await _shadows_done(service)
            return tally

    tally = run(main())
    assert (tally.compared_rows, tally.failures_in_a_row) == (1, 0)


def test_a_caller_is_its_caller_id_else_its_api_key():
    from app.core.keys import caller_of

    assert caller_of("svc-1", "key", "Bearer other") == "svc-1"
    assert caller_of(None, " key ", None) == "key"
    assert caller_of(None, None, "Bearer token") == "token"
    assert caller_of(None, None, "Basic dXNlcjpwYXNz") is None
    assert caller_of("", " ", None) is None
