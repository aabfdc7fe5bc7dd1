"""Service settings, read from environment variables prefixed `GLASSBOX_`."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from app.core.payload_log_settings import PayloadLogSettings, split_commas

_OptionalPath = Annotated[Path | None, BeforeValidator(lambda value: value or None)]


class BatchOverride(BaseModel):
    """One model's batching settings in GLASSBOX_BATCHING; an unset key keeps the global one."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max_batch_size: int | None = Field(None, gt=0)
    max_wait_ms: float | None = Field(None, ge=0)
    quiet_turns: int | None = Field(None, ge=0)
    queue_size: int | None = Field(None, gt=0)
    timeout_s: float | None = Field(None, gt=0)


class Settings(PayloadLogSettings):
    model_config = SettingsConfigDict(env_prefix="GLASSBOX_", extra="ignore", allow_inf_nan=False)

    model_dir: Path = Field(Path("models"), description="Folder of <name>/<version>/ models.")
    models: Annotated[list[str], NoDecode, BeforeValidator(split_commas)] = Field(
        default_factory=list,
        description="Comma-separated model names to load; empty loads every model found "
        "(GLASSBOX_MODEL_CONTROL=explicit: none).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of the glassbox loggers."
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024, gt=0, description="Largest request body accepted, in bytes (413)."
    )
    body_timeout_s: float = Field(
        5.0,
        gt=0,
        description="A request's whole body must arrive within this many seconds of its head, "
        "or it is answered 408 and its connection closed; it is read before the request takes "
        "one of its model's places, so slow senders hold none.",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A connection must send a whole request head within this many seconds of "
        "opening or of starting the head, or it is closed (`python -m app.serve`).",
    )
    drain_grace_s: float = Field(
        0.5,
        ge=0,
        description="After SIGTERM, an idle keep-alive connection stays open this long for a "
        "request its client may already have sent (answered with `Connection: close`), then "
        "closes; a busy one closes after its answer (`python -m app.serve`).",
    )
    max_connections: int = Field(
        1024,
        gt=0,
        description="Open HTTP connections per worker (`python -m app.serve`): one more closes "
        "the longest-idle connection, or is answered 503 and closed when none is idle. Keep it "
        "below the process's descriptor limit (`ulimit -n`) less about 100 for models and gRPC.",
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
        1024, gt=0, description="Most instances in one prediction request (422)."
    )
    max_concurrent_decodes: int = Field(
        2, gt=0, description="Images decoded at once (each can take ~100 MB while it decodes)."
    )
    inline_decode_pixels: int = Field(
        256 * 256,
        ge=0,
        description="Small plain images are decoded on the event loop, not on a worker thread: "
        "a PNG or baseline JPEG file of at most 64 KiB with at most this many pixels (width x "
        "height, from the header) and no metadata (text, EXIF, ICC profile). 0 sends every "
        "image to a thread.",
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
        0,
        ge=0,
        description="TensorFlow threads inside one op; 0 lets TensorFlow choose (with "
        "`python -m app.serve --workers N`, 0 becomes the usable cores / N).",
    )
    tf_inter_op_threads: int = Field(
        0,
        ge=0,
        description="TensorFlow ops run in parallel; 0 lets TensorFlow choose (with "
        "`python -m app.serve --workers N`, 0 becomes the usable cores / N).",
    )
    batch_max_size: int = Field(
        64, gt=0, description="Most rows the dynamic batcher puts in one model call."
    )
    batch_max_wait_ms: float = Field(
        2.0,
        ge=0,
        description="The longest a batch gathers requests once it has taken its first "
        "(checked between turns of the event loop); under the request timeout; 0 runs what is "
        "queued at once.",
    )
    batch_quiet_turns: int = Field(
        4,
        ge=0,
        description="A batch closes before max_wait_ms once the event loop has turned this "
        "many times in a row without a new request (none is on its way), so a lone request "
        "waits microseconds; 0 always waits max_wait_ms.",
    )
    queue_size: int = Field(
        256,
        gt=0,
        description="Requests in progress per model (queued or computed, their bodies read "
        "first); beyond it, 503 at once with Retry-After.",
    )
    request_timeout_s: float = Field(
        5.0, gt=0, description="A request queued longer than this is answered 504, not computed."
    )
    batching: dict[str, BatchOverride] = Field(
        default_factory=dict,
        description='Per-model overrides as JSON, e.g. {"catdog": {"max_batch_size": 16, '
        '"max_wait_ms": 5}}; keys: max_batch_size, max_wait_ms, quiet_turns, queue_size, '
        "timeout_s (an unknown key or a value out of range stops the service at start).",
    )
    poll_interval_s: float = Field(
        10.0,
        ge=0,
        description="How often the model folder is checked for new or removed "
        "versions; 0 turns polling off (POST /admin/reload still works).",
    )
    model_control: Literal["poll", "explicit"] = Field(
        "poll",
        description="As Triton's model control mode: poll serves every model found in the folder "
        "(or in GLASSBOX_MODELS); explicit only those named in GLASSBOX_MODELS at start and those "
        "loaded since with POST /v2/repository/models/{name}/load (admin key), until unloaded.",
    )
    model_control_file: _OptionalPath = Field(
        None,
        description="explicit mode: the file that holds the models to serve, which a load or "
        "unload rewrites and every worker's poll reads, so that every worker converges; read at "
        "start when it exists (else written with GLASSBOX_MODELS). Empty: kept in memory (one "
        "worker); python -m app.serve --workers N makes one for its workers.",
    )
    api_keys: Annotated[list[str], NoDecode, BeforeValidator(split_commas)] = Field(
        default_factory=list,
        description="Comma-separated API keys. When set, every route but liveness and "
        "readiness needs one (Authorization: Bearer KEY, or X-API-Key: KEY).",
    )
    admin_api_keys: Annotated[list[str], NoDecode, BeforeValidator(split_commas)] = Field(
        default_factory=list,
        description="Comma-separated keys for /admin and /v2/repository routes (and the gRPC "
        "Repository calls); with none set, they are refused.",
    )
    cors_origins: Annotated[list[str], NoDecode, BeforeValidator(split_commas)] = Field(
        default_factory=list,
        description="Comma-separated origins allowed by CORS; empty turns CORS off.",
    )
    max_json_depth: int = Field(
        32, gt=0, description="Deepest nesting of [ and { accepted in a JSON body (422)."
    )
    explain_max_steps: int = Field(
        8192, gt=0, description="Most integration steps an explanation may ask for (422)."
    )
    explain_max_values: int = Field(
        32_000_000,
        gt=0,
        description="Most input values one explanation may feed the model: its steps (or "
        "samples) times the input's size (422 beyond; catdog: about 1,150 steps).",
    )
    explain_max_samples: int = Field(
        128, gt=0, description="Most noisy samples a SmoothGrad explanation may ask for (422)."
    )
    explain_concurrency: int = Field(
        1,
        gt=0,
        description="Explanations computed at once, on the inference threads; the rest wait, "
        "so a burst of them cannot take every thread from predictions.",
    )
    explain_queue_size: int = Field(
        16,
        gt=0,
        description="Explanations waiting or computing; beyond it, 503 at once with Retry-After.",
    )
    explain_timeout_s: float = Field(
        30.0,
        gt=0,
        description="An explanation that waits longer than this for its turn is answered 504, "
        "not computed.",
    )
    host: str = Field(
        "127.0.0.1",
        description="Address to listen on, for HTTP (deploy/serve.sh passes it to uvicorn) and "
        "gRPC alike.",
    )
    grpc_port: int = Field(
        8001,
        ge=0,
        le=65535,
        description="Port of the gRPC server (KServe v2 and TF Serving gRPC, health, "
        "reflection), beside HTTP as Triton places it (8000 HTTP, 8001 gRPC); 0 turns gRPC off.",
    )
    grpc_reuse_port: bool = Field(
        False,
        description="Bind the gRPC port with SO_REUSEPORT, so several workers share it; "
        "`python -m app.serve --workers N` sets it for its workers after checking the port is "
        "free. Off, a port already in use stops the service at start.",
    )
    graceful_shutdown_s: float = Field(
        20.0,
        ge=0,
        description="Seconds in-flight requests get after SIGTERM (uvicorn's, through "
        "deploy/serve.sh, and the gRPC server's).",
    )
    shadow_max_in_flight: int = Field(
        2,
        gt=0,
        description="Shadow copies computing at once (on a thread of their own); a copy offered "
        "beyond it is dropped and counted, so a slow candidate never queues work.",
    )
    shadow_timeout_s: float = Field(
        5.0,
        gt=0,
        description="A shadow copy not answered within this is counted as a timeout and its "
        "answer, if it comes, is not compared.",
    )
    verify_hashes: bool = Field(
        True, description="Check every SavedModel file against its model card's sha256."
    )
    drift_window: int = Field(
        1000,
        ge=0,
        description="Predictions each model version's drift window keeps, per worker (the "
        "last ones answered, compared with the training distribution: docs/drift.md); 0 turns "
        "drift off.",
    )

    @model_validator(mode="after")
    def _batches_gather_within_the_timeout(self) -> Settings:
        for model in [None, *self.batching]:
            policy = self.batch_policy(model)
            if policy.max_wait_ms / 1000 >= policy.timeout_s:
                where = f"GLASSBOX_BATCHING[{model!r}]" if model else "GLASSBOX_BATCH_MAX_WAIT_MS"
                raise ValueError(
                    f"{where}: max_wait_ms ({policy.max_wait_ms}) must be shorter than the "
                    f"request timeout ({policy.timeout_s} s), or a batch's first request would "
                    "time out while it gathers"
                )
        return self

    def batch_policy(self, model: str | None) -> BatchPolicy:
        override = BatchOverride() if model is None else self.batching.get(model, BatchOverride())
        return BatchPolicy(
            **{
                "max_batch_size": self.batch_max_size,
                "max_wait_ms": self.batch_max_wait_ms,
                "quiet_turns": self.batch_quiet_turns,
                "queue_size": self.queue_size,
                "timeout_s": self.request_timeout_s,
                **override.model_dump(exclude_none=True),
            }
        )


def _default(setting: str) -> Any:
    return Settings.model_fields[setting].default


@dataclass(frozen=True)
class BatchPolicy:
    """One model's batching and queue settings (`Settings.batch_policy`); the defaults are the
    settings' own, written once there."""

    max_batch_size: int = _default("batch_max_size")
    max_wait_ms: float = _default("batch_max_wait_ms")  # a batch's gathering, from its first
    quiet_turns: int = _default("batch_quiet_turns")  # idle loop turns that close it early
    queue_size: int = _default("queue_size")  # in progress; admission refuses more at once
    timeout_s: float = _default("request_timeout_s")


@lru_cache
def get_settings() -> Settings:
    return Settings()
