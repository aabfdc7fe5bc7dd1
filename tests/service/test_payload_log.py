"""The payload log (app.dataplane.payload_log): records, redaction, the size cap, rotation, and
what it does when the disk is full or slow. The writer thread is held with events, never timed:
every wait below is a safety timeout, not part of what is checked."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from app.artifact.card import ModelCard
from app.core.logging import request_id_var
from app.core.settings import Settings
from app.dataplane import payload_log
from app.dataplane.payload_log import PayloadLog, RotatingFile
from app.dataplane.service import InferenceService
from tests.conftest import MODELS

SAFETY_S = 30  # only ever reached when something is broken
IRIS = ModelCard.read(MODELS / "iris" / "1")
HOUSING = ModelCard.read(MODELS / "housing" / "1")
MNIST = ModelCard.read(MODELS / "mnist" / "1")
CATDOG = ModelCard.read(MODELS / "catdog" / "1")
FLOWER = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)
ANSWER = np.array([[0.9, 0.07, 0.03]], dtype=np.float32)


def dropped(reason: str) -> float:
    value = REGISTRY.get_sample_value("glassbox_payload_log_dropped_total", {"reason": reason})
    return value or 0.0


def written() -> float:
    return REGISTRY.get_sample_value("glassbox_payload_log_written_total") or 0.0


class Lines:
    """A sink that keeps the lines; with a gate, each write sets `started` and waits for it."""

    def __init__(self, gate: threading.Event | None = None):
        self.gate = gate
        self.started = threading.Event()
        self.lines: list[bytes] = []
        self.closed = False

    def write(self, line: bytes) -> None:
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(SAFETY_S)
        self.lines.append(line)

    def close(self) -> None:
        self.closed = True

    def records(self) -> list[dict]:
        assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in self.lines)
        return [json.loads(line) for line in self.lines]


def logged(log: PayloadLog, card=IRIS, inputs=FLOWER, outputs=ANSWER) -> None:
    log.offer(card.name, card.version, card, inputs, outputs, 0.0042)


def written_by(card, inputs, outputs, **options) -> Lines:
    sink = Lines()
    log = PayloadLog(sink, **options)
    logged(log, card, inputs, outputs)
    log.close()
    return sink


def records_of(card, inputs, outputs, **options) -> list[dict]:
    return written_by(card, inputs, outputs, **options).records()


def test_a_record_has_the_metadata_and_the_rows_by_feature():
    token = request_id_var.set("req-1")
    try:
        (record,) = records_of(IRIS, FLOWER, ANSWER)
    finally:
        request_id_var.reset(token)
    assert record["request_id"] == "req-1"
    assert record["surface"] is None  # offered outside any transport
    assert (record["model"], record["version"], record["rows"]) == ("iris", 1, 1)
    assert record["latency_ms"] == 4.2
    assert record["ts"].endswith("+00:00")
    # The shortest digits that read back as the float32 the model saw.
    assert record["inputs"] == [
        {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    ]
    assert record["outputs"] == [[0.9, 0.07, 0.03]]
    assert "cut" not in record


def test_redaction_replaces_the_named_features_only():
    rows = np.array([[8.3, 41.0, 6.9, 1.0, 322.0, 2.5, 37.88, -122.23]] * 2, dtype=np.float32)
    (record,) = records_of(
        HOUSING,
        rows,
        np.array([[4.5], [4.5]], np.float32),
        redact=frozenset({"MedInc", "Latitude"}),
    )
    assert len(record["inputs"]) == 2
    for row in record["inputs"]:
        assert row["MedInc"] == row["Latitude"] == payload_log.REDACTED
        assert row["HouseAge"] == 41.0
        assert row["Longitude"] == -122.23
    assert record["outputs"] == [[4.5], [4.5]]


def test_a_model_input_or_output_is_redacted_whole_by_its_card_name():
    image = np.full((1, 28, 28), 255.0, dtype=np.float32)
    (record,) = records_of(
        MNIST, image, np.eye(1, 10, dtype=np.float32), redact=frozenset({"image"})
    )
    assert record["inputs"] == payload_log.REDACTED
    assert len(record["outputs"][0]) == 10
    (record,) = records_of(IRIS, FLOWER, ANSWER, redact=frozenset({"probabilities"}))
    assert record["outputs"] == payload_log.REDACTED
    assert record["inputs"][0]["sepal_length"] == 5.1


def test_an_image_input_is_its_array():
    image = np.arange(28 * 28, dtype=np.float32).reshape(1, 28, 28) / 4
    (record,) = records_of(MNIST, image, np.eye(1, 10, dtype=np.float32))
    assert np.array_equal(np.array(record["inputs"], dtype=np.float32), image)


def answers(rows: int) -> np.ndarray:
    return np.random.default_rng(0).dirichlet([1, 1, 1], rows).astype(np.float32)


def test_a_record_over_the_cap_is_a_whole_line_without_its_inputs():
    # 10 rows by feature name take about 840 bytes, the answers about 380: over 1024 together.
    sink = written_by(IRIS, np.tile(FLOWER, (10, 1)), answers(10), max_record_bytes=1024)
    (line,) = sink.lines
    assert len(line) <= 1024
    (record,) = sink.records()
    assert record["cut"] == ["inputs"]
    assert "inputs" not in record
    assert np.allclose(record["outputs"], answers(10))
    assert (record["model"], record["rows"], record["latency_ms"]) == ("iris", 10, 4.2)


def test_inputs_and_outputs_are_both_cut_when_the_outputs_alone_are_too_long():
    sink = written_by(IRIS, np.tile(FLOWER, (60, 1)), answers(60), max_record_bytes=1024)
    assert len(sink.lines[0]) <= 1024
    (record,) = sink.records()
    assert record["cut"] == ["inputs", "outputs"]
    assert record["rows"] == 60
    assert {"inputs", "outputs"}.isdisjoint(record)


def test_an_image_too_large_for_the_cap_is_cut_before_it_is_queued():
    image = np.random.default_rng(0).uniform(0, 255, (1, 28, 28)).astype(np.float32)
    sink = written_by(MNIST, image, np.eye(1, 10, dtype=np.float32), max_record_bytes=1024)
    (record,) = sink.records()
    assert record["cut"] == ["inputs"]
    assert record["outputs"] == np.eye(1, 10).tolist()


def test_an_array_that_cannot_fit_is_not_kept_for_the_writer():
    gate = threading.Event()
    sink = Lines(gate)
    log = PayloadLog(sink)
    logged(log)
    assert sink.started.wait(SAFETY_S)  # the writer is held: the next record stays queued
    # catdog's 96x96x3 values take over 64 KiB however they are written: cut when offered.
    logged(log, CATDOG, np.zeros((1, 96, 96, 3), np.float32), np.array([[0.5, 0.5]], np.float32))
    (queued,) = log._pending
    assert queued.inputs is None
    assert queued.outputs is not None
    gate.set()
    log.close()
    record = sink.records()[1]
    assert record["cut"] == ["inputs"]
    assert record["outputs"] == [[0.5, 0.5]]


def test_a_full_queue_drops_and_counts_without_blocking_the_caller():
    gate = threading.Event()
    sink = Lines(gate)
    log = PayloadLog(sink, queue_size=2)
    logged(log)
    assert sink.started.wait(SAFETY_S)  # the writer holds the first record, in a slow write
    before = dropped(payload_log.QUEUE_FULL)
    offering = threading.Thread(target=lambda: [logged(log) for _ in range(5)])
    offering.start()
    offering.join(SAFETY_S)
    assert not offering.is_alive()  # five offers returned while the writer was still stuck
    assert not gate.is_set()
    assert dropped(payload_log.QUEUE_FULL) == before + 3  # two fit in the queue
    gate.set()
    log.close()
    assert len(sink.lines) == 3


def test_close_writes_everything_queued_then_closes_the_sink():
    gate = threading.Event()
    sink = Lines(gate)
    log = PayloadLog(sink, queue_size=8)
    for number in range(6):
        request_id_var.set(f"r{number}")
        logged(log)
    request_id_var.set(None)
    closing = threading.Thread(target=log.close)
    closing.start()
    gate.set()
    closing.join(SAFETY_S)
    assert not closing.is_alive()
    assert [record["request_id"] for record in sink.records()] == [f"r{n}" for n in range(6)]
    assert sink.closed
    before = dropped(payload_log.SHUTDOWN)
    logged(log)  # once closed, nothing more is taken
    assert dropped(payload_log.SHUTDOWN) == before + 1
    assert len(sink.lines) == 6


def test_a_writer_stuck_at_shutdown_cannot_hold_it_up():
    gate = threading.Event()
    sink = Lines(gate)
    log = PayloadLog(sink)
    logged(log)
    assert sink.started.wait(SAFETY_S)
    logged(log)
    logged(log)
    before = dropped(payload_log.SHUTDOWN)
    log.close(timeout_s=0)
    assert dropped(payload_log.SHUTDOWN) == before + 2
    gate.set()
    log._thread.join(SAFETY_S)
    assert len(sink.lines) == 1


def test_a_full_disk_drops_and_counts_every_record():
    log = PayloadLog(RotatingFile(Path("/dev/full"), max_bytes=100, backups=1))
    before_dropped, before_written = dropped(payload_log.WRITE_ERROR), written()
    for _ in range(4):
        logged(log)
    log.close()
    assert dropped(payload_log.WRITE_ERROR) == before_dropped + 4
    assert written() == before_written
    assert Path("/dev/full").is_char_device()  # never rotated away


def rotated(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + "*"))


def line_length(request_id: str) -> int:
    token = request_id_var.set(request_id)
    try:
        (line,) = written_by(IRIS, FLOWER, ANSWER).lines
    finally:
        request_id_var.reset(token)
    return len(line)


def test_files_rotate_before_a_line_would_pass_the_limit(tmp_path):
    path = tmp_path / "payload.jsonl"
    one = line_length("r0")  # every line below is as long: same fields, ids of one length
    sink = RotatingFile(path, max_bytes=3 * one, backups=2)
    log = PayloadLog(sink)
    for number in range(10):
        request_id_var.set(f"r{number}")
        logged(log)
    request_id_var.set(None)
    log.close()
    assert [p.name for p in rotated(path)] == [path.name, f"{path.name}.1", f"{path.name}.2"]
    assert [p.stat().st_size for p in rotated(path)] == [one, 3 * one, 3 * one]
    ids = [
        json.loads(line)["request_id"]
        for file in (path.with_name(f"{path.name}.2"), path.with_name(f"{path.name}.1"), path)
        for line in file.read_text().splitlines()
    ]
    assert ids == [f"r{n}" for n in range(3, 10)]  # the oldest three went with the third backup


def test_a_restart_appends_and_rotates_a_file_already_full(tmp_path):
    path = tmp_path / "payload.jsonl"
    path.write_bytes(b'{"old":1}\n' * 20)
    log = PayloadLog(RotatingFile(path, max_bytes=100, backups=1))
    logged(log)
    log.close()
    assert path.with_name(f"{path.name}.1").read_bytes() == b'{"old":1}\n' * 20
    assert json.loads(path.read_text())["model"] == "iris"


class HalfWrites:
    """A file that takes half of the next line, then fails as a full disk does."""

    def __init__(self, real):
        self.real = real
        self.fail_next = True

    def write(self, data) -> int:
        if self.fail_next:
            self.fail_next = False
            self.real.write(bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.real.write(data)

    def fileno(self) -> int:
        return self.real.fileno()

    def close(self) -> None:
        self.real.close()


def test_a_write_that_fails_halfway_leaves_no_half_line(tmp_path):
    path = tmp_path / "payload.jsonl"
    sink = RotatingFile(path, max_bytes=0, backups=1)
    log = PayloadLog(sink)
    logged(log)
    assert log.flush(SAFETY_S)
    before = dropped(payload_log.WRITE_ERROR)
    sink._file = HalfWrites(sink._file)
    logged(log)
    logged(log)
    log.close()
    assert dropped(payload_log.WRITE_ERROR) == before + 1
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert all(json.loads(line)["model"] == "iris" for line in lines)


# -- through the service ---------------------------------------------------------------------


def serve_iris(tmp_path: Path, count: int, **settings) -> tuple[InferenceService, Path]:
    path = tmp_path / "payload.jsonl"
    service = InferenceService(
        Settings(
            model_dir=MODELS, models=["iris"], poll_interval_s=0, payload_log=str(path), **settings
        )
    )

    async def main():
        await service.catalog.reload()
        for number in range(count):
            request_id_var.set(f"s{number}")
            await service.predictor.predict(service.registry.resolve("iris"), FLOWER)
        await service.aclose()  # no flush: closing writes what was queued

    asyncio.run(main())
    return service, path


def test_the_service_logs_each_prediction_and_flushes_at_close(tmp_path):
    before = written()
    service, path = serve_iris(tmp_path, 3)
    assert service.predictor.payload_log is not None
    assert (
        not service.predictor.payload_log._thread.is_alive()
    )  # closed: its queue written, it stopped
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [record["request_id"] for record in records] == ["s0", "s1", "s2"]
    assert all(record["inputs"][0]["petal_width"] == 0.2 for record in records)
    assert all(len(record["outputs"][0]) == 3 for record in records)
    assert written() == before + 3


def test_sampling_zero_writes_nothing(tmp_path):
    before = written()
    service, path = serve_iris(tmp_path, 3, payload_log_sample=0.0)
    assert service.predictor.payload_log is None  # off: nothing is opened, no thread started
    assert not path.exists()
    assert written() == before


class Draws:
    """The payload log's random numbers, chosen by the test."""

    def __init__(self, *values: float):
        self.values = iter(values)

    def random(self) -> float:
        return next(self.values)


def test_a_fraction_samples_each_prediction_at_random(tmp_path, monkeypatch):
    monkeypatch.setattr(payload_log.writer, "random", Draws(0.1, 0.9, 0.29, 0.3))
    _, path = serve_iris(tmp_path, 4, payload_log_sample=0.3)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [record["request_id"] for record in records] == ["s0", "s2"]


def test_a_path_that_cannot_be_opened_stops_the_start_with_the_setting_named(tmp_path):
    settings = Settings(model_dir=MODELS, payload_log=str(tmp_path / "no-such-dir" / "p.jsonl"))
    with pytest.raises(OSError, match="GLASSBOX_PAYLOAD_LOG: cannot open"):
        InferenceService(settings)


def test_pid_in_the_path_gives_each_process_its_own_file(tmp_path):
    log = PayloadLog.from_settings(Settings(payload_log=str(tmp_path / "p-{pid}.jsonl")))
    assert log is not None
    log.close()
    assert (tmp_path / f"p-{os.getpid()}.jsonl").exists()


def test_stdout_gets_one_line_per_record(capsys):
    log = PayloadLog.from_settings(Settings(payload_log="stdout"))
    assert log is not None
    logged(log)
    logged(log)
    log.close()
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["model"] for line in lines] == ["iris", "iris"]
