"""The course's "behind the scenes" check, recomputed in numpy from a SavedModel's variables."""

from pathlib import Path

import numpy as np
import tensorflow as tf

from app.artifact.card import ModelCard

ACTIVATIONS = {
    None: lambda z: z,
    "linear": lambda z: z,
    "relu": lambda z: np.maximum(z, 0),
    "softmax": lambda z: (
        np.exp(z - z.max(-1, keepdims=True))
        / np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)
    ),
}


def variables_by_layer(loaded) -> dict[str, dict[str, np.ndarray]]:
    weights: dict[str, dict[str, np.ndarray]] = {}
    for variable in loaded.variables:
        layer, _, name = variable.name.split(":")[0].rpartition("/")
        weights.setdefault(layer, {})[name] = variable.numpy()
    return weights


def check_dense_layers(path: Path, x: np.ndarray) -> int:
    """Assert every Dense output equals activation(previous @ kernel + bias); return the count."""
    card = ModelCard.read(path)
    loaded = tf.saved_model.load(str(path))
    traced = loaded.signatures["trace"](**{card.input.name: tf.constant(x, tf.float32)})
    weights = variables_by_layer(loaded)
    checked = 0
    for index, layer in enumerate(card.layers):
        if layer.type != "Dense":
            continue
        previous = x if index == 0 else traced[card.layers[index - 1].trace_key].numpy()
        kernel, bias = weights[layer.name]["kernel"], weights[layer.name]["bias"]
        expected = ACTIVATIONS[layer.activation](previous @ kernel + bias)
        np.testing.assert_allclose(
            traced[layer.trace_key].numpy(),
            expected,
            rtol=1e-4,
            atol=1e-4,
            err_msg=f"{card.name} layer {layer.name}",
        )
        checked += 1
    return checked
