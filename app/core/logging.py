"""Logging: one JSON object per line on stderr for the app's and uvicorn's loggers, each line
carrying the request id of the request being handled (set by the HTTP layer's observability
middleware in `request_id_var`, and by the gRPC call guard), its trace id when tracing is on
(`app.core.tracing`), and the request's surface for the payload log (`surface_var`)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from contextvars import ContextVar
from typing import TextIO

from pydantic_core import to_json

from app.core import tracing

# The id of the request this task is handling, for every line logged while it is handled.
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
# What the request came in through, for the payload log: "http/typed", "http/v2",
# "http/tfserving" (set by the HTTP gateway for a POST to a model), "grpc/v2", "grpc/tfserving".
surface_var: ContextVar[str | None] = ContextVar("surface", default=None)
# A client's request id is echoed into logs and headers, so only a plain token is taken as is.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def request_id_from(given: str) -> str:
    """The client's request id (an X-Request-ID header, x-request-id call metadata) when it is
    a plain token, else a new one."""
    return given if _SAFE_REQUEST_ID.fullmatch(given) else os.urandom(16).hex()


# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged.
_RECORD_ATTRIBUTES = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_DROPPED = {"color_message"}  # uvicorn's ANSI-coloured copy of the message
_NOT_EXTRA = frozenset(_RECORD_ATTRIBUTES | _DROPPED)


class _UtcTimestamps:
    """`time.time()` floats as ISO 8601 UTC text with milliseconds. The text of the second is
    made once (most lines share one) and kept with its second in one tuple, so a thread
    reading it never pairs one second with another second's text."""

    def __init__(self) -> None:
        self._cached: tuple[int, str] = (-1, "")

    def __call__(self, at: float) -> str:
        second = int(at)
        cached_second, stamp = self._cached
        if second != cached_second:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._cached = (second, stamp)
        return f"{stamp}.{int((at - second) * 1000):03d}+00:00"


# The log lines' and the payload log's `ts`.
utc_timestamp = _UtcTimestamps()


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, request_id, trace_id (when
    tracing is on), then the extras."""

    def format(self, record: logging.LogRecord) -> str:
        # A leading underscore is another library's private mark (Ray's record factory adds
        # `_ray_timestamp_ns` to every record once it has started), never an `extra=` of ours.
        extras = {
            key: value
            for key, value in record.__dict__.items()
            if key not in _NOT_EXTRA and not key.startswith("_")
        }
        if record.exc_info:
            extras["exc_info"] = self.formatException(record.exc_info)
        request_id = getattr(record, "request_id", None)
        return self.line(
            record.created, record.levelname, record.name, record.getMessage(), extras, request_id
        )

    def line(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        extras: Mapping[str, object],
        request_id: str | None = None,
    ) -> str:
        """The JSON line for one entry, from a LogRecord (`format`) or from `log_fields`."""
        entry: dict[str, object] = {
            "ts": utc_timestamp(created),
            "level": level,
            "logger": logger,
            "message": message,
        }
        request_id = request_id or request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        trace_id = tracing.current_trace_id()
        if trace_id:
            entry["trace_id"] = trace_id
        for key, value in extras.items():
            entry.setdefault(key, value)
        try:
            # pydantic-core's encoder: a quarter of json.dumps's time, on a line per request.
            return to_json(entry, fallback=str).decode()
        except ValueError:  # text it cannot encode, e.g. a lone surrogate from a file name
            return json.dumps(entry, default=str)


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever sys.stderr is at the time, as logging's own last-resort handler does,
    so a test's capture of stderr sees the lines and no closed stream is ever kept."""

    def __init__(self) -> None:
        super().__init__()
        self._pending: list[str] = []  # lines of this event-loop turn, not yet written
        self._pending_loop: asyncio.AbstractEventLoop | None = None  # the loop that writes them

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass

    def write_line(self, line: str) -> None:
        """`emit` for a line already formatted. On an event loop the lines of one turn of the
        loop are written together at the start of the next (`call_soon`): each write gives
        up the GIL, and taking it back from a busy inference thread can cost more than the
        line. Elsewhere the line is written at once."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self.lock:  # type: ignore[union-attr]  # createLock() has made it
            self._pending.append(line)
            if loop is None or self._pending_loop not in (None, loop):
                self._write_pending()  # no loop, or another loop's turn would write it
            elif self._pending_loop is None:
                self._pending_loop = loop
                loop.call_soon(self.flush)

    def emit(self, record: logging.LogRecord) -> None:
        # Under the handler's lock (`Handler.handle`): lines keep the order they were made in.
        self._write_pending()
        super().emit(record)

    def flush(self) -> None:
        """Write the pending lines; also what `logging.shutdown` calls at exit."""
        with self.lock:  # type: ignore[union-attr]
            self._write_pending()
        super().flush()

    def _write_pending(self) -> None:
        self._pending_loop = None
        if not self._pending:
            return
        text = self.terminator.join(self._pending) + self.terminator
        self._pending.clear()
        try:
            stream = self.stream
            stream.write(text)
            stream.flush()
        except Exception:  # as `emit` does: a broken stream must not fail the request
            self.handleError(logging.makeLogRecord({"msg": text}))


_HANDLER_NAME = "glassbox-json"
# uvicorn's loggers ("uvicorn.error" propagates to "uvicorn") get the same format, so the
# container's output is JSON lines only. Not "uvicorn.access": uvicorn writes access lines
# whenever that logger has a handler, and the request line above replaces them.
_LOGGERS = ("app", "uvicorn")


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for the glassbox and uvicorn loggers; safe to call again."""
    # The lines carry no thread, process or source location: not collecting them makes every
    # record cheaper (the "Optimization" section of the logging HOWTO), one per request.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None
    handler = _StderrHandler()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter())
    for name in _LOGGERS:
        target = logging.getLogger(name)
        for old in list(target.handlers):
            # uvicorn's own text handlers go too: one format per stream.
            if old.get_name() == _HANDLER_NAME or name != "app":
                target.removeHandler(old)
        target.addHandler(handler)
    logging.getLogger("app").setLevel(level)


def _sole_json_handler(
    logger: logging.Logger, level: int
) -> tuple[_StderrHandler, JsonFormatter] | None:
    """The JSON handler and its formatter when it is the only handler a record from `logger`
    at `level` would reach, and no filter could drop or change the record; else None."""
    if logger.filters:
        return None
    found: _StderrHandler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if level < handler.level:
                continue
            if found is not None or not isinstance(handler, _StderrHandler) or handler.filters:
                return None
            found = handler
        current = current.parent if current.propagate else None
    if found is None or not isinstance(found.formatter, JsonFormatter):
        return None
    return found, found.formatter


def log_fields(
    logger: logging.Logger, level: int, message: str, fields: Mapping[str, object]
) -> None:
    """`logger.log(level, message, extra=fields)`, for a line logged on every request.

    When the JSON handler is all the record would reach (as under uvicorn), the same line is
    written straight away, with no LogRecord: the record and its formatting were two thirds of
    the line's cost (about 13 of 19 µs here, `docs/performance.md`). Any other handler, a
    test's capture included, gets a real record as before.
    """
    if not logger.isEnabledFor(level):
        return
    sole = _sole_json_handler(logger, level)
    if sole is None:
        logger.log(level, message, extra=dict(fields))
        return
    handler, formatter = sole
    handler.write_line(
        formatter.line(time.time(), logging.getLevelName(level), logger.name, message, fields)
    )
