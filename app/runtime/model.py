"""One loaded model version: a SavedModel with `serving_default` and `trace` signatures.

The runtime knows TensorFlow and the model card, never HTTP. `load()` verifies the files against
the card's hashes, loads the SavedModel and warms both signatures up; `predict()` and `trace()`
take a float32 batch shaped as the card says. `predict_scored()` adds each row's familiarity
score (app/artifact/familiarity.py) from the same model call: a function made at load from the
trace signature that returns the serving output and the layers the score reads (TensorFlow
prunes the rest), for a card with a familiarity block.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import logging
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

import numpy as np

from app.artifact.card import (
    CARD_FILE,
    SERVING_SIGNATURE,
    SIGNATURES,
    TRACE_SIGNATURE,
    ModelCard,
    hash_files,
)
from app.artifact.familiarity import FAMILIARITY_FILE, Scorer, Scores
from app.core.errors import ModelLoadError
from app.runtime.batching import Batcher
from app.runtime.statistics import InferenceStatistics
from app.runtime.window import PredictionWindow

logger = logging.getLogger(__name__)


class ModelState(StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class ScoredOutputs:
    """The serving output of a batch and, for a card with familiarity, each row's score."""

    outputs: np.ndarray
    familiarity: Scores | None = None

    def __len__(self) -> int:
        return len(self.outputs)

    def __getitem__(self, rows: slice) -> ScoredOutputs:
        scores = self.familiarity
        if scores is None:
            return ScoredOutputs(self.outputs[rows])
        nearest = None if scores.nearest is None else scores.nearest[rows]
        return ScoredOutputs(self.outputs[rows], Scores(scores.score[rows], nearest))


class ModelRuntime:
    def __init__(self, name: str, version: int, path: Path):
        self.name = name
        self.version = version
        self.path = path
        self.card: ModelCard | None = None
        self.state = ModelState.LOADING
        self.reason: str | None = None
        # The SavedModel's concrete functions (TensorFlow has no type information).
        self._serve: Any = None
        self._trace: Any = None
        self._scored: Any = None  # serving output and the familiarity layers, one call
        self.familiarity: Scorer | None = None
        self._weights: dict[str, dict[str, np.ndarray]] = {}
        self.fingerprint = folder_fingerprint(path)
        # Its dynamic batcher, made by the data plane on the first request (one object per
        # version in the registry's one map: the batcher goes when the version goes).
        self.batcher: Batcher[ScoredOutputs] | None = None
        # What it has computed, for Triton's statistics (the batcher records into it).
        self.statistics = InferenceStatistics()
        # Its last answered predictions, for drift, made by the data plane on the first one.
        self.window: PredictionWindow | None = None

    @property
    def ready(self) -> bool:
        return self.state is ModelState.READY

    @property
    def loaded_card(self) -> ModelCard:
        """The card, for a runtime that has read it (every ready one does)."""
        card = self.card
        if card is None:
            raise RuntimeError(
                f"Model '{self.name}' version {self.version} has no model card ({self.state})."
            )
        return card

    def load(self, verify_hashes: bool = True) -> None:
        """Load and warm up; on any failure the runtime is FAILED with the reason, never raises."""
        try:
            self._load(verify_hashes)
        except Exception as error:  # any broken artifact must leave the other models serving
            self.state = ModelState.FAILED
            reason = str(error) if isinstance(error, ModelLoadError) else repr(error)
            logger.error(
                "model failed to load",
                extra={"model": self.name, "version": self.version, "reason": reason},
            )
            # Callers see it (/api/models, v2 metadata): paths from the model folder on, not
            # where the server keeps its files.
            self.reason = relative_paths(reason, self.path.parent.parent)
            return
        self.state = ModelState.READY
        logger.info("model ready", extra={"model": self.name, "version": self.version})

    def _load(self, verify_hashes: bool) -> None:
        import tensorflow as tf

        if not (self.path / CARD_FILE).is_file():
            raise ModelLoadError(f"{CARD_FILE} (the model card) is missing")
        try:
            card = self.card = ModelCard.read(self.path)
        except ValueError as error:
            raise ModelLoadError(f"{CARD_FILE} is not a valid model card: {error}") from None
        if verify_hashes:
            found = hash_files(self.path)
            if found != card.files:
                bad = sorted(
                    name
                    for name in set(found) | set(card.files)
                    if found.get(name) != card.files.get(name)
                )
                raise ModelLoadError(f"files do not match the model card's sha256: {bad}")
        loaded = tf.saved_model.load(str(self.path))
        missing = [name for name in SIGNATURES if name not in loaded.signatures]
        if missing:
            raise ModelLoadError(f"the SavedModel lacks the signature(s) {missing}")
        self._loaded = loaded  # keeps the variables the signatures read alive
        self._serve = loaded.signatures[SERVING_SIGNATURE]
        self._trace = loaded.signatures[TRACE_SIGNATURE]
        if card.familiarity is not None:
            if not (self.path / FAMILIARITY_FILE).is_file():
                raise ModelLoadError(
                    f"the card has a familiarity block but {FAMILIARITY_FILE} is missing"
                )
            self.familiarity = Scorer.read(card.familiarity, self.path)
            if self.familiarity.layers:
                self._scored = self._scored_function(self.familiarity.layers)
        for variable in loaded.variables:
            layer, _, weight = variable.name.rpartition(":")[0].rpartition("/")
            self._weights.setdefault(layer, {})[weight] = variable.numpy()
        warm = self.zeros(1)
        self.predict(warm)
        self.predict_scored(warm)
        self.trace(warm)

    def zeros(self, rows: int) -> np.ndarray:
        """An input of `rows` rows of zeros, to warm a function up at a batch size: its first
        call at one builds its kernels (oneDNN's, per shape), tens of milliseconds at
        thousands of rows."""
        card = self.loaded_card  # only the batch dimension of an input is unknown
        return np.zeros([rows, *cast(list[int], card.input.shape[1:])], dtype=np.float32)

    def _scored_function(self, layers: dict[str, int | None]) -> Any:
        import tensorflow as tf

        card, trace = self.loaded_card, self._trace
        last = card.layers[-1].trace_key  # the serving output (the export's own check)
        spec = tf.TensorSpec([None, *card.input.shape[1:]], tf.float32)

        def read(value: Any, channels: int | None) -> Any:
            if channels is None:
                return value
            # Averaged in the graph: a convolution's positions never leave it (mnist's first:
            # 21,632 values a digit, against its 32 channels).
            return tf.reduce_mean(value, axis=list(range(1, value.shape.rank - 1)))

        def scored(batch: Any) -> dict[str, Any]:
            outputs = trace(**{card.input.name: batch})
            return {
                "output": outputs[last],
                **{layer: read(outputs[layer], channels) for layer, channels in layers.items()},
            }

        # The concrete function, called directly: the tf.function's own dispatch (binding the
        # call to its signatures, looking up its traces) cost mnist 0.2-0.3 ms a call.
        return tf.function(scored, input_signature=[spec]).get_concrete_function()

    def call(self, signature: str, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of a signature (serving_default or trace) for a float32 batch."""
        import tensorflow as tf

        function = self._serve if signature == SERVING_SIGNATURE else self._trace
        outputs = function(**{self.loaded_card.input.name: tf.constant(batch, dtype=tf.float32)})
        return {key: outputs[key].numpy() for key in sorted(outputs)}

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """The serving_default output for a float32 batch."""
        return self.call(SERVING_SIGNATURE, batch)[self.loaded_card.output.name]

    def predict_scored(self, batch: np.ndarray) -> ScoredOutputs:
        """The serving output for a float32 batch with each row's familiarity score, from one
        model call (without familiarity in the card: the output alone)."""
        import tensorflow as tf

        scorer = self.familiarity
        if scorer is None:
            return ScoredOutputs(self.predict(batch))
        if self._scored is None:  # the score reads the input itself
            return ScoredOutputs(self.predict(batch), scorer.scores(batch))
        outputs = {
            key: value.numpy()
            for key, value in self._scored(tf.constant(batch, tf.float32)).items()
        }
        return ScoredOutputs(outputs["output"], scorer.scores_of(batch, outputs))

    def trace_scores(self, batch: np.ndarray, outputs: dict[str, np.ndarray]) -> Scores | None:
        """Familiarity scores from a trace of `batch` (None without familiarity in the card)."""
        scorer = self.familiarity
        if scorer is None:
            return None
        return scorer.scores_of(batch, outputs)

    def trace(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every layer's output, keyed as the card's layers say, in order."""
        return self.call(TRACE_SIGNATURE, batch)

    def output_gradients(self, batch: np.ndarray, output: int) -> tuple[np.ndarray, np.ndarray]:
        """The serving_default output for each row and the gradient of its `output`-th value
        with respect to that row's input (tf.GradientTape through the SavedModel's function)."""
        import tensorflow as tf

        inputs = tf.constant(batch, dtype=tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            values = self._serve(**{self.loaded_card.input.name: inputs})[
                self.loaded_card.output.name
            ]
            chosen = values[:, output]
        gradient = tape.gradient(chosen, inputs)
        return values.numpy(), gradient.numpy()

    def weights(self, layer: str) -> dict[str, np.ndarray]:
        """A layer's variables by name (kernel, bias, ...), read from the SavedModel."""
        return self._weights.get(layer, {})


def folder_fingerprint(path: Path) -> tuple[int, float]:
    """File count and newest modification time: changes when a folder's files change."""
    files = [p.stat() for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
    return len(files), max((f.st_mtime for f in files), default=0.0)


def configure_threads(intra_op: int, inter_op: int) -> None:
    """TensorFlow's thread pools (0: TensorFlow's choice; only possible before its first op),
    and numpy's BLAS on one thread.

    The familiarity scores' matrix products (numpy) run between model calls. On its own threads,
    OpenBLAS keeps them spinning for a while after a product, on the cores TensorFlow's threads
    need next: housing's call on 8,192 rows took 30-31 ms after a score against 17-20 ms after
    another call or a sleep, and 18-19 ms with BLAS on one thread (docs/performance.md)."""
    import tensorflow as tf
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    try:
        if intra_op:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        if inter_op:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:
        logger.warning("TensorFlow already started; its thread settings stay as they were")


def settle_heap() -> None:
    """Collect, then exempt every surviving object from future collections (`gc.freeze`).

    A loaded TensorFlow model leaves millions of long-lived objects. Without this, each
    full collection walks all of them while the event loop waits: tens to hundreds of
    milliseconds that land on whichever requests are in flight (the p99). Called after
    models load or go; cyclic garbage among frozen objects is left to the next call.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    # A request leaves a few hundred short-lived objects: collect the young generation every
    # 50,000 allocations rather than 700 (a few MB of garbage at most, waiting a little longer).
    gc.set_threshold(50_000, 20, 100)
    trim = _malloc_trim()
    if trim is not None:
        # The C heap keeps the pages a removed model's tensors freed in its arenas; glibc's
        # malloc_trim gives them back to the system (-23 MiB of RSS after unloading catdog and
        # mnist, where without it RSS did not move: bench.repository, docs/operations.md).
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    """glibc's `malloc_trim`, or None (another C library, another system)."""
    try:
        return getattr(ctypes.CDLL("libc.so.6"), "malloc_trim", None)
    except OSError:
        return None


def relative_paths(text: str, model_dir: Path) -> str:
    """`text` with the model folder's own path left out of any path in it."""
    # The longest first: a relative folder ("models") is also the tail of its absolute paths.
    roots = {str(model_dir.resolve()), str(model_dir.absolute()), str(model_dir)} - {".", ""}
    for root in sorted(roots, key=len, reverse=True):
        text = text.replace(root.rstrip(os.sep) + os.sep, "")
    return text
