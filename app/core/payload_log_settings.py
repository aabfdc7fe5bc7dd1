"""The payload log's settings (docs/payload-log.md), part of `Settings` (settings.py), which
reads them from the same `GLASSBOX_` environment variables."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field
from pydantic_settings import BaseSettings, NoDecode


def split_commas(value: object) -> object:
    """A comma-separated environment variable as a list (a list is kept as it is)."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class PayloadLogSettings(BaseSettings):
    payload_log: str = Field(
        "",
        description="Where the payload log goes (one sampled JSON line per prediction: inputs "
        "as the model saw them, outputs, model, version, request id; docs/payload-log.md): "
        "empty turns it off, `stdout`, or a file path, where {pid} becomes the process id (one "
        "file per worker).",
    )
    payload_log_sample: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Fraction of predictions the payload log records, each chosen at random; "
        "0 records none.",
    )
    payload_log_max_record_bytes: int = Field(
        65536,
        ge=1024,
        description="Longest payload log line, in bytes: a longer record keeps its metadata and "
        "leaves out its inputs (then its outputs), naming them in `cut`.",
    )
    payload_log_redact: Annotated[list[str], NoDecode, BeforeValidator(split_commas)] = Field(
        default_factory=list,
        description='Comma-separated names the payload log writes as "[redacted]": features of '
        "a tabular model (e.g. MedInc), or a model's whole input or output by its card name "
        "(e.g. image, probabilities).",
    )
    payload_log_max_bytes: int = Field(
        100 * 1024 * 1024,
        ge=0,
        description="A payload log file is rotated (to .1, .1 to .2, ...) before a line would "
        "take it past this many bytes; 0 never rotates.",
    )
    payload_log_backups: int = Field(
        5, ge=1, description="Rotated payload log files kept; the oldest is deleted."
    )
    payload_log_queue_size: int = Field(
        1024,
        gt=0,
        description="Payload log records waiting for the writer thread; a record that finds "
        "the queue full is dropped and counted, so a request never waits for the disk.",
    )
