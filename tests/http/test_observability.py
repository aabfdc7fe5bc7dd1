"""/metrics, the X-Request-ID round trip and the JSON request log, through the app."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time

from prometheus_client.parser import text_string_to_metric_families

from app.core.logging import JsonFormatter, log_fields, request_id_var
from app.dataplane import metrics
from app.http import observability
from tests.http.protocol_cases import model_names
from tests.metrics import sample


def request_lines(output: str) -> list[dict]:
    entries = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [entry for entry in entries if entry["message"] == "request"]


def test_metrics_is_prometheus_text(app_client):
    response = app_client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert {
        "glassbox_http_requests",
        "glassbox_http_request_duration_seconds",
        "glassbox_inference_duration_seconds",
        "glassbox_inference_batch_size",
        "glassbox_queue_depth",
        "glassbox_rejected_requests",
        "glassbox_model_state",
        "glassbox_model_default_version",
        "glassbox_payload_log_written",  # exported with the log off too, at 0
        "glassbox_payload_log_dropped",
    } <= names


def test_a_request_shows_up_by_route_template_and_status(app_client):
    labels = {"method": "GET", "route": "/api/models/{name}", "status": "404"}
    before = sample(app_client, "glassbox_http_requests_total", **labels)
    assert app_client.get("/api/models/no-such-model").status_code == 404
    assert sample(app_client, "glassbox_http_requests_total", **labels) == before + 1
    latency = {"method": "GET", "route": "/api/models/{name}"}
    assert sample(app_client, "glassbox_http_request_duration_seconds_count", **latency) >= 1


def test_unknown_paths_share_one_label(app_client):
    labels = {"method": "GET", "route": observability.UNMATCHED_ROUTE, "status": "404"}
    before = sample(app_client, "glassbox_http_requests_total", **labels)
    app_client.get("/made-up/path/1")
    app_client.get("/made-up/path/2")
    assert sample(app_client, "glassbox_http_requests_total", **labels) == before + 2
    assert "/made-up/path" not in app_client.get("/metrics").text


def test_model_states_come_from_the_registry(app_client):
    models = app_client.get("/api/models").json()["models"]
    assert sorted(model["name"] for model in models) == model_names()
    for model in models:
        for version in model["versions"]:
            value = sample(
                app_client,
                "glassbox_model_state",
                model=model["name"],
                version=str(version["version"]),
                state=version["state"],
            )
            assert value == 1.0
        if model["default_version"] is not None:
            default = sample(app_client, "glassbox_model_default_version", model=model["name"])
            assert default == model["default_version"]


def test_the_batcher_hooks_show_up(app_client):
    metrics.observe_inference("hook-test", 7, 0.012, batch_size=5)
    metrics.set_queue_depth("hook-test", 7, 3)
    metrics.count_rejected("hook-test", 7, "queue_full")
    labels = {"model": "hook-test", "version": "7"}
    assert sample(app_client, "glassbox_inference_duration_seconds_count", **labels) >= 1
    assert sample(app_client, "glassbox_inference_batch_size_sum", **labels) >= 5
    assert sample(app_client, "glassbox_queue_depth", **labels) == 3
    rejected = {**labels, "reason": "queue_full"}
    assert sample(app_client, "glassbox_rejected_requests_total", **rejected) >= 1


def test_a_given_request_id_is_echoed(app_client):
    response = app_client.get("/health/live", headers={"X-Request-ID": "trace-42.a"})
    assert response.headers["x-request-id"] == "trace-42.a"


def test_a_request_id_is_made_when_none_is_given(app_client):
    first = app_client.get("/health/live").headers["x-request-id"]
    second = app_client.get("/health/live").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second


def test_an_unsafe_request_id_is_replaced(app_client):
    given = "x" * 200  # too long to be echoed into logs and headers
    echoed = app_client.get("/health/live", headers={"X-Request-ID": given})
    assert re.fullmatch(r"[0-9a-f]{32}", echoed.headers["x-request-id"])


def test_each_request_logs_one_json_line_with_the_documented_fields(app_client, capsys, caplog):
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="app"):
        response = app_client.get(
            "/api/models/no-such-model?version=3", headers={"X-Request-ID": "log-test-1"}
        )
    lines = request_lines(capsys.readouterr().err)
    assert len(lines) == 1, lines
    line = lines[0]
    assert set(line) >= {
        "ts",
        "level",
        "logger",
        "message",
        "request_id",
        "method",
        "route",
        "model",
        "version",
        "status",
        "latency_ms",
    }
    assert line["request_id"] == "log-test-1" == response.headers["x-request-id"]
    assert (line["method"], line["route"], line["status"]) == ("GET", "/api/models/{name}", 404)
    assert (line["model"], line["version"]) == ("no-such-model", 3)
    assert line["level"] == "INFO"
    assert line["logger"] == "app.http.observability"
    assert isinstance(line["latency_ms"], float)
    assert line["latency_ms"] >= 0


def test_request_bodies_are_never_logged(app_client, capsys, caplog):
    capsys.readouterr()
    secret = "do-not-log-this-value"
    with caplog.at_level(logging.DEBUG, logger="app"):
        app_client.post("/api/models/no-such-model/predict", json={"secret": secret})
    output = capsys.readouterr().err
    assert request_lines(output)
    assert secret not in output


def test_probes_log_at_debug_only(app_client, capsys, caplog):
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="app"):
        app_client.get("/health/live")
    assert request_lines(capsys.readouterr().err) == []


def test_an_unhandled_error_is_a_500_answered_and_logged_with_its_id(capsys, caplog, tmp_path):
    from fastapi.testclient import TestClient

    from app.core.settings import Settings
    from app.http.app import create_app

    app = create_app(Settings(model_dir=tmp_path))

    @app.get("/boom")
    async def boom():
        raise RuntimeError("boom")

    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="app"):
        client = TestClient(app, raise_server_exceptions=False)  # no lifespan: no models
        response = client.get("/boom", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "boom-1"
    ordinary = client.get("/health/live")  # the security headers, as on every other answer
    for name in ("X-Content-Type-Options", "X-Frame-Options", "Content-Security-Policy"):
        assert response.headers[name] == ordinary.headers[name]
    entries = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line[:1] == "{"]
    ours = [entry for entry in entries if entry.get("request_id") == "boom-1"]
    assert [entry["message"] for entry in ours] == ["request", "unhandled error"]
    assert ours[0]["status"] == 500
    assert ours[0]["route"] == "/boom"
    assert "exc_info" in ours[1]


def test_a_prediction_is_counted_by_the_batcher(app_client):
    labels = {"model": "iris", "version": "1"}
    before = sample(app_client, "glassbox_inference_batch_size_count", **labels)
    flower = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    assert app_client.post("/api/models/iris/predict", json=flower).status_code == 200
    assert sample(app_client, "glassbox_inference_batch_size_count", **labels) == before + 1
    assert sample(app_client, "glassbox_inference_duration_seconds_count", **labels) >= 1


def test_a_log_line_with_text_pydantic_core_cannot_encode_is_still_json():
    # A model folder whose name is not UTF-8 reaches the logs as a lone surrogate.
    record = logging.makeLogRecord({"msg": "model ready", "model": "digits-\udcff"})
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "model ready"
    assert entry["model"] == "digits-\udcff"


AT = 1796157240.9455  # 2026-12-01T20:34:00.945 UTC


def _no_record(*args, **kwargs):
    raise AssertionError("a LogRecord was made")


def test_the_request_line_without_a_record_is_the_line_a_record_gives(
    app_client, capsys, monkeypatch
):
    # Under uvicorn the JSON handler is all a request line reaches, and `log_fields` writes it
    # without a LogRecord; pytest's own capture handlers on the root would hide that path.
    monkeypatch.setattr(logging.root, "handlers", [])
    fields = {"method": "GET", "route": "/x/{name}", "model": "iris", "version": 2, "status": 200}
    logger = logging.getLogger("app.http.observability")
    capsys.readouterr()
    token = request_id_var.set("direct-1")
    try:
        with monkeypatch.context() as no_records:
            no_records.setattr(logger, "makeRecord", _no_record)
            no_records.setattr(time, "time", lambda: AT)  # both lines made at the same instant
            log_fields(logger, logging.INFO, "request", fields)
        direct = capsys.readouterr().err.splitlines()
        record = logger.makeRecord(
            logger.name, logging.INFO, "", 0, "request", (), None, extra=fields
        )
        record.created = AT
        via_record = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert len(direct) == 1
    line = json.loads(direct[0])
    assert line == via_record
    assert line["ts"] == "2026-12-01T20:34:00.945+00:00"
    assert line["request_id"] == "direct-1"


def test_a_record_factorys_private_attributes_are_not_logged(monkeypatch):
    # Ray installs a record factory that adds `_ray_timestamp_ns` to every record once started.
    made = logging.getLogRecordFactory()

    def with_private_mark(*args, **kwargs):
        record = made(*args, **kwargs)
        record._library_mark = 1
        return record

    monkeypatch.setattr(logging, "_logRecordFactory", with_private_mark)
    record = logging.getLogger("app.test").makeRecord(
        "app.test", logging.INFO, "", 0, "request", (), None, extra={"model": "iris"}
    )
    line = json.loads(JsonFormatter().format(record))
    assert line["model"] == "iris"
    assert "_library_mark" not in line


def test_another_handler_gets_a_real_record(app_client, caplog):
    with caplog.at_level(logging.INFO, logger="app"):
        log_fields(
            logging.getLogger("app.http.observability"),
            logging.INFO,
            "request",
            {"status": 204, "route": "/y"},
        )
    (record,) = [r for r in caplog.records if r.getMessage() == "request"]
    assert (record.status, record.route) == (204, "/y")


def test_a_disabled_level_writes_nothing(app_client, capsys, monkeypatch):
    monkeypatch.setattr(logging.root, "handlers", [])
    capsys.readouterr()
    log_fields(logging.getLogger("app.http.observability"), logging.DEBUG, "request", {})
    assert capsys.readouterr().err == ""


def test_lines_of_one_loop_turn_are_written_together_in_order(app_client, capsys, monkeypatch):
    monkeypatch.setattr(logging.root, "handlers", [])
    logger = logging.getLogger("app.http.observability")
    capsys.readouterr()

    async def one_turn() -> tuple[list[str], list[str]]:
        log_fields(logger, logging.INFO, "request", {"n": 1})
        logging.getLogger("app.other").warning("a record between")  # written in its place
        log_fields(logger, logging.INFO, "request", {"n": 2})
        during = capsys.readouterr().err.splitlines()
        await asyncio.sleep(0)  # the next turn of the loop writes the rest
        await asyncio.sleep(0)
        return during, capsys.readouterr().err.splitlines()

    during, after = asyncio.run(one_turn())
    assert [json.loads(line).get("n") for line in during] == [1, None]
    assert [json.loads(line)["n"] for line in after] == [2]


def test_pending_lines_are_written_at_shutdown(app_client, capsys, monkeypatch):
    monkeypatch.setattr(logging.root, "handlers", [])
    logger = logging.getLogger("app.http.observability")
    (handler,) = logging.getLogger("app").handlers
    capsys.readouterr()

    async def log_then_flush() -> str:
        log_fields(logger, logging.INFO, "request", {"n": 3})
        handler.flush()  # what logging.shutdown does at exit
        return capsys.readouterr().err

    assert json.loads(asyncio.run(log_then_flush()))["n"] == 3
