"""The data plane counts its own model calls: whichever transport a prediction came by (HTTP,
gRPC or none, as here), its batch shows in the same series, without the HTTP package."""

import asyncio

import numpy as np
from prometheus_client import REGISTRY

from app.core.settings import Settings
from app.dataplane.service import InferenceService
from tests.conftest import MODELS

FLOWERS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)


def batches(version: str) -> float:
    labels = {"model": "iris", "version": version}
    return REGISTRY.get_sample_value("glassbox_inference_batch_size_count", labels) or 0.0


def test_a_prediction_without_any_transport_is_counted_in_the_shared_series():
    async def main() -> str:
        service = InferenceService(Settings(model_dir=MODELS, models=["iris"], poll_interval_s=0))
        try:
            await service.catalog.reload()
            runtime = service.registry.resolve("iris")
            before = batches(str(runtime.version))
            await service.predictor.predict(runtime, FLOWERS)
            assert batches(str(runtime.version)) == before + 1
            return str(runtime.version)
        finally:
            await service.aclose()

    asyncio.run(main())
