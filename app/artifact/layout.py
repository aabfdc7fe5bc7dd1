"""The folder layout models are published in: `<model_dir>/<name>/<version>/`, as TensorFlow
Serving lays them out. Only folders named by ASCII digits are versions, so a new version is
published atomically by renaming its finished folder (a copy in progress, `.tmp-3`, is not one).
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def version_number(path: Path) -> int | None:
    """The version a folder holds, or None when its name is not a version number ("2", not
    "v2", ".tmp-2" or "²", which str.isdigit() accepts but int() refuses)."""
    name = path.name
    return int(name) if path.is_dir() and name.isascii() and name.isdigit() else None


def versions(model_path: Path) -> dict[int, Path]:
    """The version folders of one model's folder, by number."""
    found = {}
    for version_path in model_path.iterdir():
        number = version_number(version_path)
        if number is not None:
            found[number] = version_path
    return found


def scan_versions(model_dir: Path, names: list[str] | None = None) -> dict[tuple[str, int], Path]:
    """Every `<model_dir>/<name>/<version>/` folder with a numeric version, by (name, version)."""
    if not model_dir.is_dir():
        logger.error("model folder not found", extra={"path": str(model_dir)})
        return {}
    found = {}
    for model_path in sorted(p for p in model_dir.iterdir() if p.is_dir()):
        if names and model_path.name not in names:
            continue
        for number, version_path in versions(model_path).items():
            found[(model_path.name, number)] = version_path
    return found
