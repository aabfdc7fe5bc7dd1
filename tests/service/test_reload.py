"""Faults in model folders and hot updates: bad versions never take good ones down."""

import asyncio
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from app.artifact.card import CARD_FILE, ModelCard, hash_files
from app.artifact.layout import scan_versions
from app.core.settings import Settings
from app.dataplane import catalog as catalog_module
from app.dataplane.service import InferenceService
from app.runtime.model import relative_paths
from app.runtime.registry import Asked
from tests.conftest import MODELS
from tests.rollout_models import add_version

IRIS = sorted((MODELS / "iris").iterdir())[-1]
FLOWER = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)


def copy_version(root: Path, version: int, name: str = "iris") -> Path:
    return add_version(root, IRIS, version, name)


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.fixture
def root(tmp_path):
    copy_version(tmp_path, 1)
    return tmp_path


def service_for(root: Path) -> InferenceService:
    # Requests may queue behind a reload: a busy machine must not turn them into timeouts.
    return InferenceService(Settings(model_dir=root, poll_interval_s=0, request_timeout_s=120))


def states(service: InferenceService) -> dict[str, str]:
    return {f"{r.name}/{r.version}": r.state.value for r in service.registry.all()}


def test_missing_card_is_reported_and_others_serve(root):
    broken = copy_version(root, 1, name="nocard")
    (broken / CARD_FILE).unlink()

    async def main():
        service = service_for(root)
        report = await service.catalog.reload()
        await service.predictor.predict(service.registry.resolve("iris"), FLOWER)
        await service.aclose()
        return service, report

    service, report = run(main())
    assert states(service) == {"iris/1": "ready", "nocard/1": "failed"}
    assert "model card" in report.failed[0]
    assert service.catalog.missing() == ["nocard/1"]


def test_a_failed_versions_reason_names_paths_from_the_model_folder_only(root):
    """The reason is public (/api/models, v2 metadata): where the server keeps its files is
    not, and TensorFlow's own errors name absolute paths."""
    broken = copy_version(root, 1, name="nograph")
    (broken / "saved_model.pb").unlink()

    async def main():
        service = InferenceService(Settings(model_dir=root, poll_interval_s=0, verify_hashes=False))
        await service.catalog.reload()
        await service.aclose()
        return service

    service = run(main())
    reason = service.registry.versions("nograph")[0].reason
    assert "nograph/1" in reason
    assert str(root) not in reason
    assert str(root.resolve()) not in reason


def test_a_relative_model_folder_leaves_no_part_of_its_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    absolute = tmp_path.resolve() / "models" / "iris" / "1" / "saved_model.pb"
    text = f"no file at: {absolute}"
    assert relative_paths(text, Path("models")) == "no file at: iris/1/saved_model.pb"


def test_folders_not_named_by_ascii_digits_are_not_versions(root):
    for name in ("latest", "²", "1.5"):
        (root / "iris" / name).mkdir()
    assert sorted(scan_versions(root)) == [("iris", 1)]


def test_savedmodel_without_trace_signature_is_refused(root):
    target = root / "notrace" / "1"
    loaded = tf.saved_model.load(str(IRIS))
    tf.saved_model.save(
        loaded, str(target), signatures={"serving_default": loaded.signatures["serving_default"]}
    )
    card = ModelCard.read(IRIS)
    card.name, card.files = "notrace", hash_files(target)
    card.write(target)

    async def main():
        service = service_for(root)
        report = await service.catalog.reload()
        await service.aclose()
        return report

    report = run(main())
    assert report.failed == ["notrace/1: the SavedModel lacks the signature(s) ['trace']"]


def test_new_version_is_loaded_and_served_then_removal_falls_back(root):
    async def main():
        service = service_for(root)
        await service.catalog.reload()
        assert service.registry.resolve("iris").version == 1
        copy_version(root, 2)
        report = await service.catalog.reload()
        assert report.loaded == ["iris/2"]
        assert service.registry.resolve("iris").version == 2
        shutil.rmtree(root / "iris" / "2")
        report = await service.catalog.reload()
        assert report.removed == ["iris/2"]
        assert service.registry.resolve("iris").version == 1
        await service.aclose()

    run(main())


def test_a_version_that_fails_to_load_never_replaces_a_good_one(root):
    async def main():
        service = service_for(root)
        await service.catalog.reload()
        bad = copy_version(root, 2)
        (bad / "saved_model.pb").write_bytes(b"not a graph")
        report = await service.catalog.reload()
        assert report.failed
        assert report.failed[0].startswith("iris/2")
        served = service.registry.resolve("iris")
        assert served.version == 1
        output = await service.predictor.predict(served, FLOWER)
        # Fixed later (files replaced): the next poll loads it.
        shutil.rmtree(bad)
        copy_version(root, 2)
        report = await service.catalog.reload()
        assert report.loaded == ["iris/2"]
        await service.aclose()
        return output

    assert run(main()).shape == (1, 3)


def test_requests_in_flight_on_a_removed_version_finish(root):
    async def main():
        service = service_for(root)
        await service.catalog.reload()
        runtime = service.registry.resolve("iris")
        in_flight = [
            asyncio.create_task(service.predictor.predict(runtime, FLOWER)) for _ in range(50)
        ]
        await asyncio.sleep(0)
        shutil.rmtree(root / "iris" / "1")
        copy_version(root, 2)
        await service.catalog.reload()
        results = await asyncio.gather(*in_flight)
        await service.aclose()
        return results

    results = run(main())
    assert len(results) == 50
    assert all(r.shape == (1, 3) for r in results)


def test_a_removal_settles_the_heap_once_after_its_requests_drain(root, monkeypatch):
    """A collection before the drain would find the removed model still referenced by its
    batcher, and each one holds up the event loop."""
    settled = []
    monkeypatch.setattr(catalog_module, "settle_heap", lambda: settled.append("settled"))

    async def main():
        service = service_for(root)
        copy_version(root, 2)
        await service.catalog.reload()
        loading = len(settled)
        await service.predictor.predict(
            service.registry.resolve("iris", Asked(version=2)), FLOWER
        )  # makes its batcher
        shutil.rmtree(root / "iris" / "2")
        await service.catalog.reload()
        await asyncio.gather(*service.catalog._background)
        await service.aclose()
        return loading

    assert run(main()) == 1
    assert settled == ["settled", "settled"]
