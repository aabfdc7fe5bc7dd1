"""TF Serving's protos to and from the model's arrays, checked against its card.

Predict takes DT_FLOAT tensors, and for an image model DT_STRING tensors of encoded image files
(one per row), decoded as the typed endpoints decode uploads: our extension, as `{"b64": ...}`
is over REST, since TF Serving would hand the model the strings. Classify and Regress take
tf.Examples: one feature per card feature for a tabular model, or the input's name holding all
of a row's values (a float_list), or for an image model one encoded file (a bytes_list). Each
input tensor's shape and count are checked from the proto before any values are read:
tf.make_ndarray fills a tensor out to its declared shape, so a few bytes could otherwise ask for
gigabytes. Outputs are DT_FLOAT tensors.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import input_pb2

from app.artifact.card import ModelCard
from app.core.errors import ProtocolError
from app.dataplane.service import InferenceService
from app.protocols import tensors


def expects(card: ModelCard) -> str:
    expected = f"DT_FLOAT with shape {tensors.dims(card.input.shape)}"
    if card.input.kind == "image":
        expected += " or DT_STRING with shape [-1] (one encoded image file per row)"
    return expected


def _as_array(proto: tensor_pb2.TensorProto, where: str) -> np.ndarray:
    try:
        array: np.ndarray = tf.make_ndarray(proto)
    except (ValueError, TypeError) as error:
        raise ProtocolError(f"{where} is not a well-formed TensorProto: {error}") from None
    return array


def dtype_name(proto: tensor_pb2.TensorProto) -> str:
    if proto.dtype in types_pb2.DataType.values():
        return str(types_pb2.DataType.Name(proto.dtype))
    return f"{proto.dtype} (not a DataType)"


def image_batch(
    service: InferenceService, card: ModelCard, proto: tensor_pb2.TensorProto, where: str
) -> np.ndarray:
    """A DT_STRING input: one encoded image file per row."""
    shape = [dim.size for dim in proto.tensor_shape.dim]
    if len(shape) not in (1, 2) or shape[1:] not in ([], [1]):
        raise ProtocolError(
            f"{where} is DT_STRING with shape {shape}; model '{card.name}' takes {expects(card)}."
        )
    tensors.check_count(service, shape[0])
    files = list(proto.string_val)
    if len(files) != shape[0]:
        raise ProtocolError(
            f"{where} has shape {shape} but {len(files)} values in string_val; send one "
            "image file per row."
        )
    return np.stack(
        [tensors.image_file(service, card, data, f"{where}[{i}]") for i, data in enumerate(files)]
    )


def float_batch(
    service: InferenceService, card: ModelCard, proto: tensor_pb2.TensorProto, where: str
) -> np.ndarray:
    """A DT_FLOAT input, of the card's shape but for the batch."""
    shape = [dim.size for dim in proto.tensor_shape.dim]
    expected = tensors.dims(card.input.shape)
    if len(shape) != len(expected) or shape[1:] != expected[1:]:
        raise ProtocolError(
            f"{where} has shape {shape}; model '{card.name}' takes {expects(card)} (the first "
            "dimension is the batch)."
        )
    tensors.check_count(service, shape[0])
    batch = _as_array(proto, where)
    if not np.isfinite(batch).all():
        raise ProtocolError(f"{where} holds a value that is not a finite float32 number.")
    return batch


def float_tensor(values: np.ndarray) -> tensor_pb2.TensorProto:
    """An output as TF Serving answers one: DT_FLOAT with its values in float_val (which
    tf.make_ndarray reads as it reads tensor_content, and grpcurl prints as numbers)."""
    proto = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in values.shape]
        ),
    )
    proto.float_val.extend(values.reshape(-1).tolist())
    return proto


def string_tensor(values: np.ndarray) -> tensor_pb2.TensorProto:
    """A 1-D output of byte strings (`familiarity`'s JSON per row) as DT_STRING."""
    proto = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(values))]
        ),
    )
    proto.string_val.extend(values.tolist())
    return proto


def _feature_values(feature: example_pb2.Feature, where: str) -> list[float]:
    kind = feature.WhichOneof("kind")
    if kind not in ("float_list", "int64_list"):
        raise ProtocolError(f"{where} must be a float_list or int64_list; it is {kind}.")
    return list(getattr(feature, kind).value)


def _example_row(
    service: InferenceService, card: ModelCard, features: dict[str, example_pb2.Feature], where: str
) -> np.ndarray:
    per_row = tensors.dims(card.input.shape)[1:]
    named = [feature.name for feature in card.input.features or []]
    if set(features) == {card.input.name}:
        feature = features[card.input.name]
        if feature.WhichOneof("kind") == "bytes_list" and card.input.kind == "image":
            files = list(feature.bytes_list.value)
            if len(files) != 1:
                raise ProtocolError(
                    f"{where} holds {len(files)} image files; send one per example."
                )
            return tensors.image_file(service, card, files[0], where)
        values = _feature_values(feature, f"{where} feature '{card.input.name}'")
        if len(values) != math.prod(per_row):
            raise ProtocolError(
                f"{where} feature '{card.input.name}' has {len(values)} values; model "
                f"'{card.name}' takes {math.prod(per_row)} per example."
            )
        row = np.asarray(values, dtype=np.float32).reshape(per_row)
    elif named and set(features) == set(named):
        row = np.empty(len(named), dtype=np.float32)
        for index, name in enumerate(named):
            values = _feature_values(features[name], f"{where} feature '{name}'")
            if len(values) != 1:
                raise ProtocolError(f"{where} feature '{name}' has {len(values)} values; one.")
            row[index] = values[0]
    else:
        takes = f"'{card.input.name}'" + (f", or each of {', '.join(named)}" if named else "")
        raise ProtocolError(
            f"{where} has the features {sorted(features)}; model '{card.name}' takes {takes}."
        )
    if not np.isfinite(row).all():
        raise ProtocolError(f"{where} holds a value that is not a finite float32 number.")
    return row


def example_batch(service: InferenceService, card: ModelCard, given: input_pb2.Input) -> np.ndarray:
    kind = given.WhichOneof("kind")
    if kind is None:
        raise ProtocolError("The request's input holds no examples.")
    listed = getattr(given, kind)
    context = dict(listed.context.features.feature) if kind == "example_list_with_context" else {}
    examples = list(listed.examples)
    tensors.check_count(service, len(examples))
    rows = [
        _example_row(
            service, card, {**context, **example.features.feature}, f"input.examples[{index}]"
        )
        for index, example in enumerate(examples)
    ]
    return np.stack(rows)
