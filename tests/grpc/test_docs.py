"""The gRPC examples in docs/api.md and the README work as printed: each grpcurl line (done as
grpcurl does it, tests/grpc/grpcurl.py) and each client script, run against a live server
without keys (as the README's first command starts one), answer what the page shows."""

from __future__ import annotations

import base64
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.grpc import grpcurl
from tests.ops.server import ROOT, serve

API_DOCS = (ROOT / "docs" / "api.md").read_text()
README = (ROOT / "README.md").read_text()
# The sections that show gRPC: the API page's, and the README's part of "One example per client".
SECTIONS = {
    "api": API_DOCS[API_DOCS.index("\n## gRPC\n") : API_DOCS.index("The `GLASSBOX_*` settings")],
    "readme": README[README.index("gRPC, on port 8001") : README.index("More of each")],
}
PROTOCOLS = {"inference.GRPCInferenceService", "tensorflow.serving.PredictionService"}


def console_examples(section: str) -> list[tuple[str, str]]:
    """(command, printed output) for each `$ ` line of the section's console blocks."""
    examples = []
    for block in re.findall(r"```console\n(.*?)```", section, re.S):
        for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, _, output = chunk.partition("\n")
            examples.append((command, output))
    return examples


def scripts(section: str) -> list[tuple[str, str]]:
    """(file name, source) of each Python block introduced by its file name."""
    return re.findall(r"`(\w+\.py)`\)?:\n\n```python\n(.*?)```", section, re.S)


def method_of(command: str) -> str:
    return command.partition(" | ")[0].split()[-1]


GRPCURL = [
    (where, command, output)
    for where, section in SECTIONS.items()
    for command, output in console_examples(section)
    if command.startswith("grpcurl")
]
SCRIPTS = [
    (where, name, source)
    for where, section in SECTIONS.items()
    for name, source in scripts(section)
]


@pytest.fixture(scope="module")
def open_server(tmp_path_factory, model_dir):
    env = {"GLASSBOX_MODEL_DIR": str(model_dir), "GLASSBOX_POLL_INTERVAL_S": "0"}
    with serve(tmp_path_factory.mktemp("grpc-docs") / "server.log", env) as running:
        yield running


@pytest.mark.parametrize("where", SECTIONS)
def test_each_section_has_grpcurl_lines_and_a_script_for_each_grpc_api(where):
    section = SECTIONS[where]
    commands = [command for command, _ in console_examples(section) if "grpcurl" in command]
    assert {method_of(command).split("/")[0] for command in commands} >= PROTOCOLS
    sources = [source for _, source in scripts(section)]
    assert any("tritonclient.grpc" in source for source in sources)
    assert any("tensorflow_serving.apis" in source for source in sources)


# Model outputs as the pages print them, compared as numbers: float32 results differ in their
# last digits from one CPU to another (other vector instructions, another order of the sums).
RTOL, ATOL = 1e-4, 1e-8
# A number as printed: a float has a point or an exponent; an integer (a shape, a digit, an id)
# must match exactly.
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def close(printed: float, answered: float, last_place: float = 0.0) -> bool:
    """Equal to the tolerance, or within one unit of the last digit printed."""
    return math.isclose(printed, answered, rel_tol=RTOL, abs_tol=max(ATOL, last_place))


def same(printed, answered) -> bool:
    """Equal, numbers to the tolerance; base64 float32 bytes by their values."""
    if isinstance(printed, dict):
        return printed.keys() == answered.keys() and all(
            same(printed[key], answered[key]) for key in printed
        )
    if isinstance(printed, list):
        return len(printed) == len(answered) and all(map(same, printed, answered))
    if isinstance(printed, float):
        return isinstance(answered, int | float) and close(printed, answered)
    if isinstance(printed, str) and printed != answered:
        try:
            values = [np.frombuffer(base64.b64decode(text), "<f4") for text in (printed, answered)]
        except ValueError:
            return False
        return values[0].shape == values[1].shape and np.allclose(*values, RTOL, ATOL)
    return printed == answered


def last_place(number: str) -> float:
    """One unit of the last digit of a float as printed: 1e-06 for 0.000176, 1e-11 for
    1.7640945e-04."""
    mantissa, _, exponent = number.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def same_text(printed: str, answered: str) -> bool:
    """The same text, but for its floats, which need only be close; integers exactly."""
    words, numbers = NUMBER.split(printed), NUMBER.findall(printed)
    if words != NUMBER.split(answered) or len(numbers) != len(NUMBER.findall(answered)):
        return False
    for mine, theirs in zip(numbers, NUMBER.findall(answered), strict=True):
        if not re.search(r"[.eE]", mine):
            if mine != theirs:
                return False
        elif not close(float(mine), float(theirs), last_place(mine)):
            return False
    return True


def test_printed_floats_compare_by_value_and_everything_else_exactly():
    """The comparison itself: the last digits of a float may differ, nothing else may."""
    documented = "[[9.9982363e-01 1.7640945e-04 2.4508234e-12]]\n0.999824 0.000176\ndigit: [7]\n"
    assert same_text(documented, documented.replace("45e-04", "43e-04").replace("34e-12", "32e-12"))
    assert same_text(documented, documented.replace("0.000176", "0.000177"))  # rounded otherwise
    assert not same_text(documented, documented.replace("1.764", "1.765"))
    assert not same_text(documented, documented.replace("0.999824", "0.998824"))
    assert not same_text(documented, documented.replace("[7]", "[1]"))
    assert not same_text(documented, documented.replace("digit", "digits"))
    assert not same_text(documented, documented.replace("]]", "]"))
    assert same({"v": [0.00017640945]}, {"v": [0.00017640943]})
    assert not same({"v": [0.00017640945]}, {"v": [0.0001765]})
    assert not same({"v": [0.5]}, {"v": "0.5"})


@pytest.mark.parametrize(
    ("where", "command", "output"),
    GRPCURL,
    ids=[f"{where}-{method_of(command)}" for where, command, _ in GRPCURL],
)
def test_each_grpcurl_line_answers_as_printed(open_server, where, command, output):
    answered = grpcurl.run(command, open_server.grpc_target)
    if output.lstrip()[:1] in "{[":
        assert same(json.loads(output), json.loads(answered)), answered
    else:
        assert same_text(output, answered), answered


@pytest.mark.parametrize(("where", "name", "source"), SCRIPTS, ids=[name for _, name, _ in SCRIPTS])
def test_each_client_script_prints_what_the_page_shows(open_server, tmp_path, where, name, source):
    """The scripts as printed, pointed at the test server (the README's name localhost:8001,
    the API page's read GLASSBOX_GRPC)."""
    script = tmp_path / name
    script.write_text(source.replace("localhost:8001", open_server.grpc_target))
    printed = next(
        output for command, output in console_examples(SECTIONS[where]) if name in command
    )
    env = {**os.environ, "GLASSBOX_GRPC": open_server.grpc_target, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("GLASSBOX_API_KEY", None)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,  # a bound on a hang: importing TensorFlow on a busy machine is slow
    )
    assert done.returncode == 0, done.stderr
    assert same_text(printed, done.stdout), done.stdout
