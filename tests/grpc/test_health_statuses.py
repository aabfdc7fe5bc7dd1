"""The gRPC health statuses follow readiness as /health/ready does: overall and per protocol
service SERVING only when no model is missing, a model SERVING while it has a ready version,
and a removed model NOT_SERVING (not forgotten, so a watcher sees it go)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from grpc_health.v1 import health_pb2

from app.dataplane.admission import InFlightLimit
from app.grpc.calls import CallGuard
from app.grpc.server import SERVICES, HealthStatuses
from app.runtime.registry import ModelRegistry

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Service:
    """What HealthStatuses reads of the InferenceService: readiness and the registry."""

    def __init__(self, models: dict[str, list[bool]]):
        self.models = models
        self.registry = SimpleNamespace(
            names=lambda: sorted(self.models),
            versions=lambda name: [SimpleNamespace(ready=ready) for ready in self.models[name]],
        )
        self.catalog = SimpleNamespace(missing=self.missing)

    def missing(self) -> list[str]:
        return [name for name, versions in self.models.items() if not any(versions)]


def statuses(health: HealthStatuses, names: list[str]) -> dict[str, int]:
    async def check(name: str) -> int:
        answer = await health.servicer.Check(health_pb2.HealthCheckRequest(service=name), None)
        return answer.status

    async def main() -> dict[str, int]:
        await health.update()
        return {name: await check(name) for name in names}

    return asyncio.run(main())


def test_every_status_follows_readiness_and_reloads():
    service = Service({"iris": [True], "mnist": [False]})  # mnist still loading
    health = HealthStatuses(service, CallGuard([], InFlightLimit(1, ModelRegistry())))
    names = ["", *SERVICES, "iris", "mnist"]
    first = statuses(health, names)
    assert first == {"": NOT_SERVING, **dict.fromkeys(SERVICES, NOT_SERVING), "iris": SERVING,
                     "mnist": NOT_SERVING}  # fmt: skip
    service.models["mnist"] = [False, True]  # loaded
    assert set(statuses(health, names).values()) == {SERVING}
    del service.models["iris"]  # removed from the folder
    after = statuses(health, names)
    assert after["iris"] == NOT_SERVING
    assert after[""] == SERVING
