"""The model repository calls on the data plane (`app.dataplane.repository`) and the wanted set
of explicit model control (`app.dataplane.model_control`), on copies of the committed iris."""

import asyncio
import json
import os
import threading

import numpy as np
import pytest

from app.core.errors import ModelNotFound, ModelNotInRepository, RepositoryRefused
from app.core.settings import Settings
from app.dataplane.model_control import WantedModels
from app.dataplane.service import InferenceService
from tests.service.test_reload import copy_version, run

FLOWER = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)


@pytest.fixture
def root(tmp_path):
    copy_version(tmp_path / "models", 1)
    copy_version(tmp_path / "models", 1, name="other")
    return tmp_path / "models"


def service_for(root, **settings) -> InferenceService:
    return InferenceService(
        Settings(model_dir=root, poll_interval_s=0, request_timeout_s=120, **settings)
    )


def index(service, ready_only=False):
    return [
        (entry.name, entry.version, entry.state, entry.reason)
        for entry in service.repository.index(ready_only)
    ]


def test_the_setting_is_poll_by_default_and_refuses_other_modes():
    assert Settings().model_control == "poll"
    with pytest.raises(ValueError, match="model_control"):
        Settings(model_control="none")


def test_an_empty_model_control_file_setting_is_none_not_the_current_folder(monkeypatch):
    monkeypatch.setenv("GLASSBOX_MODEL_CONTROL_FILE", "")
    assert Settings().model_control_file is None
    monkeypatch.setenv("GLASSBOX_MODEL_CONTROL_FILE", "/run/glassbox/models.json")
    assert str(Settings().model_control_file) == "/run/glassbox/models.json"


def test_explicit_mode_serves_only_what_was_named_at_start(root):
    async def main():
        service = service_for(root, model_control="explicit", models=["iris"])
        await service.catalog.reload()
        await service.aclose()
        return service

    service = run(main())
    assert service.registry.names() == ["iris"]
    assert index(service) == [
        ("iris", 1, "ready", None),
        ("other", None, "unloaded", "unloaded"),
    ]
    assert service.catalog.missing() == []


def test_explicit_mode_with_nothing_named_serves_nothing_and_is_ready(root):
    async def main():
        service = service_for(root, model_control="explicit")
        await service.catalog.reload()
        await service.aclose()
        return service

    service = run(main())
    assert service.registry.names() == []
    assert service.catalog.missing() == []


def test_a_load_serves_the_model_at_once_and_an_unload_stops_it(root):
    async def main():
        service = service_for(root, model_control="explicit")
        await service.catalog.reload()
        await service.repository.load("other")
        loaded = await service.predictor.predict(service.registry.resolve("other"), FLOWER)
        ready = index(service, ready_only=True)
        await service.repository.unload("other")
        await service.aclose()
        return service, loaded, ready

    service, loaded, ready = run(main())
    assert loaded.shape == (1, 3)
    assert ready == [("other", 1, "ready", None)]
    with pytest.raises(ModelNotFound):
        service.registry.resolve("other")
    assert ("other", None, "unloaded", "unloaded") in index(service)


def test_an_unload_lets_requests_in_flight_finish_then_answers(root):
    async def main():
        service = service_for(root, model_control="explicit", models=["iris"])
        await service.catalog.reload()
        runtime = service.registry.resolve("iris")
        in_flight = [
            asyncio.create_task(service.predictor.predict(runtime, FLOWER)) for _ in range(8)
        ]
        # Until they are queued on the version's batcher.
        while runtime.batcher is None or not runtime.batcher.depth:  # noqa: ASYNC110
            await asyncio.sleep(0)
        await service.repository.unload("iris")
        finished_first = [task.done() for task in in_flight]
        answers = await asyncio.gather(*in_flight)
        await service.aclose()
        return answers, finished_first

    answers, finished_first = run(main())
    assert finished_first == [True] * 8
    assert [answer.shape for answer in answers] == [(1, 3)] * 8


def test_a_failed_load_is_refused_with_the_reason_and_shows_in_the_index(root):
    (root / "other" / "1" / "metadata.json").write_text("{not json")

    async def main():
        service = service_for(root, model_control="explicit")
        await service.catalog.reload()
        with pytest.raises(RepositoryRefused, match="'other' failed to load: version 1: "):
            await service.repository.load("other")
        await service.aclose()
        return service

    service = run(main())
    [(name, version, state, reason)] = [row for row in index(service) if row[0] == "other"]
    assert (name, version, state) == ("other", 1, "failed")
    assert "model card" in reason
    assert service.catalog.missing() == ["other/1"]  # asked for, not loaded: not ready


def test_unknown_names_are_refused_naming_the_models_there(root):
    async def main():
        service = service_for(root, model_control="explicit")
        await service.catalog.reload()
        with pytest.raises(ModelNotInRepository, match="Models there: iris, other"):
            await service.repository.load("nope")
        with pytest.raises(ModelNotInRepository, match="nothing to unload"):
            await service.repository.unload("nope")
        with pytest.raises(ModelNotInRepository):
            await service.repository.load("")
        await service.repository.unload("other")  # in the folder, not served: nothing to do
        await service.aclose()

    run(main())


def test_poll_mode_loads_now_and_refuses_an_unload(root):
    async def main():
        service = service_for(root)
        await service.catalog.reload()
        copy_version(root, 2)
        await service.repository.load("iris")  # does not wait for a poll
        versions = [r.version for r in service.registry.versions("iris")]
        with pytest.raises(RepositoryRefused, match="GLASSBOX_MODEL_CONTROL=explicit"):
            await service.repository.unload("iris")
        await service.aclose()
        return versions

    assert run(main()) == [1, 2]


def test_poll_mode_refuses_a_model_outside_glassbox_models(root):
    async def main():
        service = service_for(root, models=["iris"])
        await service.catalog.reload()
        rows = index(service)
        with pytest.raises(RepositoryRefused, match="not in GLASSBOX_MODELS"):
            await service.repository.load("other")
        await service.aclose()
        return rows

    assert ("other", None, "unloaded", "not in GLASSBOX_MODELS") in run(main())


def test_a_loaded_model_gets_its_new_versions_at_the_next_poll(root):
    async def main():
        service = service_for(root, model_control="explicit", models=["iris"])
        await service.catalog.reload()
        copy_version(root, 2)
        copy_version(root, 2, name="other")
        await service.catalog.reload()
        await service.aclose()
        return {name: [r.version for r in service.registry.versions(name)] for name in ["iris"]}

    service_versions = run(main())
    assert service_versions == {"iris": [1, 2]}


def test_a_worker_converges_on_the_file_another_worker_changed(root, tmp_path):
    control = tmp_path / "control.json"

    async def main():
        first = service_for(root, model_control="explicit", model_control_file=control)
        second = service_for(root, model_control="explicit", model_control_file=control)
        await first.catalog.reload()
        await second.catalog.reload()
        await first.repository.load("other")
        before_poll = second.registry.names()
        await second.catalog.reload()  # its poll
        after_load = second.registry.names()
        await first.repository.unload("other")
        await second.catalog.reload()
        after_unload = second.registry.names()
        await first.aclose()
        await second.aclose()
        return before_poll, after_load, after_unload

    assert run(main()) == ([], ["other"], [])
    assert json.loads(control.read_text()) == {"models": []}


def test_the_file_is_written_with_the_start_set_and_read_when_it_exists(tmp_path):
    path = tmp_path / "control.json"
    assert WantedModels(["iris"], path).names == {"iris"}
    assert json.loads(path.read_text()) == {"models": ["iris"]}
    path.write_text(json.dumps({"models": ["housing", "iris"]}))
    assert WantedModels([], path).names == {"housing", "iris"}  # a worker started again


def test_an_unreadable_file_keeps_the_set_in_force(tmp_path):
    path = tmp_path / "control.json"
    wanted = WantedModels(["iris"], path)
    path.write_text('{"models": "iris"}')
    assert wanted.refresh() == {"iris"}
    path.write_text('{"models": ["iris", "mnist"]}')
    assert wanted.refresh() == {"iris", "mnist"}


def test_changes_at_once_from_several_writers_all_count(tmp_path):
    path = tmp_path / "control.json"
    writers = [WantedModels([], path) for _ in range(8)]
    threads = [
        threading.Thread(target=writer.add, args=(f"model{index}",))
        for index, writer in enumerate(writers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert WantedModels([], path).names == {f"model{index}" for index in range(8)}


def test_a_file_that_cannot_be_written_refuses_the_change(tmp_path):
    path = tmp_path / "control.json"
    wanted = WantedModels(["iris"], path)
    # Where the new file is written before its rename: a folder, so the write fails (as on a
    # read-only disk; chmod would not stop a test run as root).
    (tmp_path / f".control.json.{os.getpid()}.tmp").mkdir()
    with pytest.raises(RepositoryRefused, match="could not be rewritten"):
        wanted.add("mnist")
    assert wanted.names == {"iris"}
    assert WantedModels([], path).names == {"iris"}
