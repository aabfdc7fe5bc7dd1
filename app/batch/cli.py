"""`python -m app.batch MODEL INPUT OUTPUT` (`glassbox-batch`): score a file with a committed
model, a chunk at a time, with a progress bar on stderr and a summary at the end
(docs/batch.md).

Exit codes: 0 every input scored; 1 done, some inputs rejected (their reasons in the rejects
file); 2 nothing scored: a bad option, a missing model or one that fails to load, an unreadable
input or a missing column;
3 stopped part-way (the input broke, or a write failed): the outputs hold the chunks scored
before.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from app.core.errors import GlassboxError
from app.core.settings import Settings, get_settings

EXIT_SCORED, EXIT_REJECTS, EXIT_UNUSABLE, EXIT_STOPPED = 0, 1, 2, 3
DEFAULT_BATCH = {"features": 8192, "image": 128}  # rows per model call


@dataclass
class Summary:
    model: str
    version: int
    read: int
    scored: int
    rejected: int
    seconds: float
    output: Path
    rejects: Path

    def lines(self) -> list[str]:
        rate = self.read / self.seconds if self.seconds > 0 else 0.0
        return [
            f"{self.model} version {self.version}: {self.read} read in {self.seconds:.2f} s "
            f"({rate:,.0f} a second)",
            f"  scored:   {self.scored} -> {self.output}",
            f"  rejected: {self.rejected} -> {self.rejects}",
        ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="glassbox-batch",
        description="Score a CSV or Parquet file of features, or a folder of images, with a "
        "model, checked and preprocessed as the service does; rejected inputs go to a rejects "
        "file with the reason. Exit codes: 0 all scored, 1 some rejected, 2 nothing scored "
        "(bad option, model, input or column), 3 stopped part-way.",
    )
    parser.add_argument("model", help="The model's name, a folder under --models-dir.")
    parser.add_argument("input", type=Path, help="A .csv or .parquet file, or a folder of images.")
    parser.add_argument("output", type=Path, help="Where the predictions go: .csv or .parquet.")
    parser.add_argument(
        "--id-column",
        help="The input's column that names each row (default: 'id' if there is one, else the "
        "row number from 0, 'row'; an image's id is its path in the folder, 'file').",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        help="Inputs per chunk and model call (default: 8192 rows, 128 images).",
    )
    parser.add_argument(
        "--format",
        choices=("csv", "parquet", "images"),
        help="The input's format (default: from its extension; a folder is images).",
    )
    parser.add_argument(
        "--rejects",
        type=Path,
        help="Where rejected inputs go, with the reason (default: OUTPUT's name with .rejects "
        "before its extension, beside it).",
    )
    parser.add_argument(
        "--explain",
        type=int,
        default=0,
        metavar="K",
        help="Add the K features that moved each answer most (integrated gradients; tabular).",
    )
    parser.add_argument(
        "--familiarity",
        action="store_true",
        help="Add each input's familiarity: its score, percentile and whether it looks like "
        'the training data (docs/models.md, "Familiarity").',
    )
    parser.add_argument(
        "--explain-steps",
        type=int,
        help="Integration steps of --explain (default: as /explain).",
    )
    parser.add_argument(
        "--model-version",
        default="",
        help="A version number or label (default: the version the service would serve).",
    )
    parser.add_argument(
        "--models-dir", type=Path, help="The models folder (default: GLASSBOX_MODEL_DIR)."
    )
    parser.add_argument("--no-progress", action="store_true", help="No progress bar.")
    parser.add_argument("--version", action="version", version=f"glassbox-batch {_version()}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Messages as they are: no wrapping at the terminal's width, no markup read in file names.
    console = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)
    if args.batch_size is not None and args.batch_size < 1:
        console.print("error: --batch-size must be at least 1.")
        return EXIT_UNUSABLE
    settings = get_settings()
    if args.models_dir is not None:
        settings = settings.model_copy(update={"model_dir": args.models_dir})
    try:
        summary = run(args, settings, console)
    except Stopped as stopped:
        console.print(f"error: {stopped}")
        for line in stopped.summary.lines():
            console.print(line)
        return EXIT_STOPPED
    except GlassboxError as error:
        console.print(f"error: {error.message}")
        return EXIT_UNUSABLE
    for line in summary.lines():
        console.print(line)
    return EXIT_REJECTS if summary.rejected else EXIT_SCORED


class Stopped(Exception):
    """The job broke off part-way; `summary` counts what was written before."""

    def __init__(self, message: str, summary: Summary):
        super().__init__(message)
        self.summary = summary


def run(args: argparse.Namespace, settings: Settings, console: Console) -> Summary:
    """Score `args.input` into `args.output` and the rejects file; GlassboxError before anything
    is written, Stopped after."""
    import pyarrow as pa

    from app.batch.loading import load_runtime
    from app.batch.scoring import Scorer
    from app.batch.sinks import TableSink, output_format, rejects_path
    from app.batch.sources import Source, UnreadableInput, input_format
    from app.runtime.model import configure_threads

    if not args.input.exists():
        raise UnreadableInput(f"{args.input} does not exist.")
    fmt = input_format(args.input, args.format)
    output_format(args.output)
    rejects = args.rejects or rejects_path(args.output)
    output_format(rejects)
    configure_threads(settings.tf_intra_op_threads, settings.tf_inter_op_threads)
    runtime = load_runtime(
        settings.model_dir, args.model, args.model_version, verify_hashes=settings.verify_hashes
    )
    card = runtime.loaded_card
    batch_size = args.batch_size or DEFAULT_BATCH[card.input.kind]
    source = Source(
        args.input,
        fmt,
        card,
        args.id_column,
        batch_size=batch_size,
        max_image_bytes=settings.max_image_bytes,
    )
    scorer = Scorer(
        runtime,
        settings,
        source.id_column,
        explain_top=args.explain,
        explain_steps=args.explain_steps,
        with_familiarity=args.familiarity,
    )
    scorer.warm_up(batch_size)  # loading's, as the service's warm-up requests are
    predictions, refused = TableSink(args.output), TableSink(rejects)
    started = time.perf_counter()

    def summary() -> Summary:
        read = predictions.rows + refused.rows
        seconds = time.perf_counter() - started
        return Summary(
            card.name, runtime.version, read, predictions.rows, refused.rows, seconds,
            args.output, rejects,
        )  # fmt: skip

    progress = Progress(
        TextColumn(f"{card.name} [progress.description]{{task.description}}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=args.no_progress,
    )
    try:
        with progress:
            task = progress.add_task(source.unit, total=source.total)
            seen = False
            for chunk in source.chunks():
                seen = True
                scored = scorer.score(chunk.table)
                predictions.write(scored.predictions)
                refused.write(scored.rejects)
                progress.update(task, completed=chunk.done)
            if not seen:  # an empty input: the outputs with their columns and no rows
                scored = scorer.score(source.empty())
                predictions.write(scored.predictions)
                refused.write(scored.rejects)
    except (OSError, pa.ArrowException) as error:
        read = predictions.rows + refused.rows
        raise Stopped(f"stopped after {read} inputs: {error}", summary()) from error
    finally:
        predictions.close()
        refused.close()
        scorer.close()
    return summary()


def _version() -> str:
    try:
        return version("glassbox")
    except PackageNotFoundError:  # a checkout run in place, not installed
        return "unknown"
