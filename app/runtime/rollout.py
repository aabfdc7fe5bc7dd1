"""A model's rollout: named labels on versions, the canary split of requests that name no
version, and the shadow candidate that gets a copy of the default's requests.

A rollout is set in `<model_dir>/<name>/rollout.json`, read at every reload like the versions,
or by `PUT /admin/models/{name}/rollout`. The registry applies it only when every version it
names is ready; otherwise the rollout in force keeps serving.
"""

from __future__ import annotations

import hashlib
import json
import random
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from app.core.errors import BadInput

ROLLOUT_FILE = "rollout.json"
STABLE = "stable"
MAX_WEIGHT = 1_000_000  # relative weights; a percentage or per-mille split fits well within


def _not_a_number(label: str) -> str:
    # A label is never all digits, so a v2 version string is a version or a label, not both.
    if label.isdigit():
        raise ValueError("a label cannot be all digits (it would read as a version)")
    return label


Label = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9_-]{1,64}$"), AfterValidator(_not_a_number)
]

# Who is calling, for a sticky canary split: the X-Caller-ID header (gRPC: x-caller-id
# metadata), else the API key; set per request by the transports, None when neither is sent.
caller_var: ContextVar[str | None] = ContextVar("caller", default=None)


class ShadowPlan(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    version: int = Field(ge=1, description="The candidate version that gets the copies.")
    fraction: float = Field(
        1.0, gt=0, le=1, description="The share of the default version's requests copied."
    )


class RolloutPlan(BaseModel):
    """A model's labels, canary weights and shadow candidate, as the rollout file and the
    admin route take them."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    labels: dict[Label, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict,
        description='Label to version, e.g. {"stable": 1, "canary": 2}. Requests that name no '
        "version go to `stable` when it is set (and no weights are), else to the newest ready "
        "version.",
    )
    # Bounded so that their sum stays finite (two weights of 1e308 added to infinity and sent
    # every request to the last version).
    weights: dict[Annotated[int, Field(ge=1)], Annotated[float, Field(ge=0, le=MAX_WEIGHT)]] = (
        Field(
            default_factory=dict,
            description='Version to weight for requests that name no version, e.g. {"1": 90, '
            f'"2": 10}}; empty: no split. Each weight at most {MAX_WEIGHT:,}.',
        )
    )
    shadow: ShadowPlan | None = Field(
        None, description="A version that gets a copy of the default version's requests."
    )

    def versions(self) -> set[int]:
        """Every version the plan points at."""
        named = set(self.labels.values()) | {v for v, w in self.weights.items() if w > 0}
        return named | ({self.shadow.version} if self.shadow else set())

    def check(self) -> None:
        if self.weights and not any(weight > 0 for weight in self.weights.values()):
            raise BadInput("weights: at least one version needs a weight above 0.")

    def pick(self, model: str, caller: str | None) -> int | None:
        """The version the split sends a request to, None without weights. A caller lands in
        the same place of [0, 1) every time (a hash of model and caller), so it stays on one
        version while the weights stay the same; a request without a caller lands at random."""
        if not self.weights:  # most models: no split to sort out on every request
            return None
        live = sorted((v, w) for v, w in self.weights.items() if w > 0)
        if not live:
            return None
        if caller is None:
            point = random.random()
        else:
            digest = hashlib.sha256(f"{model}\0{caller}".encode()).digest()
            point = int.from_bytes(digest[:8], "big") / 2**64
        total = sum(weight for _, weight in live)
        cumulative = 0.0
        for version, weight in live:
            cumulative += weight / total
            if point < cumulative:
                return version
        return live[-1][0]


def read_plan(folder: Path) -> RolloutPlan | None:
    """The model folder's rollout file, None when there is none; BadInput when it is not a
    valid rollout."""
    path = folder / ROLLOUT_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise BadInput(f"{path} cannot be read: {error.strerror}.") from None
    try:
        plan = RolloutPlan.model_validate(json.loads(text))
    except (ValueError, ValidationError) as error:
        first = str(error).splitlines()[:3]
        raise BadInput(f"{path} is not a valid rollout: {' '.join(first)}") from None
    plan.check()
    return plan


def write_plan(folder: Path, plan: RolloutPlan) -> None:
    """Write the model folder's rollout file in one step (a temporary file renamed over it),
    so a worker polling meanwhile reads the old one or the new one, never half of either."""
    partial = folder / f".{ROLLOUT_FILE}.partial"
    partial.write_text(plan.model_dump_json(indent=2) + "\n")
    partial.replace(folder / ROLLOUT_FILE)
