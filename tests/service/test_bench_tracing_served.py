"""The one-server tracing benchmark: its switch route and the ratios of its table."""

import asyncio
import json

import pytest

from app.core import tracing
from bench import tracing_switch
from bench.tracing_served import summary


def _call(body: dict, path: str = tracing_switch.SWITCH_PATH) -> list[dict]:
    sent: list[dict] = []
    chunks = [json.dumps(body).encode()[:5], json.dumps(body).encode()[5:]]

    async def receive() -> dict:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "path": path, "method": "POST", "headers": []}
    asyncio.run(tracing_switch.app(scope, receive, send))
    return sent


def test_the_switch_turns_tracing_on_at_a_ratio_and_off(monkeypatch):
    for name in ("OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_EXPORTER_OTLP_ENDPOINT",
                 "OTEL_SERVICE_NAME"):  # fmt: skip
        monkeypatch.setenv(name, "")  # what the switch sets is taken back after the test
    try:
        answer = _call({"ratio": 0.25, "endpoint": "http://127.0.0.1:9"})
        assert answer[0]["status"] == 204
        assert tracing.enabled()
        assert tracing._state.provider is not None
        assert "0.25" in tracing._state.provider.sampler.get_description()
        _call({"ratio": None})
        assert not tracing.enabled()
    finally:
        tracing.shutdown()


def test_every_other_request_goes_to_the_service(monkeypatch):
    seen = []

    async def service(scope, receive, send):
        seen.append(scope["path"])

    monkeypatch.setattr(tracing_switch, "service", service)
    _call({}, path="/api/models/iris/predict")
    assert seen == ["/api/models/iris/predict"]


def _block(rps: float, cpu_ms: float) -> dict:
    return {"rps": rps, "cpu_ms": cpu_ms, "p50_ms": 1.0, "p99_ms": 2.0, "errors": 0}


def test_each_setting_is_judged_by_the_median_of_its_rounds_ratios_to_off():
    off = [_block(1000, 0.4), _block(500, 0.8), _block(1000, 0.4)]
    traced = [_block(900, 0.44), _block(500, 0.8), _block(700, 0.52)]
    rows = {row["setting"]: row for row in summary({"off": off, "10%": traced})}
    assert rows["off"]["rps_vs_off"] == rows["off"]["cpu_vs_off"] == 1.0
    assert rows["10%"]["rps_vs_off"] == pytest.approx(0.9)  # ratios 0.9, 1.0, 0.7
    assert rows["10%"]["rps_vs_off_range"] == pytest.approx([0.7, 1.0])
    assert rows["10%"]["cpu_vs_off"] == pytest.approx(1.1)  # ratios 1.1, 1.0, 1.3
    assert rows["10%"]["rps"] == 700
