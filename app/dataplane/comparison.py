"""How two versions of a model answer the same rows: each row's answers side by side and how
far apart they are, and the distance between their layer traces where a layer has the same name
and output shape in both (`/api/models/{name}/compare`)."""

from __future__ import annotations

import numpy as np

from app.artifact.card import ModelCard
from app.core.errors import BadInput
from app.dataplane import traces
from app.dataplane.schemas import Comparison, LayerDistance, RowComparison
from app.dataplane.shadow import disagreement
from app.runtime.model import ModelRuntime


def input_form(card: ModelCard) -> tuple[object, ...]:
    """What two versions must share for one request to go to both: the input's kind, name and
    shape, and its features by name (their observed and accepted ranges may differ)."""
    spec = card.input
    return spec.kind, spec.name, spec.shape, [f.name for f in spec.features or []]


def check_comparable(first: ModelRuntime, second: ModelRuntime) -> None:
    if input_form(first.loaded_card) != input_form(second.loaded_card):
        raise BadInput(
            f"Versions {first.version} and {second.version} of '{first.name}' take different "
            "inputs, so one request cannot be sent to both.",
            field="b",
        )


def comparison(
    first: ModelRuntime,
    second: ModelRuntime,
    first_trace: dict[str, np.ndarray],
    second_trace: dict[str, np.ndarray],
) -> Comparison:
    """The comparison of two versions' traces of the same rows (the trace's last layer is the
    serving output)."""
    first_out = first_trace[first.loaded_card.layers[-1].trace_key]
    second_out = second_trace[second.loaded_card.layers[-1].trace_key]
    classifier = first.loaded_card.output.kind == second.loaded_card.output.kind == "probabilities"
    compared = []
    a_answers = traces.describe(first, first_out)
    b_answers = traces.describe(second, second_out)
    for a_row, b_row, a_answer, b_answer in zip(
        first_out, second_out, a_answers, b_answers, strict=True
    ):
        changes, difference = (
            disagreement(a_row[np.newaxis], b_row[np.newaxis], classifier)
            if a_row.shape == b_row.shape
            else (None, None)
        )
        compared.append(
            RowComparison(
                a=a_answer,
                b=b_answer,
                mean_abs_difference=None if difference is None else float(difference[0]),
                max_abs_difference=None
                if difference is None
                else float(np.abs(a_row - b_row).max()),
                class_changed=bool(changes) if classifier and changes is not None else None,
            )
        )
    layers, unmatched = [], []
    second_specs = {spec.name: spec for spec in second.loaded_card.layers}
    for spec in first.loaded_card.layers:
        other = second_specs.pop(spec.name, None)
        a_values = first_trace[spec.trace_key]
        b_values = None if other is None else second_trace[other.trace_key]
        if b_values is None or a_values.shape != b_values.shape:
            unmatched.append(spec.name)
            continue
        norm = float(np.linalg.norm(a_values))
        layers.append(
            LayerDistance(
                layer=spec.name,
                shape=list(a_values.shape[1:]),
                mean_abs_difference=float(np.abs(a_values - b_values).mean()),
                relative_l2=float(np.linalg.norm(a_values - b_values)) / norm if norm else None,
            )
        )
    unmatched += list(second_specs)
    return Comparison(
        model=first.name,
        a=first.version,
        b=second.version,
        rows=compared,
        layers=layers,
        unmatched_layers=unmatched,
    )
