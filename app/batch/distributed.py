"""The same scoring on Ray Data, for inputs that outgrow one machine (the `batch` extra:
`pip install "glassbox[batch]"`): `score_dataset` reads the input with Ray Data, runs
`Scorer.score` in a `map_batches` stage whose callable class loads the model once per worker
(an actor), and returns the predictions and the rejects as two datasets to write where the
cluster writes (`ray.data.Dataset.write_parquet`, `ray.data.Dataset.write_csv`).

Rows are told apart by their id column (an image by its path), which the input must have: a
distributed read has no one row number. Each output row is a prediction or a reject, in one
table with the `reason` column null for predictions, split in two at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from app.batch.loading import load_runtime
from app.batch.scoring import IMAGE_COLUMN, REASON_COLUMN, Scorer
from app.batch.sources import FILE_NAME, Format, csv_convert_options
from app.core.settings import Settings


class ScoreBatches:
    """A `map_batches` stage: the model loaded once, when Ray starts the worker's actor, from
    the worker's own copy of the model folder (checked against the card's hashes)."""

    def __init__(
        self,
        settings: Settings,
        model: str,
        version: str,
        id_column: str,
        top: int,
        with_familiarity: bool,
    ):
        runtime = load_runtime(
            settings.model_dir, model, version, verify_hashes=settings.verify_hashes
        )
        self.scorer = Scorer(
            runtime, settings, id_column, explain_top=top, with_familiarity=with_familiarity
        )

    def __call__(self, batch: pa.Table) -> pa.Table:
        scored = self.scorer.score(batch)
        return pa.concat_tables(
            [
                scored.predictions.append_column(
                    REASON_COLUMN, pa.nulls(scored.predictions.num_rows, pa.string())
                ),
                scored.rejects,
            ],
            promote_options="default",  # a reject's prediction columns: null
        )


def score_dataset(
    settings: Settings,
    model: str,
    path: Path,
    fmt: Format,
    *,
    id_column: str = "id",
    version: str = "",
    batch_size: int = 4096,
    workers: int = 1,
    explain_top: int = 0,
    with_familiarity: bool = False,
) -> tuple[Any, Any]:
    """The predictions and the rejects of the input at `path` as Ray datasets (lazy: they run
        when written or read; the scoring itself has run). Ray must be started (`ray.init`), or it
    starts a local one."""
    import ray.data

    # The version resolved here, once, so that every worker loads the same one.
    runtime = load_runtime(settings.model_dir, model, version, verify_hashes=settings.verify_hashes)
    card, version = runtime.loaded_card, str(runtime.version)
    if fmt == "images":
        root = path.resolve()
        dataset = ray.data.read_binary_files(str(path), include_paths=True).map_batches(
            lambda batch: _image_table(batch, root), batch_format="pyarrow"
        )
        id_column = FILE_NAME
    else:
        features = [spec.name for spec in card.input.features or []]
        columns = [id_column, *features]
        if fmt == "csv":
            options = csv_convert_options(card, columns)
            dataset = ray.data.read_csv(str(path), convert_options=options)
        else:
            dataset = ray.data.read_parquet(str(path), columns=columns)
    scored = dataset.map_batches(
        ScoreBatches,
        fn_constructor_args=(settings, model, version, id_column, explain_top, with_familiarity),
        batch_format="pyarrow",
        batch_size=batch_size,
        concurrency=workers,
    ).materialize()
    predictions = scored.filter(lambda row: row[REASON_COLUMN] is None).drop_columns(
        [REASON_COLUMN]
    )
    rejects = scored.filter(lambda row: row[REASON_COLUMN] is not None).select_columns(
        [id_column, REASON_COLUMN]
    )
    return predictions, rejects


def _image_table(batch: pa.Table, root: Path) -> pa.Table:
    """Ray's binary files (`bytes`, `path`) as the scorer's images: `file`, relative to the
    folder as the command line names them, and `image`."""
    names = [Path(p).resolve().relative_to(root).as_posix() for p in batch["path"].to_pylist()]
    return pa.table({FILE_NAME: pa.array(names, pa.string()), IMAGE_COLUMN: batch["bytes"]})
