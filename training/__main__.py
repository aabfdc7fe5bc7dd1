"""`python -m training iris|housing|mnist|catdog|all [options]`: train, export, print a table.

`python -m training familiarity [iris|housing|mnist|catdog|all] --data-dir <data>`: add the
familiarity statistics to the exported versions in `--out` (`--version`, default: each model's
newest), from their SavedModels and the training data, without retraining.
`python -m training drift-reference|calibration-intervals [--data-dir D]` adds figures to the
committed cards without retraining (`training.cards`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training import PIPELINES, cards, familiarity
from training.common import Options, format_table, next_version, run


def parse_args(argv: list[str] | None = None) -> tuple[list[str], Options]:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    parser.add_argument("model", choices=[*PIPELINES, "all"])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="offline data folder (layout of shared/data/README.md); "
        "without it the real loaders download the data",
    )
    parser.add_argument("--out", type=Path, default=Path("models"), help="models folder")
    parser.add_argument(
        "--version",
        type=int,
        default=None,
        help="version number to write (default: the next free one)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="default: per model")
    parser.add_argument("--baseline-epochs", type=int, default=None, help="default: per model")
    parser.add_argument("--batch-size", type=int, default=None, help="default: per model")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--arch", default=None, help="mnist only: 'cnn' (default, shipped) or 'mlp' (the seed)"
    )
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help="catdog: where a checkpoint is written after every epoch "
        "(default: checkpoints/catdog)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="catdog: continue the run in --checkpoint-dir from its last complete epoch "
        "(a finished run is only evaluated, calibrated and exported again)",
    )
    args = parser.parse_args(argv)
    names = list(PIPELINES) if args.model == "all" else [args.model]
    options = Options(
        epochs=args.epochs,
        seed=args.seed,
        out_dir=args.out,
        version=args.version,
        data_dir=args.data_dir,
        batch_size=args.batch_size,
        arch=args.arch,
        baseline_epochs=args.baseline_epochs,
        checkpoint_dir=args.checkpoint_dir,
        resume=args.resume,
    )
    return names, options


def refresh_familiarity(names: list[str], options: Options) -> int:
    """The familiarity statistics added to already exported versions (no training)."""
    from app.artifact.card import ModelCard

    for name in names:
        pipeline = PIPELINES[name]
        model_dir = options.out_dir / name
        version_dir = model_dir / str(options.version or next_version(model_dir) - 1)
        seed = ModelCard.read(version_dir).training.get("seed", options.seed)
        splits = pipeline.load_data(options.data_dir, int(str(seed)))
        card = familiarity.refresh(version_dir, splits.familiarity_inputs(), pipeline)
        block = card.familiarity
        assert block is not None
        print(
            f"{name:<8} {block.method:<18} threshold {block.threshold:10.4f}  "
            f"test familiar {block.test_familiar:.3f}  {version_dir}",
            flush=True,
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in cards.COMMANDS:
        return cards.main(argv[0], argv[1:])
    if argv[:1] == ["familiarity"]:
        rest = argv[1:] if argv[1:2] and not argv[1].startswith("-") else ["all", *argv[1:]]
        names, options = parse_args(rest)
        return refresh_familiarity(names, options)
    names, options = parse_args(argv)
    results = []
    for name in names:
        results.append(run(PIPELINES[name], options))
        print(format_table(results[-1:]), flush=True)
    print()
    print(format_table(results))
    return 0 if all(result.met for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
