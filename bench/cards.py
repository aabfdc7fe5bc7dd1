"""Which model versions a benchmark server loads: the newest version folder with a card.

Shared by the bench runner, the baseline and the floor. Imports neither TensorFlow nor FastAPI.
"""

from __future__ import annotations

from pathlib import Path

from app.card import CARD_FILE


def newest_versions(model_dir: Path, names: list[str] | None = None) -> dict[str, Path]:
    """name -> the newest `<model_dir>/<name>/<version>/` that holds a model card."""
    found: dict[str, Path] = {}
    if not model_dir.is_dir():
        return found
    for model_path in sorted(p for p in model_dir.iterdir() if p.is_dir()):
        if names and model_path.name not in names:
            continue
        versions = [
            p
            for p in model_path.iterdir()
            if p.is_dir() and p.name.isdigit() and (p / CARD_FILE).is_file()
        ]
        if versions:
            found[model_path.name] = max(versions, key=lambda p: int(p.name))
    return found
