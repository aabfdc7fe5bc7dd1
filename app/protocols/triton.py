"""Triton's extensions to the Open Inference Protocol, which Triton's own tools need: the model
configuration (perf_analyzer reads it before it sends anything), statistics
(`get_inference_statistics`, and perf_analyzer's server-side numbers) and classification (an
output's `classification` parameter: its top k classes as "score:index:label" strings).

The bodies are Triton's JSON, field for field, so the gRPC servicer turns them into the
messages of `model_config.proto` and `grpc_service.proto` with `json_format` unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from app.artifact.card import ModelCard
from app.core.errors import ProtocolError
from app.core.settings import Settings
from app.protocols.tensors import PLATFORM, dims, output_shape
from app.runtime.model import ModelRuntime
from app.runtime.statistics import BatchDurations, Duration

# The classification extension's parameter on a requested output (tritonclient's class_count).
CLASSIFICATION = "classification"

# -- model configuration -------------------------------------------------------------------


class ConfigTensor(BaseModel):
    name: str
    data_type: str = Field(description="TYPE_FP32: the model's float32 tensors.")
    dims: list[int] = Field(description="Dimensions after the batch dimension.")


class QueuePolicy(BaseModel):
    timeout_action: str = "REJECT"
    default_timeout_microseconds: int = Field(description="GLASSBOX_REQUEST_TIMEOUT_S.")
    allow_timeout_override: bool = False
    max_queue_size: int = Field(description="Requests waiting or running (GLASSBOX_QUEUE_SIZE).")


class DynamicBatching(BaseModel):
    preferred_batch_size: list[int] = Field(
        description="A batch closes early when it reaches this size (GLASSBOX_BATCH_MAX_SIZE)."
    )
    max_queue_delay_microseconds: int = Field(
        description="The longest a batch gathers requests (GLASSBOX_BATCH_MAX_WAIT_MS)."
    )
    default_queue_policy: QueuePolicy


class InstanceGroup(BaseModel):
    name: str
    kind: str = "KIND_CPU"
    count: int = Field(description="Inference threads (GLASSBOX_INFERENCE_THREADS).")


class ModelConfig(BaseModel):
    name: str
    platform: str = PLATFORM
    backend: str = "tensorflow"
    version_policy: dict[str, dict[str, Any]] = Field(
        description="Every version in the model's folder is served: {'all': {}}."
    )
    max_batch_size: int
    input: list[ConfigTensor]
    output: list[ConfigTensor]
    dynamic_batching: DynamicBatching
    instance_group: list[InstanceGroup]


def model_config(runtime: ModelRuntime, settings: Settings) -> ModelConfig:
    """The version's configuration as Triton states one: its tensors from the card, its
    batching and queue from the settings that apply to it."""
    card = runtime.loaded_card
    policy = settings.batch_policy(card.name)
    return ModelConfig(
        name=card.name,
        version_policy={"all": {}},
        max_batch_size=policy.max_batch_size,
        input=[_tensor(card.input.name, card.input.shape)],
        output=[_tensor(card.output.name, output_shape(card))],
        dynamic_batching=DynamicBatching(
            preferred_batch_size=[policy.max_batch_size],
            max_queue_delay_microseconds=round(policy.max_wait_ms * 1000),
            default_queue_policy=QueuePolicy(
                default_timeout_microseconds=round(policy.timeout_s * 1_000_000),
                max_queue_size=policy.queue_size,
            ),
        ),
        instance_group=[InstanceGroup(name=card.name, count=settings.inference_threads)],
    )


def _tensor(name: str, shape: list[int | None]) -> ConfigTensor:
    return ConfigTensor(name=name, data_type="TYPE_FP32", dims=dims(shape)[1:])


# -- statistics ----------------------------------------------------------------------------


class StatisticDuration(BaseModel):
    count: int
    ns: int


class InferStatistics(BaseModel):
    success: StatisticDuration
    fail: StatisticDuration
    queue: StatisticDuration
    compute_input: StatisticDuration
    compute_infer: StatisticDuration
    compute_output: StatisticDuration
    cache_hit: StatisticDuration = StatisticDuration(count=0, ns=0)  # no response cache
    cache_miss: StatisticDuration = StatisticDuration(count=0, ns=0)


class InferBatchStatistics(BaseModel):
    batch_size: int
    compute_input: StatisticDuration
    compute_infer: StatisticDuration
    compute_output: StatisticDuration


class ModelStatistics(BaseModel):
    name: str
    version: str
    last_inference: int = Field(description="Milliseconds since the epoch; 0 before the first.")
    inference_count: int = Field(description="Rows computed.")
    execution_count: int = Field(description="Model calls (batches).")
    inference_stats: InferStatistics
    batch_stats: list[InferBatchStatistics]


class ModelStatisticsResponse(BaseModel):
    model_stats: list[ModelStatistics]


def _duration(duration: Duration) -> StatisticDuration:
    return StatisticDuration(count=duration.count, ns=duration.ns)


def _batch(size: int, durations: BatchDurations) -> InferBatchStatistics:
    return InferBatchStatistics(
        batch_size=size,
        compute_input=_duration(durations.compute_input),
        compute_infer=_duration(durations.compute_infer),
        compute_output=_duration(durations.compute_output),
    )


def model_statistics(runtimes: list[ModelRuntime]) -> ModelStatisticsResponse:
    """The counters of each ready version given, by name and version."""
    stats = []
    for runtime in runtimes:
        if not runtime.ready:
            continue
        counted = runtime.statistics
        stats.append(
            ModelStatistics(
                name=runtime.name,
                version=str(runtime.version),
                last_inference=counted.last_inference_ms,
                inference_count=counted.inference_count,
                execution_count=counted.execution_count,
                inference_stats=InferStatistics(
                    success=_duration(counted.success),
                    fail=_duration(counted.fail),
                    queue=_duration(counted.queue),
                    compute_input=_duration(counted.compute_input),
                    compute_infer=_duration(counted.compute_infer),
                    compute_output=_duration(counted.compute_output),
                ),
                batch_stats=[
                    _batch(size, counted.batches[size]) for size in sorted(counted.batches)
                ],
            )
        )
    return ModelStatisticsResponse(model_stats=stats)


# -- classification ------------------------------------------------------------------------


def class_count(card: ModelCard, output: str, parameters: dict[str, Any] | None) -> int:
    """The top k an output asks for with `classification`, 0 when it asks for none; only a
    classifier's prediction can be classified."""
    count = (parameters or {}).get(CLASSIFICATION)
    if count is None or count == 0:
        return 0
    where = f"Output '{output}'"
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ProtocolError(f"{where}: classification must be a whole number of classes.")
    if output != card.output.name or card.output.kind != "probabilities":
        raise ProtocolError(
            f"{where} cannot be classified: classification applies to a classifier's "
            f"prediction, and model '{card.name}' "
            + (
                f"answers a value ({card.output.name})."
                if card.output.kind != "probabilities"
                else f"gives its class probabilities as '{card.output.name}'."
            )
        )
    return count


def classify(card: ModelCard, probabilities: np.ndarray, count: int) -> np.ndarray:
    """Each row's `count` likeliest classes (at most all of them), likeliest first, as Triton
    writes them: "score:index:label", the score with six decimals."""
    labels = card.output.labels or []
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :count]
    rows = [
        [
            f"{float(row[index]):f}:{index}" + (f":{labels[index]}" if index < len(labels) else "")
            for index in order
        ]
        for row, order in zip(probabilities, top, strict=True)
    ]
    return np.array([[text.encode() for text in row] for row in rows], dtype=object).reshape(
        len(rows), top.shape[1]
    )
