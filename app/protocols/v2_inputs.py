"""An Open Inference Protocol v2 input tensor as the model's batch, checked against its card:
FP32 numbers (in the JSON, flat or nested, or in the binary section), or for an image model
BYTES image files (base64 in the JSON, or as they are in the binary section)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from app.artifact.card import ModelCard
from app.core.errors import ProtocolError
from app.dataplane.service import InferenceService
from app.protocols.tensors import as_float32, check_count, dims, image_decoder, image_file
from app.protocols.v2_binary import length_prefixed, raw_fp32
from app.protocols.v2_bodies import RequestInput


def expects(card: ModelCard) -> str:
    expected = f"FP32 with shape {dims(card.input.shape)}"
    if card.input.kind == "image":
        expected += " or BYTES with shape [-1] (one base64-encoded image file per element)"
    return expected


def _flatten(values: list[Any]) -> Iterator[Any]:
    for value in values:
        if isinstance(value, list):
            yield from _flatten(value)
        else:
            yield value


def _check_elements(count: int, tensor: RequestInput, where: str) -> None:
    if count != tensor.shape[0]:
        raise ProtocolError(
            f"{where} has {count} elements; its shape {tensor.shape} needs {tensor.shape[0]}."
        )


def images(
    service: InferenceService,
    card: ModelCard,
    tensor: RequestInput,
    where: str,
    raw: bytes | None,
) -> np.ndarray:
    one_per_row = len(tensor.shape) in (1, 2) and tensor.shape[1:] in ([], [1])
    if card.input.kind != "image" or not one_per_row:
        raise ProtocolError(
            f"{where} is BYTES with shape {tensor.shape}; model '{card.name}' expects "
            f"{expects(card)}."
        )
    check_count(service, tensor.shape[0])
    if raw is not None:  # binary elements are the image files themselves
        files = length_prefixed(raw, where)
        _check_elements(len(files), tensor, where)
        images = [
            image_file(service, card, item, f"{where} element {i}") for i, item in enumerate(files)
        ]
        return np.stack(images)
    items = list(_flatten(tensor.data or []))
    _check_elements(len(items), tensor, where)
    if not all(isinstance(item, str) for item in items):
        raise ProtocolError(f"{where}: each BYTES element must be a base64 string.")
    decode_image = image_decoder(service, card)
    images = [decode_image(item, f"{where} element {i}") for i, item in enumerate(items)]
    return np.stack(images)


def numbers(
    service: InferenceService,
    card: ModelCard,
    tensor: RequestInput,
    where: str,
    raw: bytes | None,
) -> np.ndarray:
    expected = dims(card.input.shape)
    if len(tensor.shape) != len(expected) or tensor.shape[1:] != expected[1:]:
        raise ProtocolError(
            f"{where} has shape {tensor.shape}; model '{card.name}' expects {expects(card)}."
        )
    check_count(service, tensor.shape[0])
    if raw is not None:
        return raw_fp32(raw, tensor.shape, where)
    array = as_float32(tensor.data, f"{where} data")
    if array.size != math.prod(tensor.shape):
        raise ProtocolError(
            f"{where} has {array.size} values; its shape {tensor.shape} needs "
            f"{math.prod(tensor.shape)}."
        )
    if array.ndim > 1 and list(array.shape) != tensor.shape:
        raise ProtocolError(
            f"{where} data is nested as {list(array.shape)}, not as its shape {tensor.shape}."
        )
    return array.reshape(tensor.shape)
