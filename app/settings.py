"""Service settings, read from environment variables prefixed `GLASSBOX_`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GLASSBOX_", extra="ignore")

    model_dir: Path = Field(Path("models"), description="Folder of <name>/<version>/ models.")
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated model names to load; empty loads every model found.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of the glassbox loggers."
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024, gt=0, description="Largest request body accepted, in bytes (413)."
    )
    max_image_bytes: int = Field(
        10 * 1024 * 1024, gt=0, description="Largest encoded image accepted, in bytes (413)."
    )
    max_image_pixels: int = Field(
        40_000_000,
        gt=0,
        description="Largest image accepted, width x height, checked before "
        "the pixels are decoded (413).",
    )
    max_instances: int = Field(
        1024, gt=0, description="Most instances in one prediction request (413)."
    )
    trace_inline_values: int = Field(
        4096,
        gt=0,
        description="A layer output with at most this many values is returned in "
        "full in a trace; a larger one as summary statistics and a slice.",
    )
    trace_slice_values: int = Field(
        64, gt=0, description="How many leading values of a large layer output a trace shows."
    )
    trace_max_values: int = Field(
        2_000_000, gt=0, description="Most values a trace with full=true may return (413)."
    )
    inference_threads: int = Field(
        2, gt=0, description="Threads that run model calls (the executor off the event loop)."
    )
    tf_intra_op_threads: int = Field(
        0, ge=0, description="TensorFlow threads inside one op; 0 lets TensorFlow choose."
    )
    tf_inter_op_threads: int = Field(
        0, ge=0, description="TensorFlow ops run in parallel; 0 lets TensorFlow choose."
    )
    verify_hashes: bool = Field(
        True, description="Check every SavedModel file against its model card's sha256."
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()
