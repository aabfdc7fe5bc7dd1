"""The model card (`metadata.json`): what a trained model takes, answers and scored.

Training writes it and the service reads it, so both sides share this one schema. It imports
neither TensorFlow nor FastAPI.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from app.artifact.drift_reference import DriftReference
from app.artifact.familiarity import Familiarity

CARD_FILE = "metadata.json"
# Every exported SavedModel has both: raw input to prediction, and raw input to every layer's
# output keyed `NN_<layer>` in order.
SERVING_SIGNATURE = "serving_default"
TRACE_SIGNATURE = "trace"
SIGNATURES = (SERVING_SIGNATURE, TRACE_SIGNATURE)


class FeatureSpec(BaseModel):
    """One named numeric input of a tabular model."""

    name: str
    unit: str
    description: str
    observed_min: float = Field(description="Smallest value in the training split.")
    observed_max: float = Field(description="Largest value in the training split.")
    mean: float = Field(description="Mean over the training split; used as the example value.")
    allowed_min: float = Field(description="Requests below this are refused (422).")
    allowed_max: float = Field(description="Requests above this are refused (422).")


class ImageSpec(BaseModel):
    """How an uploaded image becomes the model's input tensor."""

    height: int
    width: int
    channels: Literal[1, 3]
    preprocessing: Literal["mnist", "resize"] = Field(
        description="'mnist': grayscale, invert light backgrounds, crop to the ink, fit 20x20, "
        "centre by centre of mass in 28x28. 'resize': RGB, resized to height x width."
    )
    interpolation: Literal["bilinear", "bicubic", "nearest", "lanczos"] = "bilinear"
    aspect: Literal["stretch"] = Field(
        "stretch", description="The whole image is resized to the target size, aspect not kept."
    )
    value_range: tuple[float, float] = (0.0, 255.0)


class InputSpec(BaseModel):
    kind: Literal["features", "image"]
    name: str = Field(description="Input name of both signatures.")
    dtype: Literal["float32"] = "float32"
    shape: list[int | None] = Field(description="Shape with the batch dimension as null.")
    features: list[FeatureSpec] | None = None
    image: ImageSpec | None = None

    @property
    def image_spec(self) -> ImageSpec:
        """`image`, for an image input (which has one)."""
        if self.image is None:
            raise ValueError(f"Input '{self.name}' ({self.kind}) has no image spec.")
        return self.image


class OutputSpec(BaseModel):
    kind: Literal["probabilities", "value"]
    name: str = Field(description="Output key of the serving_default signature.")
    labels: list[str] | None = Field(None, description="Class labels in output order.")
    unit: str | None = None
    unit_scale: float | None = Field(None, description="One output unit in dollars, etc.")


class LayerSpec(BaseModel):
    name: str
    type: str
    activation: str | None = None
    output_shape: list[int | None]
    params: int
    trace_key: str = Field(description="Output key of this layer in the trace signature.")


class Metric(BaseModel):
    name: Literal["accuracy", "rmse"]
    value: float


class Target(BaseModel):
    metric: Literal["accuracy", "rmse"]
    op: Literal[">=", "<="]
    value: float
    split: str

    def met(self, value: float) -> bool:
        return value >= self.value if self.op == ">=" else value <= self.value


class ReliabilityBin(BaseModel):
    """One confidence bin of a reliability table: the answers whose top probability fell in
    [lower, upper), how many there were, and how often they were right."""

    lower: float
    upper: float
    count: int
    mean_confidence: float | None = Field(None, description="Mean top probability; null if empty.")
    accuracy: float | None = Field(None, description="Fraction answered right; null if empty.")


class EceInterval(BaseModel):
    """An ECE with its bootstrap 95% interval: the 2.5th and 97.5th percentiles of the ECE of
    `resamples` resamples (with replacement) of the same predictions."""

    ece: float
    low: float
    high: float
    rows: int = Field(description="Predictions the ECE is computed over.")
    resamples: int
    predictions: str = Field(description="Which predictions: the split, the model that made them.")


class OutOfFold(EceInterval):
    """ECE of pooled out-of-fold predictions: each of `folds` folds answered by a net trained
    (and its temperature fitted) on the other folds only."""

    folds: int
    temperatures: list[float] = Field(description="The temperature fitted in each fold.")
    ece_untempered: float = Field(description="The ECE of the same pooled answers at T = 1.")
    reliability: list[ReliabilityBin]


class Calibration(BaseModel):
    """How the exported probabilities were calibrated, and what it changed on the test split."""

    method: Literal["temperature"] = Field(
        "temperature",
        description="Temperature scaling: the served probabilities are softmax(log(p) / T), "
        "computed as the logits divided by T (a `temperature` Dense layer, kernel I/T) "
        "before the softmax.",
    )
    temperature: float = Field(description="T > 1 softens overconfident answers, T < 1 sharpens.")
    fit_split: str = Field(description="The split T was fitted on (by log-likelihood).")
    bins: int = Field(15, description="Equal-width confidence bins of the ECE and the tables.")
    ece_before: float = Field(description="Expected calibration error on the test split, T = 1.")
    ece_after: float = Field(description="Expected calibration error on the test split, T fitted.")
    nll_before: float | None = Field(None, description="Mean negative log-likelihood, test, T = 1.")
    nll_after: float | None = Field(
        None, description="Mean negative log-likelihood, test, T fitted."
    )
    reliability_before: list[ReliabilityBin]
    reliability_after: list[ReliabilityBin]
    ece_interval: EceInterval | None = Field(
        None, description="ece_after with its bootstrap 95% interval (the test split)."
    )
    out_of_fold: OutOfFold | None = Field(
        None,
        description="Where the test split is too small to judge the ECE (iris): the ECE of "
        "pooled out-of-fold predictions over every non-test row, which the target is judged on.",
    )


class ModelCard(BaseModel):
    name: str
    version: int
    task: Literal["classification", "regression"]
    description: str
    created: str
    library_versions: dict[str, str]
    input: InputSpec
    output: OutputSpec
    layers: list[LayerSpec]
    signatures: list[str] = list(SIGNATURES)
    training: dict[str, object]
    data: dict[str, object]
    metrics: dict[str, float] = Field(description="Scores on the held-out test split.")
    target: Target
    baselines: dict[str, dict[str, float]] = Field(
        description="Other models trained on the same split, with their test scores."
    )
    files: dict[str, str] = Field(description="sha256 of every file of the SavedModel.")
    calibration: Calibration | None = Field(
        None, description="Classifiers: the temperature built into the export (older cards: none)."
    )
    drift: DriftReference | None = Field(
        None, description="The training distribution the traffic is compared with (docs/drift.md)."
    )
    familiarity: Familiarity | None = Field(
        None,
        description="How far an input lies from the training data (app/artifact/familiarity.py); "
        "older cards: none.",
    )

    @classmethod
    def read(cls, version_dir: Path) -> ModelCard:
        return cls.model_validate_json((version_dir / CARD_FILE).read_text())

    def write(self, version_dir: Path) -> None:
        (version_dir / CARD_FILE).write_text(self.model_dump_json(indent=2) + "\n")


def hash_files(version_dir: Path) -> dict[str, str]:
    """sha256 of every file under `version_dir` except the card itself, by relative path."""
    hashes = {}
    for path in sorted(version_dir.rglob("*")):
        if path.is_file() and path.name != CARD_FILE:
            hashes[path.relative_to(version_dir).as_posix()] = _sha256(path)
    return hashes


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
