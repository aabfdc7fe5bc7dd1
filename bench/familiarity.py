"""`python -m bench.familiarity --data-dir <data> [--record]`: how well each committed model's
familiarity score tells its test split from inputs it was never meant to see.

Per model and out-of-distribution set: AUROC (test split against the set, the score as the
classifier) and the false-positive rate at 95% true-positive rate (the share of the set scored
as familiar at the score that keeps 95% of the test split familiar), and the share of the set
the card's own threshold flags. Image models are scored by every candidate method, Mahalanobis
distance to the nearest class at the penultimate layer, the energy of the logits and (where the
pipeline names its layers) the feature ensemble, which is how the card's method was chosen
(docs/models.md). `--record` writes the card's method's rows
into each card's `familiarity.measured`. The table goes to `bench/results/familiarity_*.md`
(and `.json`).

The sets were fixed before any score was looked at, from what is at hand offline, and nothing is
tuned to them (the thresholds come from the validation splits at export):

- mnist: catdog test photos, natural images (scikit-image's and scikit-learn's sample photos,
  random crops), faces (scikit-image's LFW subset), textures, letters drawn with Pillow's
  default font, all through the service's own digit preprocessing as uploads; and as raw
  tensors, uniform noise, blank pages (every gray level) and inverted test digits.
- catdog: MNIST test digits, natural non-pet images, faces and textures, resized as uploads;
  uniform noise and blank (one-colour) images as raw tensors.
- iris, housing: the test split shifted, seeded: every feature doubled, one feature tripled,
  two columns swapped, one feature at an edge of the accepted range. Rows outside the accepted
  range are refused by the service (422) before any score; they count as flagged.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from sklearn.metrics import roc_auc_score

from app.artifact.card import ModelCard
from app.artifact.familiarity import OutOfDistributionRow, Scorer
from app.artifact.imaging import preprocess
from app.core.errors import BadInput
from bench.report import RESULTS
from training import PIPELINES
from training.familiarity import fit, layer_values, options_of, scored

ROOT = Path(__file__).resolve().parent.parent
IMAGE_METHODS = ("class_mahalanobis", "energy", "feature_ensemble")
SEED = 0
CROPS = 10  # random crops of each sample photo
SAMPLE = 500  # photos, digits and noise inputs per set
PETS = {"cat", "chelsea"}  # scikit-image's cat photos: in distribution for catdog
TEXTURES = ("brick", "grass", "gravel", "checkerboard", "binary_blobs")
NOT_PHOTOS = {"lfw_subset", "stereo_motorcycle", "lbp_frontal_face_cascade_filename"}


def sample_photos(exclude: set[str]) -> Iterator[tuple[str, np.ndarray]]:
    """scikit-image's bundled images that load offline (and scikit-learn's two), by name."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    for name, image in zip(("china", "flower"), load_sample_images().images, strict=True):
        yield name, image
    for name in sorted(skimage.data.__all__):
        if name in exclude or name in NOT_PHOTOS:
            continue
        loader = getattr(skimage.data, name)
        try:
            image = np.asarray(loader())
        except Exception:  # the images scikit-image would download are skipped
            continue
        if image.ndim in (2, 3) and min(image.shape[:2]) >= 32:
            yield name, image


def as_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == bool or image.max() <= 1.0:
        image = image.astype(np.float64) * 255
    return np.clip(image, 0, 255).astype(np.uint8)


def crops(images: list[np.ndarray], rng: np.random.Generator) -> list[Image.Image]:
    """Each image whole and CROPS random crops of it (a quarter to all of each side)."""
    out = []
    for array in images:
        image = Image.fromarray(as_uint8(array)[..., :3] if array.ndim == 3 else as_uint8(array))
        out.append(image)
        width, height = image.size
        for _ in range(CROPS):
            w, h = (int(side * rng.uniform(0.25, 1.0)) for side in (width, height))
            left, top = rng.integers(0, width - w + 1), rng.integers(0, height - h + 1)
            out.append(image.crop((left, top, left + w, top + h)))
    return out


def texture_image(name: str) -> np.ndarray:
    import skimage.data

    if name == "binary_blobs":  # random unless seeded
        return skimage.data.binary_blobs(rng=SEED)
    return getattr(skimage.data, name)()


def letters() -> list[Image.Image]:
    """A-Z and a-z, dark on white, in Pillow's default font at three sizes."""
    out = []
    for size in (24, 36, 48):
        font = ImageFont.load_default(size=size)
        for code in [*range(ord("A"), ord("Z") + 1), *range(ord("a"), ord("z") + 1)]:
            image = Image.new("L", (size * 2, size * 2), 255)
            ImageDraw.Draw(image).text((size // 2, size // 4), chr(code), fill=0, font=font)
            out.append(image)
    return out


def catdog_photos(data_dir: Path) -> list[Image.Image]:
    root = data_dir / "catdog" / "test"
    paths = [p for label in ("cat", "dog") for p in sorted((root / label).glob("*.jpg"))[:250]]
    return [Image.open(path).convert("RGB") for path in paths]


# A set: the inputs the service would answer, as one model-input batch, and how many more it
# refuses before any model call (422: no digit found, a feature outside the accepted range).
OodSet = tuple[np.ndarray, int]


def image_sets(name: str, card: ModelCard, data_dir: Path) -> dict[str, OodSet]:
    """The out-of-distribution inputs of an image model."""
    rng = np.random.default_rng(SEED)
    spec = card.input.image_spec
    shape = [int(side) for side in card.input.shape[1:] if side is not None]

    def uploads(images: list[Image.Image]) -> OodSet:
        answered = []
        for image in images:
            try:
                answered.append(preprocess(image, spec))
            except BadInput:
                continue
        return np.stack(answered).astype(np.float32), len(images) - len(answered)

    def tensors(batch: np.ndarray) -> OodSet:
        return batch.astype(np.float32), 0

    with np.load(data_dir / "mnist.npz") as mnist:
        digits = mnist["x_test"][:SAMPLE]
    import skimage.data

    faces = [
        Image.fromarray(as_uint8(face)).resize((100, 100)) for face in skimage.data.lfw_subset()
    ]
    exclude = set(TEXTURES) | (PETS if name == "catdog" else set())
    natural = crops([image for _, image in sample_photos(exclude)], rng)
    textures = crops([texture_image(texture) for texture in TEXTURES], rng)
    sets = {
        "natural images": uploads(natural),
        "faces": uploads(faces),
        "textures": uploads(textures),
        "uniform noise": tensors(rng.uniform(0, 255, [SAMPLE, *shape])),
    }
    levels = np.arange(0, 256, 5, dtype=np.float32)
    if name == "mnist":
        sets = {
            "catdog photos": uploads(catdog_photos(data_dir)),
            **sets,
            "letters": uploads(letters()),
            "blank pages": tensors(np.stack([np.full(shape, level) for level in levels])),
            "inverted digits": tensors(255 - digits.astype(np.float32)),
        }
    else:
        colours = rng.uniform(0, 255, [len(levels), 3]).astype(np.float32)
        sets = {
            "digits": uploads([Image.fromarray(digit) for digit in digits]),
            **sets,
            "blank images": tensors(np.stack([np.broadcast_to(c, shape) for c in colours])),
        }
    return sets


def tabular_sets(card: ModelCard, x_test: np.ndarray) -> dict[str, OodSet]:
    rng = np.random.default_rng(SEED)
    rows, width = x_test.shape
    features = card.input.features or []
    low = np.array([f.allowed_min for f in features], np.float32)
    high = np.array([f.allowed_max for f in features], np.float32)
    pick = rng.integers(0, width, rows)
    tripled = x_test.copy()
    tripled[np.arange(rows), pick] *= 3
    swapped = x_test.copy()
    for row in range(rows):
        a, b = rng.choice(width, 2, replace=False)
        swapped[row, [a, b]] = swapped[row, [b, a]]
    edges = x_test.copy()
    at_top = rng.random(rows) < 0.5
    edges[np.arange(rows), pick] = np.where(at_top, high[pick], low[pick])
    shifted = {
        "every feature x2": x_test * 2,
        "one feature x3": tripled,
        "two columns swapped": swapped,
        "one feature at a range edge": edges,
    }
    refused = {key: np.any((x < low) | (x > high), axis=1) for key, x in shifted.items()}
    return {key: (x[~refused[key]], int(refused[key].sum())) for key, x in shifted.items()}


def fpr_at_95_tpr(inside: np.ndarray, outside: np.ndarray) -> float:
    return float(np.mean(outside <= np.quantile(inside, 0.95)))


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    labels = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    return float(roc_auc_score(labels, np.r_[inside, outside]))


def measure(name: str, data_dir: Path) -> tuple[ModelCard, list[dict]]:
    """Rows of the table for one model: one per out-of-distribution set and method."""
    version_dir = ROOT / "models" / name / "1"
    card = ModelCard.read(version_dir)
    block = card.familiarity
    if block is None:
        raise SystemExit(
            f"{name}: the card has no familiarity block (python -m training familiarity)"
        )
    scorer = Scorer.read(block, version_dir)
    seed = int(str(card.training.get("seed", 42)))
    splits = PIPELINES[name].load_data(data_dir, seed)
    x_test = splits.x_test.astype(np.float32)
    methods: dict[str, Callable[[np.ndarray], np.ndarray]]
    if card.input.kind == "features":
        sets = tabular_sets(card, x_test)
        methods = {block.method: lambda x: scorer.scores(x).score}
    else:
        sets = image_sets(name, card, data_dir)
        values = layer_values(version_dir, card.input.name)
        ensemble = options_of(PIPELINES[name])[2]
        methods = {}
        for method in IMAGE_METHODS:  # each fitted as an export fits it
            candidate = scorer
            if method == "feature_ensemble" and not ensemble:
                continue
            if method != block.method:
                fitted = fit(
                    card.input,
                    card.layers,
                    splits.familiarity_inputs(),
                    values,
                    method=method,
                    ensemble=ensemble,
                )
                candidate = Scorer(*fitted)
            methods[method] = partial(scored, candidate, values)
    rows = []
    for method, score in methods.items():
        chosen = method == block.method
        inside = score(x_test)
        test_flagged = 1 - scorer.familiar(inside, scorer.outside_mask(x_test)).mean()
        for set_name, (x, refused) in sets.items():
            outside = score(x) if len(x) else np.zeros(0)
            familiar = scorer.familiar(outside, scorer.outside_mask(x)).sum() if len(x) else 0
            flagged = refused + len(x) - familiar
            rows.append(
                {
                    "model": name,
                    "method": method,
                    "set": set_name,
                    "count": len(x) + refused,
                    "refused": refused,
                    "auroc": auroc(inside, outside) if len(outside) else None,
                    "fpr_at_95_tpr": fpr_at_95_tpr(inside, outside) if len(outside) else None,
                    "flagged": float(flagged / (len(x) + refused)) if chosen else None,
                    "test_flagged": float(test_flagged) if chosen else None,
                }
            )
    return card, rows


def markdown(rows: list[dict]) -> str:
    head = (
        "| model | method | out-of-distribution set | n | refused | AUROC | FPR@95%TPR | flagged |"
    )
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        cells = [
            r["model"],
            r["method"],
            r["set"],
            str(r["count"]),
            str(r["refused"]),
            "-" if r["auroc"] is None else f"{r['auroc']:.3f}",
            "-" if r["fpr_at_95_tpr"] is None else f"{r['fpr_at_95_tpr']:.3f}",
            "-" if r["flagged"] is None else f"{r['flagged']:.3f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def record(card: ModelCard, rows: list[dict]) -> None:
    block = card.familiarity
    assert block is not None
    block.measured = [
        OutOfDistributionRow(
            name=r["set"],
            count=r["count"],
            refused=r["refused"],
            auroc=None if r["auroc"] is None else round(r["auroc"], 4),
            fpr_at_95_tpr=None if r["fpr_at_95_tpr"] is None else round(r["fpr_at_95_tpr"], 4),
            flagged=round(r["flagged"], 4),
        )
        for r in rows
        if r["method"] == block.method
    ]
    card.write(ROOT / "models" / card.name / str(card.version))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.familiarity", description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True, help="the offline data folder")
    parser.add_argument("--models", nargs="*", default=list(PIPELINES))
    parser.add_argument("--record", action="store_true", help="write the rows into the cards")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    everything = []
    for name in args.models:
        card, rows = measure(name, args.data_dir)
        everything.extend(rows)
        test_flagged = next(r["test_flagged"] for r in rows if r["test_flagged"] is not None)
        sys.stdout.write(f"{markdown(rows)}\n{name}: test split flagged {test_flagged:.3f}\n\n")
        sys.stdout.flush()
        if args.record:
            record(card, rows)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d_%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"familiarity_{stamp}.json").write_text(json.dumps(everything, indent=2) + "\n")
    (args.out / f"familiarity_{stamp}.md").write_text(markdown(everything) + "\n")
    sys.stdout.write(markdown(everything) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
