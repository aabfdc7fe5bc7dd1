"""What each scenario sends: one request, encoded once, sent many times.

Tabular bodies are the card's training means (always within the allowed ranges); image bodies
are the committed example images, as multipart uploads encoded here once so the client does no
per-request encoding work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from app.artifact.card import ModelCard

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "app" / "examples"
BOUNDARY = "glassbox-bench-7d1c0f5e"


@dataclass(frozen=True)
class Scenario:
    name: str
    model: str
    path: str
    upload: str | None = None  # file name in app/examples for an upload scenario
    content_type: str | None = None


@dataclass(frozen=True)
class Payload:
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("iris", "iris", "/api/models/iris/predict"),
        Scenario("housing", "housing", "/api/models/housing/predict"),
        Scenario("mnist", "mnist", "/api/models/mnist/predict", "mnist.png", "image/png"),
        Scenario("catdog", "catdog", "/api/models/catdog/predict", "catdog.jpg", "image/jpeg"),
        Scenario("iris-trace", "iris", "/api/models/iris/trace"),
    )
}
# The overload run: iris predictions far above the service's queue limit.
OVERLOAD = Scenario("overload", "iris", "/api/models/iris/predict")
# REST and gRPC side by side on one service (bench/protocols.py): iris and mnist.
PROTOCOLS = "protocols"
# Glassbox beside BentoML, MLServer and the floor, one and two workers (bench/compare.py).
PEERS = "peers"
ALL_NAMES = (*SCENARIOS, OVERLOAD.name, PROTOCOLS, PEERS)


def features_body(card: ModelCard) -> bytes:
    return json.dumps({spec.name: spec.mean for spec in card.input.features or []}).encode()


def multipart_body(field_name: str, filename: str, content_type: str, data: bytes) -> bytes:
    head = (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="{field_name}"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def build_payload(scenario: Scenario, card: ModelCard) -> Payload:
    if scenario.upload is None:
        return Payload(scenario.path, features_body(card), {"content-type": "application/json"})
    data = (EXAMPLES_DIR / scenario.upload).read_bytes()
    return Payload(
        scenario.path,
        multipart_body("file", scenario.upload, scenario.content_type or "", data),
        {"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
