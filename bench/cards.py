"""Which model versions a benchmark server loads: the newest version folder with a card.

Shared by the bench runner, the baseline and the floor. Imports neither TensorFlow nor FastAPI.
"""

from __future__ import annotations

from pathlib import Path

from app.artifact.card import CARD_FILE
from app.artifact.layout import scan_versions


def newest_versions(model_dir: Path, names: list[str] | None = None) -> dict[str, Path]:
    """name -> the newest `<model_dir>/<name>/<version>/` that holds a model card."""
    found: dict[str, Path] = {}
    for (name, _version), path in sorted(scan_versions(model_dir, names).items()):
        if (path / CARD_FILE).is_file():
            found[name] = path  # in version order, so the last one kept is the newest
    return found
