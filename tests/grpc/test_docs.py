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


def same(printed, answered) -> bool:
    """Equal, numbers to float32 precision; base64 float32 bytes by their values."""
    if isinstance(printed, dict):
        return printed.keys() == answered.keys() and all(
            same(printed[key], answered[key]) for key in printed
        )
    if isinstance(printed, list):
        return len(printed) == len(answered) and all(map(same, printed, answered))
    if isinstance(printed, float):
        return math.isclose(printed, answered, rel_tol=1e-5, abs_tol=1e-12)
    if isinstance(printed, str) and printed != answered:
        try:
            values = [np.frombuffer(base64.b64decode(text), "<f4") for text in (printed, answered)]
        except ValueError:
            return False
        return values[0].shape == values[1].shape and np.allclose(*values, rtol=1e-5)
    return printed == answered


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
        assert answered == output


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
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == printed
