"""Explanations: which inputs made an answer, computed with tf.GradientTape on the SavedModel's
own serving function (and, for Grad-CAM, on the layers after the last convolutional block,
re-applied from the SavedModel's variables), so any model in the folder gets them.

- `gradients`: integrated gradients (every model), with the completeness check; gradient x
  input and SmoothGrad (image models); the baselines they start from.
- `gradcam`: Grad-CAM (image models whose head the service can re-apply).
- `counterfactuals`: the smallest change of one feature that changes the answer (tabular).
- `chunks`: the memory bound, gradients over many rows a chunk at a time.
- `answer`: the methods a model supports, the request's options, the API's answer.
- `overlay`: the attribution map as a PNG over the photo or the model's input.

The names the service, the routes, the protocols, the tests and the benchmark call are
re-exported here: `from app.dataplane import explain`, then `explain.explanation(...)`.
"""

from app.dataplane.explain.answer import (
    IMAGE_METHODS,
    ExplainOptions,
    Method,
    check_options,
    default_steps,
    explanation,
    methods,
    target_index,
)
from app.dataplane.explain.chunks import chunk_rows
from app.dataplane.explain.counterfactuals import counterfactual
from app.dataplane.explain.gradcam import grad_cam
from app.dataplane.explain.gradients import gradient_x_input, integrated_gradients, smoothgrad
from app.dataplane.explain.overlay import input_overlay_png, photo_overlay_png

__all__ = [
    "IMAGE_METHODS",
    "ExplainOptions",
    "Method",
    "check_options",
    "chunk_rows",
    "counterfactual",
    "default_steps",
    "explanation",
    "grad_cam",
    "gradient_x_input",
    "input_overlay_png",
    "integrated_gradients",
    "methods",
    "photo_overlay_png",
    "smoothgrad",
    "target_index",
]
