"""Answers from model outputs: one output row as a typed prediction with the card's labels and
units, and the layer trace of one input (each layer's output, summarised when large, with the
weights on request) within the configured size limits."""

from __future__ import annotations

import numpy as np

from app.core.errors import PayloadTooLarge
from app.core.settings import Settings
from app.dataplane import familiarity
from app.dataplane.schemas import (
    ClassPrediction,
    InputFamiliarity,
    LayerOutput,
    LayerTrace,
    Prediction,
    Summary,
    ValuePrediction,
)
from app.runtime.model import ModelRuntime

WEIGHTED_LAYER_TYPES = {"Dense", "Conv2D", "DepthwiseConv2D", "SeparableConv2D"}


def layer_trace(
    runtime: ModelRuntime,
    batch: np.ndarray,
    outputs: dict[str, np.ndarray],
    settings: Settings,
    *,
    full: bool = False,
    weights: bool = False,
) -> LayerTrace:
    """The trace signature's `outputs` for one input (`batch`, one row) as the typed layer
    trace."""
    inline_limit = settings.trace_inline_values
    slice_size = settings.trace_slice_values
    specs = runtime.loaded_card.layers
    layer_weights = {
        spec.name: runtime.weights(spec.name) if weights else {}
        for spec in specs
        if spec.type in WEIGHTED_LAYER_TYPES
    }
    total = sum(
        size if full or size <= inline_limit else slice_size
        for size in (outputs[spec.trace_key][0].size for spec in specs)
    ) + sum(w.size for layer in layer_weights.values() for w in layer.values())
    if total > settings.trace_max_values:
        raise PayloadTooLarge(
            f"This trace would return {total} values; the limit is "
            f"{settings.trace_max_values}. Ask without full=true or weights=true."
        )
    layers = []
    for index, spec in enumerate(specs):
        values = outputs[spec.trace_key][0]
        flat = values.reshape(-1)
        inline = full or values.size <= inline_limit
        own_weights = layer_weights.get(spec.name)
        layers.append(
            LayerOutput(
                index=index,
                name=spec.name,
                type=spec.type,
                activation=spec.activation,
                output_shape=spec.output_shape,
                size=int(values.size),
                values=values.tolist() if inline else None,
                summary=Summary(
                    min=float(flat.min()),
                    max=float(flat.max()),
                    mean=float(flat.mean()),
                    zero_fraction=float(np.mean(flat == 0)),
                ),
                slice=None if inline else flat[:slice_size].tolist(),
                weights={k: v.tolist() for k, v in own_weights.items()} if own_weights else None,
            )
        )
    last = outputs[specs[-1].trace_key][:1]
    familiar = familiarity.answers(runtime, batch[:1], runtime.trace_scores(batch[:1], outputs))
    return LayerTrace(
        model=runtime.name,
        version=runtime.version,
        layers=layers,
        prediction=describe(runtime, last, familiar)[0],
        familiarity=familiar[0],
    )


def describe(
    runtime: ModelRuntime,
    rows: np.ndarray,
    familiar: list[InputFamiliarity | None] | None = None,
) -> list[Prediction]:
    """Each model output row (`rows` is 2-D) as a typed answer with labels and units from the
    card, and its familiarity where given."""
    known = familiar or [None] * len(rows)
    # Plain constructors: pydantic-core validates these few fields in about half the time
    # `model_construct`'s Python loop takes to skip validating them (pydantic 2.14).
    output = runtime.loaded_card.output
    if output.kind == "probabilities":
        labels = output.labels
        assert labels is not None  # a probabilities output is labelled
        return [
            ClassPrediction(
                model=runtime.name,
                version=runtime.version,
                label=labels[index],
                class_index=index,
                probabilities=dict(zip(labels, row, strict=True)),
                familiarity=one,
            )
            for index, row, one in zip(
                rows.argmax(axis=1).tolist(), rows.tolist(), known, strict=True
            )
        ]
    return [
        ValuePrediction(
            model=runtime.name,
            version=runtime.version,
            value=value,
            unit=output.unit,
            dollars=round(value * output.unit_scale, 2) if output.unit_scale else None,
            familiarity=one,
        )
        for value, one in zip(rows.reshape(len(rows), -1)[:, 0].tolist(), known, strict=True)
    ]
