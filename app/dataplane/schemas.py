"""The answers of the data plane: typed predictions, layer traces, model status and reload
reports. Every protocol serializes these; the HTTP layer documents them."""

from typing import Any, Literal

from pydantic import BaseModel, Field


class VersionStatus(BaseModel):
    version: int
    state: Literal["loading", "ready", "failed"]
    reason: str | None = Field(None, description="Why the version failed to load.")


class ModelSummary(BaseModel):
    name: str
    task: str | None
    description: str | None
    default_version: int | None = Field(description="The version served when none is asked.")
    versions: list[VersionStatus]
    explanation_methods: list[str] = Field(
        default_factory=list,
        description="The methods /explain supports for this model (from its card's input and "
        "layers); others are refused with 422.",
    )


class RepositoryEntry(BaseModel):
    """One row of the model repository's index: a version the service has (loading, ready or
    failed), or a model of the folder it does not serve (`unloaded`, no version)."""

    name: str
    version: int | None = None
    state: Literal["loading", "ready", "failed", "unloaded"]
    reason: str | None = Field(None, description="Why it failed, or why it is not served.")


class ReloadReport(BaseModel):
    loaded: list[str] = Field(description="name/version of each version that now serves.")
    failed: list[str] = Field(description="name/version: reason, for each that failed to load.")
    removed: list[str] = Field(description="name/version of each version no longer served.")


class InputFamiliarity(BaseModel):
    """How familiar the input looks to the model: its score against the card's threshold
    (docs/models.md, "Familiarity"). Unfamiliar means the model is guessing."""

    score: float = Field(description="The familiarity score; higher is less familiar.")
    threshold: float = Field(
        description="Scores above it are unfamiliar (95% of held-in validation inputs are not)."
    )
    familiar: bool = Field(description="Whether the input looks like the training data.")
    percentile: float = Field(
        description="Where the score stands among the validation inputs' scores, 0 to 100."
    )
    nearest_class: str | None = Field(
        None, description="Image models: the class whose training activations lie nearest."
    )
    features_outside: list[str] | None = Field(
        None, description="Tabular models: the features outside the training range."
    )


class ClassPrediction(BaseModel):
    model: str
    version: int
    label: str = Field(description="The most probable class.")
    class_index: int = Field(description="Its index in the model's output.")
    probabilities: dict[str, float] = Field(description="Probability of each class, by label.")
    model_input: list[Any] | None = Field(
        None,
        description="The array the model actually saw after preprocessing (image models, "
        "when return_input=true).",
    )
    familiarity: InputFamiliarity | None = None


class ValuePrediction(BaseModel):
    model: str
    version: int
    value: float = Field(description="The prediction in the model's unit.")
    unit: str | None = None
    dollars: float | None = Field(None, description="The value in dollars, where it is money.")
    familiarity: InputFamiliarity | None = None


Prediction = ClassPrediction | ValuePrediction


class BatchPrediction(BaseModel):
    model: str
    version: int
    predictions: list[Prediction]


class Summary(BaseModel):
    min: float
    max: float
    mean: float
    zero_fraction: float = Field(description="Share of exact zeros (dead ReLU units, etc.).")


class LayerOutput(BaseModel):
    index: int
    name: str
    type: str
    activation: str | None = None
    output_shape: list[int | None] = Field(description="Shape with the batch dimension as null.")
    size: int = Field(description="Number of values in this layer's output for one input.")
    values: list[Any] | None = Field(
        None,
        description="The full output for the one input (nested as output_shape without "
        "the batch dimension); absent for large outputs unless full=true.",
    )
    summary: Summary
    slice: list[float] | None = Field(
        None, description="The first values of the flattened output, when values is absent."
    )
    weights: dict[str, list[Any]] | None = Field(
        None, description="The layer's variables (kernel, bias, ...) when weights=true."
    )


class LayerTrace(BaseModel):
    """The output of every layer for one input, in order. For a Dense layer,
    `layers[i].values == activation(layers[i-1].values @ weights.kernel + weights.bias)`."""

    model: str
    version: int
    layers: list[LayerOutput]
    prediction: Prediction
    familiarity: InputFamiliarity | None = None


class Completeness(BaseModel):
    """Integrated gradients' own check: the attributions add up to the change of the output."""

    attribution_sum: float
    output_change: float = Field(description="f(input) - f(baseline).")
    relative_error: float = Field(description="|sum - change| / |change|.")


class FeatureAttribution(BaseModel):
    name: str
    value: float
    unit: str
    attribution: float = Field(description="In the output's units (probability, or its unit).")


class Counterfactual(BaseModel):
    found: bool
    sentence: str = Field(description="The counterfactual in plain words.")
    feature: str | None = None
    value: float | None = Field(None, description="The feature's value now.")
    changed_to: float | None = Field(None, description="The value that changes the answer.")
    outcome: float | str | None = Field(None, description="The new class, or the new value.")
    probability: float | None = Field(None, description="The new class's probability.")


class Explanation(BaseModel):
    model: str
    version: int
    method: str
    target: str = Field(description="The output explained: a class, or 'value'.")
    output: float = Field(description="That output for the input.")
    baseline: str | None = Field(
        None, description="What the attributions are measured against (integrated gradients)."
    )
    steps: int | None = Field(None, description="Integration steps (integrated gradients).")
    samples: int | None = Field(None, description="Noisy samples (SmoothGrad).")
    completeness: Completeness | None = None
    features: list[FeatureAttribution] | None = Field(
        None, description="Tabular models: one per feature, largest magnitude first."
    )
    attribution_map: list[list[float]] | None = Field(
        None,
        description="Image models: one value per input pixel (height x width), summed over "
        "the colour channels.",
    )
    counterfactual: Counterfactual | None = None
    familiarity: InputFamiliarity | None = None


class ShadowStatus(BaseModel):
    """How a shadow candidate's answers differ from the default version's, counted by this
    worker since it started (Prometheus sums every worker's)."""

    version: int = Field(description="The candidate version that gets the copies.")
    fraction: float = Field(description="The share of the default version's requests copied.")
    compared_with: int = Field(description="The default version the copies come from.")
    compared_rows: int = Field(description="Rows both versions answered and were compared.")
    class_changes: int | None = Field(
        description="Rows whose top class differs (classifiers; null for a regressor)."
    )
    class_change_rate: float | None = Field(description="class_changes / compared_rows.")
    mean_abs_difference: float | None = Field(
        description="Mean over the rows of the mean absolute difference of the outputs."
    )
    max_abs_difference: float | None = Field(
        description="The largest row's mean absolute difference."
    )
    errors: int = Field(description="Copies the candidate failed on.")
    timeouts: int = Field(description="Copies not answered within GLASSBOX_SHADOW_TIMEOUT_S.")
    dropped: int = Field(
        description="Copies not made, because GLASSBOX_SHADOW_MAX_IN_FLIGHT were computing "
        "(or the candidate version was no longer ready)."
    )
    paused: int = Field(
        description="Copies not made because the candidate failed 3 times in a row: it gets "
        "none for 1 s, then 2, 4, ... up to 60 s while it keeps failing."
    )


class RolloutStatus(BaseModel):
    model: str
    default_version: int | None = Field(
        description="The version a request that names none gets when no weights are set: "
        "the `stable` label's, else the newest ready."
    )
    labels: dict[str, int] = Field(description="Label to version.")
    weights: dict[int, float] = Field(
        description="The canary split of requests that name no version: version to weight."
    )
    shadow: ShadowStatus | None = None
    refused: str | None = Field(
        None,
        description="Why the model's rollout file is not in force (the rollout above is): a "
        "version it names is not ready, or it is not valid.",
    )


class RowComparison(BaseModel):
    a: Prediction
    b: Prediction
    # Absent, not null, where they do not apply: answers leave out what is None.
    mean_abs_difference: float | None = Field(
        None,
        description="Mean absolute difference of the two outputs (absent if their shapes differ).",
    )
    max_abs_difference: float | None = None
    class_changed: bool | None = Field(
        None, description="Whether the top class differs (classifiers; absent for a regressor)."
    )


class LayerDistance(BaseModel):
    layer: str
    shape: list[int] = Field(description="The layer's output shape, without the batch.")
    mean_abs_difference: float
    relative_l2: float | None = Field(
        description="||a - b|| / ||a|| over the batch (null when a is all zeros)."
    )


class Comparison(BaseModel):
    model: str
    a: int = Field(description="The first version.")
    b: int = Field(description="The second version.")
    rows: list[RowComparison] = Field(description="Each input's answers, in order.")
    layers: list[LayerDistance] = Field(
        description="Per layer with the same name and output shape in both versions, the "
        "distance between their outputs for the whole batch."
    )
    unmatched_layers: list[str] = Field(
        description="Layers only one version has, or whose shapes differ."
    )


class DriftFigure(BaseModel):
    """One distribution of the window compared with the training one, by population
    stability index: PSI = sum over the bins of (window share - training share) *
    ln(window share / training share), each share at least 0.0001."""

    name: str = Field(
        description="The feature's name; `predicted_class`, `prediction` or `familiarity`.",
        examples=["MedInc"],
    )
    kind: Literal["feature", "predicted_class", "prediction", "familiarity"]
    psi: float | None = Field(description="Null while the window has too few rows for it.")
    threshold: float = Field(description="The card's PSI threshold.")
    crossed: bool | None = Field(description="psi > threshold; null with psi.")
    rows: int = Field(description="Window rows the figure counts (familiarity: those scored).")
    bins: list[str] = Field(description="Each bin, as a label: its range, or the class.")
    training: list[float] = Field(description="The training share of each bin.")
    window: list[float] | None = Field(description="The window's share of each bin.")


class ModelDrift(BaseModel):
    """The traffic of one model version compared with its training distribution, as this
    worker has seen it (each worker keeps its own window; Prometheus takes the largest)."""

    model: str
    version: int
    window_size: int = Field(description="GLASSBOX_DRIFT_WINDOW: the rows a window keeps.")
    rows: int = Field(description="Predictions in the window now (at most window_size).")
    seen: int = Field(description="Predictions this worker has answered with this version.")
    min_rows: int = Field(description="Rows a figure needs before it is computed.")
    enough_data: bool = Field(description="rows >= min_rows: false means 'not enough data'.")
    figures: list[DriftFigure]
    crossed: list[str] = Field(description="The figures over their threshold, by name.")
