"""Small inputs for the batch jobs, written from the committed samples: a housing CSV with a
few rows the service would refuse, and a folder of mnist digits with files that are not."""

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.artifact.card import ModelCard
from tests.conftest import MODELS

FEATURES = [spec.name for spec in ModelCard.read(MODELS / "housing" / "1").input.features or []]
# Rows the service refuses, each with the words its reason must hold.
BAD_ROWS = {
    "not-a-number": ({"MedInc": "abc"}, "MedInc is not a number"),
    "missing": ({"HouseAge": ""}, "HouseAge is missing"),
    "not-finite": ({"AveRooms": "inf"}, "AveRooms must be a finite number"),
    "out-of-range": ({"Latitude": "10.5"}, "Latitude must be between"),
}


def write_housing_csv(path: Path, rows: np.ndarray, bad: bool = True) -> Path:
    """`rows` with ids r0, r1, ..., a `target` column the job ignores, and (with `bad`) the
    refused rows of BAD_ROWS among them, on a good row's other values."""
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["id", *FEATURES, "target"])
        for index, row in enumerate(rows):
            writer.writerow([f"r{index}", *(repr(float(v)) for v in row), "1.0"])
            if bad and index == 2:
                for name, (changed, _) in BAD_ROWS.items():
                    values = {n: repr(float(v)) for n, v in zip(FEATURES, row, strict=True)}
                    writer.writerow([name, *{**values, **changed}.values(), "1.0"])
    return path


@pytest.fixture(scope="session")
def housing_rows(housing_sample) -> np.ndarray:
    return housing_sample["x_test"][:40]


@pytest.fixture
def housing_csv(tmp_path, housing_rows) -> Path:
    return write_housing_csv(tmp_path / "blocks.csv", housing_rows)


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def digits_folder(tmp_path, mnist_sample) -> Path:
    """Twelve digits in two subfolders, a text file, an empty file, a hidden file and a hidden
    folder."""
    folder = tmp_path / "digits"
    for index, pixels in enumerate(mnist_sample["x_test"][:12]):
        sub = folder / ("a" if index % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{index:02d}.png").write_bytes(png(255 - pixels))  # ink on white, as drawn
    (folder / "notes.txt").write_text("not an image")
    (folder / "empty.png").write_bytes(b"")
    (folder / ".hidden.png").write_bytes(png(mnist_sample["x_test"][0]))
    (folder / ".cache").mkdir()
    (folder / ".cache" / "thumb.png").write_bytes(png(mnist_sample["x_test"][0]))
    return folder


@pytest.fixture(scope="session")
def housing_runtime():
    from app.batch.loading import load_runtime

    return load_runtime(MODELS, "housing")


@pytest.fixture(scope="session")
def mnist_runtime():
    from app.batch.loading import load_runtime

    return load_runtime(MODELS, "mnist")
