"""The payload log's queue and writer: `offer` puts references to a prediction's arrays on a
bounded queue and returns; one writer thread turns them into lines and writes them. A record
that finds the queue full, or whose write fails (a full disk), is dropped and counted in
`glassbox_payload_log_dropped_total`; a request never waits for the disk.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque

import numpy as np
from prometheus_client import Counter

from app.artifact.card import ModelCard
from app.core.logging import request_id_var, surface_var
from app.core.metrics import series
from app.core.settings import Settings
from app.dataplane.payload_log.records import Exchange, line, unless_too_large
from app.dataplane.payload_log.sinks import Sink, open_sink

logger = logging.getLogger(__package__)  # the package's name, as its log lines have always said

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

_CLOSE_TIMEOUT_S = 10.0


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
        self._pending: deque[Exchange] = deque()
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
        sink = open_sink(where, settings.payload_log_max_bytes, settings.payload_log_backups)
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
        exchange = Exchange(
            at=time.time(),
            request_id=request_id_var.get(),
            surface=surface_var.get(),
            model=model,
            version=version,
            card=card,
            latency_s=latency_s,
            rows=len(inputs),
            inputs=unless_too_large(inputs, self.max_record_bytes),
            outputs=unless_too_large(outputs, self.max_record_bytes),
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

    def _write(self, exchange: Exchange) -> None:
        try:
            self.sink.write(
                line(exchange, max_record_bytes=self.max_record_bytes, redact=self.redact)
            )
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
