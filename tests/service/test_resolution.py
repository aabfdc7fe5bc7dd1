"""The registry's one resolution: what a request names, read once, to the version that answers
(docs/rollouts.md's rules), for every surface."""

from pathlib import Path

import pytest

from app.core.errors import BadInput, ModelNotFound, ModelNotReady
from app.runtime.model import ModelRuntime, ModelState
from app.runtime.registry import DEFAULT, Asked, ModelRegistry
from app.runtime.rollout import RolloutPlan, caller_var


def registry_of(states: dict[int, ModelState]) -> ModelRegistry:
    registry = ModelRegistry()
    for version, state in states.items():
        runtime = ModelRuntime("iris", version, Path("iris") / str(version))
        runtime.state = state
        registry.add(runtime)
    return registry


READY, LOADING, FAILED = ModelState.READY, ModelState.LOADING, ModelState.FAILED


@pytest.mark.parametrize(
    ("text", "asked"),
    [
        ("", DEFAULT),
        ("2", Asked(version=2)),
        ("007", Asked(version=7)),
        ("canary", Asked(label="canary")),
        ("1.0", Asked(label="1.0")),  # not a number: a label, which no rollout can name (404)
        ("٣", Asked(label="٣")),  # a digit, but not an ASCII one
    ],
)
def test_version_text_is_read_one_way(text, asked):
    assert Asked.of_text("iris", text) == asked


def test_where_a_surface_takes_no_labels_a_word_is_no_version():
    assert Asked.of_text("iris", "2", labels=False) == Asked(version=2)
    with pytest.raises(ModelNotFound, match="no version 'canary'; versions are numbers"):
        Asked.of_text("iris", "canary", labels=False)


def test_the_default_is_stable_when_ready_else_the_newest_ready_else_the_newest():
    registry = registry_of({1: READY, 2: READY, 3: LOADING})
    assert registry.resolve("iris").version == 2
    registry.set_plan("iris", RolloutPlan(labels={"stable": 1}))
    assert registry.resolve("iris").version == 1
    assert registry_of({1: FAILED, 2: LOADING}).resolve("iris", ready=False).version == 2


def test_a_version_or_a_label_names_it_and_both_is_refused():
    registry = registry_of({1: READY, 2: READY})
    registry.set_plan("iris", RolloutPlan(labels={"canary": 2}))
    assert registry.resolve("iris", Asked(version=1)).version == 1
    assert registry.resolve("iris", Asked(label="canary")).version == 2
    with pytest.raises(BadInput, match="not both"):
        registry.resolve("iris", Asked(version=1, label="canary"))
    with pytest.raises(ModelNotFound, match=r"no version 5\. Versions: 1, 2"):
        registry.resolve("iris", Asked(version=5))
    with pytest.raises(ModelNotFound, match=r"no version label 'beta'\. Labels: canary"):
        registry.resolve("iris", Asked(label="beta"))
    with pytest.raises(ModelNotFound, match="No model named 'rose'"):
        registry.resolve("rose")


def test_only_a_request_to_answer_goes_through_the_split_and_a_version_not_ready_gives_way():
    registry = registry_of({1: READY, 2: READY})
    registry.set_plan("iris", RolloutPlan(weights={1: 0, 2: 100}))
    registry.set_plan("iris", RolloutPlan(labels={"stable": 1}, weights={2: 100}))
    token = caller_var.set("a caller")
    try:
        assert registry.resolve("iris", split=True).version == 2
        assert registry.resolve("iris").version == 1  # metadata describes the default
        assert registry.resolve("iris", Asked(version=1), split=True).version == 1
        registry.resolve("iris", Asked(version=2)).state = LOADING
        assert registry.resolve("iris", split=True).version == 1
    finally:
        caller_var.reset(token)


def test_ready_refuses_a_version_loading_or_failed_and_status_sees_it_whatever_its_state():
    registry = registry_of({1: LOADING, 2: FAILED})
    with pytest.raises(ModelNotReady, match="version 1 is still loading"):
        registry.resolve("iris", Asked(version=1))
    with pytest.raises(ModelNotReady, match="version 2 is unavailable: it failed to load"):
        registry.resolve("iris", Asked(version=2))
    assert registry.resolve("iris", Asked(version=2), ready=False).state is FAILED
