"""Shared fixtures: the committed models, the small committed data samples, the app client."""

import asyncio
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# No gRPC server on the default port from any app or process the tests start: tests that serve
# gRPC give it a free port of its own (tests/ops/server.py).
os.environ["GLASSBOX_GRPC_PORT"] = "0"

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def threads_used(monkeypatch) -> list[str]:
    """Names of the functions the app hands to a worker thread with `asyncio.to_thread`."""
    used = []
    real = asyncio.to_thread

    async def recording_to_thread(function, *args):
        used.append(function.__name__)
        return await real(function, *args)

    monkeypatch.setattr(asyncio, "to_thread", recording_to_thread)
    return used


@pytest.fixture(scope="session")
def mnist_sample():
    with np.load(FIXTURES / "mnist_sample.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="session")
def housing_sample():
    with np.load(FIXTURES / "housing_sample.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="session")
def catdog_photos() -> list[tuple[Path, str]]:
    """The committed held-out photos with their labels."""
    root = FIXTURES / "catdog" / "test"
    return [(path, label) for label in ("cat", "dog") for path in sorted((root / label).glob("*"))]


@pytest.fixture(scope="session")
def app_client():
    """One app on the committed models for the whole session (loading takes seconds)."""
    from fastapi.testclient import TestClient

    from app.core.settings import Settings
    from app.http.app import create_app

    with TestClient(create_app(Settings(model_dir=MODELS))) as client:
        yield client


@pytest.fixture(scope="session")
def iris_v2(tmp_path_factory) -> Path:
    """A second iris version that disagrees with the committed one on some flowers."""
    from tests.rollout_models import perturbed_iris

    return perturbed_iris(tmp_path_factory.mktemp("iris-v2") / "2")
