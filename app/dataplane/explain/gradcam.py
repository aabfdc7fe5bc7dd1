"""Grad-CAM, for image models whose layers after the last 4-D activation the service can
re-apply from the SavedModel's variables: the last block's activation maps weighted by the mean
gradient of the class score (the value before the softmax) over each map, rectified and resized
to the model's input size."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.artifact.card import ModelCard
from app.core.errors import BadInput
from app.dataplane.explain.gradients import Attribution
from app.runtime.model import ModelRuntime

# Layers the Grad-CAM head can re-apply from the SavedModel's variables.
_HEAD_LAYERS = {"Flatten", "Dropout", "GlobalAveragePooling2D", "Dense", "Activation"}


def grad_cam_layer(card: ModelCard) -> int | None:
    """The index of the last 4-D layer output (the last convolutional block's) when every
    layer after it can be re-applied from the SavedModel's variables; None otherwise."""
    last = max(
        (i for i, layer in enumerate(card.layers) if len(layer.output_shape) == 4), default=None
    )
    if last is None or not all(layer.type in _HEAD_LAYERS for layer in card.layers[last + 1 :]):
        return None
    return last


def _activation(name: str | None, tensor: Any) -> Any:
    import tensorflow as tf

    functions = {
        None: tf.identity,
        "linear": tf.identity,
        "relu": tf.nn.relu,
        "softmax": tf.nn.softmax,
        "sigmoid": tf.sigmoid,
        "tanh": tf.tanh,
    }
    if name not in functions:
        raise BadInput(f"Grad-CAM cannot re-apply the activation '{name}'.", field="method")
    return functions[name](tensor)


def grad_cam(runtime: ModelRuntime, row: np.ndarray, output: int) -> Attribution:
    import tensorflow as tf

    card = runtime.loaded_card
    index = grad_cam_layer(card)
    if index is None:
        raise BadInput(f"Model '{card.name}' does not support grad_cam.", field="method")
    block = card.layers[index]
    head = card.layers[index + 1 :]
    if head and head[-1].type == "Activation" and head[-1].activation == "softmax":
        head = head[:-1]  # the class score is the value before the softmax
    before_softmax = bool(head) and head[-1].type == "Dense" and head[-1].activation == "softmax"
    activations = tf.constant(runtime.trace(row[np.newaxis])[block.trace_key])
    with tf.GradientTape() as tape:
        tape.watch(activations)
        tensor = activations
        for layer in head:
            if layer.type == "Flatten":
                tensor = tf.reshape(tensor, [tf.shape(tensor)[0], -1])
            elif layer.type == "GlobalAveragePooling2D":
                tensor = tf.reduce_mean(tensor, axis=[1, 2])
            elif layer.type == "Dense":
                weights = runtime.weights(layer.name)
                tensor = tf.matmul(tensor, weights["kernel"]) + weights.get("bias", 0.0)
                last = layer is head[-1]
                tensor = (
                    tensor if last and before_softmax else _activation(layer.activation, tensor)
                )
            elif layer.type == "Activation":
                tensor = _activation(layer.activation, tensor)
            # Dropout: the identity at inference.
        score = tensor[:, output]
    gradients = tape.gradient(score, activations)[0].numpy()
    weights = gradients.mean(axis=(0, 1))  # one weight per activation map
    cam = np.maximum((activations[0].numpy() * weights).sum(axis=-1), 0)
    height, width = card.input.shape[1], card.input.shape[2]
    resized = tf.image.resize(cam[..., np.newaxis], [height, width], method="bilinear")
    return Attribution(resized.numpy()[..., 0])
