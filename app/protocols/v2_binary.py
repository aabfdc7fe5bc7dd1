"""The binary tensor data extension, as Triton documents it: a JSON header, then each binary
tensor's raw bytes in order (FP32 little-endian; BYTES as a 4-byte little-endian length before
each element's bytes). Here: each input's bytes cut from a request's section, an FP32 or BYTES
input read from them, and which outputs answer in the section and in what layout."""

from __future__ import annotations

import math
import struct

import numpy as np

from app.core.errors import ProtocolError
from app.protocols.v2_bodies import InferenceRequest


def binary_parts(request: InferenceRequest, binary: bytes) -> list[bytes | None]:
    """Each input's raw bytes from the binary section, in input order (None for an input whose
    values are in the JSON)."""
    parts: list[bytes | None] = []
    offset = 0
    for tensor in request.inputs:
        where = f"Input '{tensor.name}'"
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is None:
            if tensor.data is None:
                raise ProtocolError(f"{where} has neither data nor parameters.binary_data_size.")
            parts.append(None)
            continue
        if tensor.data is not None:
            raise ProtocolError(f"{where} has both data and binary_data_size; send one of them.")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ProtocolError(f"{where}: binary_data_size must be a number of bytes.")
        if offset + size > len(binary):
            raise ProtocolError(
                f"{where} has binary_data_size {size}, but the binary section holds only "
                f"{len(binary) - offset} more bytes."
            )
        parts.append(binary[offset : offset + size])
        offset += size
    if offset != len(binary):
        raise ProtocolError(
            f"The binary section holds {len(binary)} bytes; the inputs' binary_data_size add up "
            f"to {offset}."
        )
    return parts


def length_prefixed(raw: bytes, where: str) -> list[bytes]:
    """The elements of a binary BYTES tensor: each a 4-byte little-endian length, then bytes."""
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise ProtocolError(f"{where}: the BYTES data ends inside an element's length.")
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise ProtocolError(f"{where}: a BYTES element runs past the end of the data.")
        items.append(raw[offset : offset + size])
        offset += size
    return items


def raw_fp32(raw: bytes, shape: list[int], where: str) -> np.ndarray:
    if len(raw) != 4 * math.prod(shape):
        raise ProtocolError(
            f"{where} has {len(raw)} bytes of binary data; FP32 with shape {shape} takes "
            f"{4 * math.prod(shape)}."
        )
    # Raw bytes are used as sent, NaN and infinity included, as Triton does: its perf_analyzer
    # sends random bytes by default, and an image's 784 random floats always hold some.
    return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)


def wire_bytes(values: np.ndarray) -> bytes:
    """An output in the binary layout (BYTES elements each after its 4-byte length)."""
    if values.dtype != object:
        return values.tobytes()
    return b"".join(struct.pack("<I", len(item)) + item for item in values.reshape(-1))


def binary_outputs(request: InferenceRequest, names: list[str]) -> set[str]:
    """The outputs to answer in the binary section: each output's own `binary_data`, else the
    request's `binary_data_output` (what tritonclient sends when it names no outputs)."""
    default = bool((request.parameters or {}).get("binary_data_output", False))
    asked = {
        output.name: (output.parameters or {}).get("binary_data")
        for output in request.outputs or []
    }
    return {name for name in names if (default if asked.get(name) is None else bool(asked[name]))}
