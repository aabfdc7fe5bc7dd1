"""Reading the YAML manifests under deploy/ (tests/ops/test_k8s.py, tests/ops/test_kserve.py)."""

from __future__ import annotations

from pathlib import Path

import yaml


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def only_resource(manifests: list[Path], kind: str) -> dict:
    """The one resource of that kind in the manifests."""
    found = [doc for path in manifests for doc in documents(path) if doc["kind"] == kind]
    assert len(found) == 1, kind
    return found[0]
