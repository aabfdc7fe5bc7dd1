"""The payload log: an opt-in, sampled record of what the models were asked and answered, one
JSON line per prediction (docs/payload-log.md), to a rotated file or to stdout.

It stays off the request path. `offer` puts references to the arrays on a bounded queue and
returns; one writer thread turns them into lines and writes them. A record that finds the queue
full, or whose write fails (a full disk), is dropped and counted in
`glassbox_payload_log_dropped_total`; a request never waits for the disk.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import random
import stat
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from prometheus_client import Counter
from pydantic_core import to_json

from app.artifact.card import ModelCard
from app.core.logging import request_id_var, surface_var, utc_timestamp
from app.core.metrics import series
from app.core.settings import Settings

logger = logging.getLogger(__name__)

WRITTEN = Counter("glassbox_payload_log_written", "Payload log records written.")
DROPPED = Counter(
    "glassbox_payload_log_dropped",
    "Payload log records dropped: the queue was full (queue_full), the write failed "
    "(write_error), or the log was closing (shutdown).",
    ["reason"],
)
QUEUE_FULL, WRITE_ERROR, SHUTDOWN = "queue_full", "write_error", "shutdown"
for _reason in (QUEUE_FULL, WRITE_ERROR, SHUTDOWN):
    series(DROPPED, _reason)  # every reason shows from the start, at 0

REDACTED = "[redacted]"
STDOUT = "stdout"
# The fewest bytes one value takes in a JSON line ("0.0,"): an array with more values than the
# record's limit over this can never fit, so it is not even kept for the writer.
_MIN_VALUE_BYTES = 4
# Arrays up to this many values are written with the shortest digits that read back as the
# same float32 (5.1, not 5.099999904632568); larger ones (images) as their exact values.
_SHORTEST_VALUES = 1024
_CLOSE_TIMEOUT_S = 10.0


class Sink(Protocol):
    """Where the lines go. `write` takes one whole line and raises OSError when it fails."""

    def write(self, line: bytes) -> None: ...

    def close(self) -> None: ...


class Stdout:
    """Whatever sys.stdout is at the time (a test's capture sees the lines)."""

    def write(self, line: bytes) -> None:
        sys.stdout.write(line.decode())
        sys.stdout.flush()

    def close(self) -> None:
        pass


class RotatingFile:
    """Lines appended to a file, rotated as logging's RotatingFileHandler does it (the file
    becomes .1, .1 becomes .2, ..., the oldest goes) before a line would take it past
    `max_bytes` (0: never). A failed write is taken back, so the file never keeps half a line.
    Only a regular file is rotated or truncated (not /dev/full or a pipe)."""

    def __init__(self, path: Path, max_bytes: int, backups: int):
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        self._open()

    def _open(self) -> None:
        self._file = io.FileIO(self.path, "a")  # raw: one write call per line, no buffer
        info = os.fstat(self._file.fileno())
        self._regular = stat.S_ISREG(info.st_mode)
        self._size = info.st_size if self._regular else 0

    def write(self, line: bytes) -> None:
        if (
            self._regular
            and self.max_bytes
            and self._size
            and self._size + len(line) > self.max_bytes
        ):
            self._rotate()
        view = memoryview(line)
        try:
            while view:
                view = view[self._file.write(view) :]
        except OSError:
            if self._regular:  # a part may have been written: cut back to the last whole line
                with contextlib.suppress(OSError):  # failing that, the next line follows it
                    os.ftruncate(self._file.fileno(), self._size)
            raise
        self._size += len(line)

    def _backup(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{index}")

    def _rotate(self) -> None:
        self._file.close()
        try:
            for index in range(self.backups - 1, 0, -1):
                if self._backup(index).exists():
                    os.replace(self._backup(index), self._backup(index + 1))
            os.replace(self.path, self._backup(1))
        finally:
            self._open()

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True, slots=True)
class _Exchange:
    """One prediction as `offer` saw it; the writer thread makes the line."""

    at: float
    request_id: str | None
    surface: str | None
    model: str
    version: int
    card: ModelCard
    latency_s: float
    rows: int
    inputs: np.ndarray | None  # None: too large for a record, cut before it was queued
    outputs: np.ndarray | None


class PayloadLog:
    def __init__(
        self,
        sink: Sink,
        *,
        sample: float = 1.0,
        max_record_bytes: int = 65536,
        redact: frozenset[str] = frozenset(),
        queue_size: int = 1024,
    ):
        self.sink = sink
        self.sample = sample
        self.max_record_bytes = max_record_bytes
        self.redact = redact
        self.queue_size = queue_size
        self._pending: deque[_Exchange] = deque()
        self._lock = threading.Lock()
        self._has_work = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._writing = False
        self._closing = False
        self._failing = False  # a write failed and none has succeeded since (logged once)
        self._thread = threading.Thread(target=self._run, name="payload-log", daemon=True)
        self._thread.start()

    @classmethod
    def from_settings(cls, settings: Settings) -> PayloadLog | None:
        """The log GLASSBOX_PAYLOAD_LOG asks for; None when it is off (or samples nothing)."""
        where = settings.payload_log
        if not where or settings.payload_log_sample == 0:
            return None
        sink: Sink
        if where == STDOUT:
            sink = Stdout()
        else:
            path = Path(where.replace("{pid}", str(os.getpid())))
            try:
                sink = RotatingFile(
                    path, settings.payload_log_max_bytes, settings.payload_log_backups
                )
            except OSError as error:
                raise OSError(
                    error.errno, f"GLASSBOX_PAYLOAD_LOG: cannot open {path} ({error.strerror})"
                ) from None
        return cls(
            sink,
            sample=settings.payload_log_sample,
            max_record_bytes=settings.payload_log_max_record_bytes,
            redact=frozenset(settings.payload_log_redact),
            queue_size=settings.payload_log_queue_size,
        )

    # -- the request's side: cheap, never blocks on the writer -------------------------------

    def sampled(self) -> bool:
        """Whether to record this prediction (decided before it runs, to time it)."""
        return self.sample >= 1.0 or random.random() < self.sample

    def offer(
        self,
        model: str,
        version: int,
        card: ModelCard,
        inputs: np.ndarray,
        outputs: np.ndarray,
        latency_s: float,
    ) -> None:
        """Queue one prediction's record, or drop and count it when the queue is full. The
        arrays are kept by reference (nothing writes to them once answered)."""
        fits = self.max_record_bytes // _MIN_VALUE_BYTES
        exchange = _Exchange(
            at=time.time(),
            request_id=request_id_var.get(),
            surface=surface_var.get(),
            model=model,
            version=version,
            card=card,
            latency_s=latency_s,
            rows=len(inputs),
            inputs=inputs if inputs.size <= fits else None,
            outputs=outputs if outputs.size <= fits else None,
        )
        with self._lock:
            if self._closing:
                reason = SHUTDOWN
            elif len(self._pending) >= self.queue_size:
                reason = QUEUE_FULL
            else:
                self._pending.append(exchange)
                self._has_work.notify()
                return
        series(DROPPED, reason).inc()

    # -- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closing:
                    self._has_work.wait()
                if not self._pending:  # closing, and everything queued is written
                    return
                exchange = self._pending.popleft()
                self._writing = True
            try:
                self._write(exchange)
            finally:
                with self._lock:
                    self._writing = False
                    self._idle.notify_all()

    def _write(self, exchange: _Exchange) -> None:
        try:
            line = self._line(exchange)
            self.sink.write(line)
        except Exception as error:  # a full disk, a closed pipe: drop, count, keep serving
            series(DROPPED, WRITE_ERROR).inc()
            if not self._failing:
                self._failing = True
                logger.warning(
                    "payload log write failed; records are dropped until a write succeeds",
                    extra={"error": repr(error)},
                )
            return
        WRITTEN.inc()
        if self._failing:
            self._failing = False
            logger.info("payload log writes succeed again")

    def _line(self, exchange: _Exchange) -> bytes:
        """The record as one JSON line of at most max_record_bytes (inputs, then outputs,
        left out and named in `cut` when it would be longer)."""
        card = exchange.card
        entry: dict[str, Any] = {
            "ts": utc_timestamp(exchange.at),
            "request_id": exchange.request_id,
            "surface": exchange.surface,
            "model": exchange.model,
            "version": exchange.version,
            "rows": exchange.rows,
            "latency_ms": round(exchange.latency_s * 1000, 3),
        }
        cut = []
        for field, name, values in (
            ("inputs", card.input.name, exchange.inputs),
            ("outputs", card.output.name, exchange.outputs),
        ):
            if values is None:
                cut.append(field)
            elif name in self.redact:
                entry[field] = REDACTED
            elif field == "inputs" and card.input.features:
                entry[field] = self._feature_rows(card, values)
            else:
                entry[field] = _numbers(values)
        if cut:
            entry["cut"] = cut
        line = _encode(entry)
        for field in ("inputs", "outputs"):
            if len(line) < self.max_record_bytes:
                break
            if field in entry:
                del entry[field]
                entry["cut"] = cut = [*cut, field]
                line = _encode(entry)
        return line + b"\n"

    def _feature_rows(self, card: ModelCard, values: np.ndarray) -> list[dict[str, Any]]:
        """A tabular batch as {feature: value} rows, the redacted features' values replaced."""
        names = [feature.name for feature in card.input.features or []]
        hidden = [name in self.redact for name in names]
        return [
            {
                name: REDACTED if secret else value
                for name, secret, value in zip(names, hidden, row, strict=True)
            }
            for row in _numbers(values)
        ]

    # -- flushing and closing ------------------------------------------------------------------

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every record queued so far is written (or dropped); False if
        `timeout_s` passed first."""
        with self._lock:
            return self._idle.wait_for(
                lambda: not self._pending and not self._writing, timeout=timeout_s
            )

    def close(self, timeout_s: float = _CLOSE_TIMEOUT_S) -> None:
        """Take no more records, write what is queued, stop the writer. A sink stuck for longer
        than `timeout_s` (a hung disk) must not hold the shutdown: what is still queued then is
        dropped and counted."""
        with self._lock:
            self._closing = True
            self._has_work.notify()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            with self._lock:
                left = len(self._pending)
                self._pending.clear()
            series(DROPPED, SHUTDOWN).inc(left)
            logger.warning("payload log writer stuck at shutdown", extra={"dropped": left})
            return
        self.sink.close()


def _numbers(values: np.ndarray) -> Any:
    """Nested lists of the float32 values, small arrays in their shortest digits."""
    if values.size <= _SHORTEST_VALUES:
        return values.astype(str).astype(np.float64).tolist()
    return values.tolist()


def _encode(entry: dict[str, Any]) -> bytes:
    # NaN and infinity are not JSON: null, as the wire protocols would have to say them.
    return to_json(entry, inf_nan_mode="null")
