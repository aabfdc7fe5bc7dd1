"""Logging: one JSON object per line on stderr for the app's and uvicorn's loggers, each line
carrying the request id of the request being handled (set by the HTTP layer's observability
middleware in `request_id_var`, and by the gRPC call guard), and the request's surface for the
payload log (`surface_var`)."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from contextvars import ContextVar
from typing import TextIO

from pydantic_core import to_json

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


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, request_id, then the extras."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1  # the second `_stamp` was made for: most lines share one
        self._stamp = ""

    def _timestamp(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._stamp}.{int(record.msecs):03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self._timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _NOT_EXTRA and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        try:
            # pydantic-core's encoder: a quarter of json.dumps's time, on a line per request.
            return to_json(entry, fallback=str).decode()
        except ValueError:  # text it cannot encode, e.g. a lone surrogate from a file name
            return json.dumps(entry, default=str)


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever sys.stderr is at the time, as logging's own last-resort handler does,
    so a test's capture of stderr sees the lines and no closed stream is ever kept."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


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
