"""A fresh machine installs what the lock pins: the README's two commands, `.ci/run`, the
Dockerfile and the lock agree with each other and with pyproject.toml."""

from __future__ import annotations

import re
import shlex
import tomllib
from importlib import metadata

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.ops.server import ROOT, SERVE_COMMAND

LOCK = ROOT / "requirements.lock"
INSTALL = "python -m pip install -c requirements.lock"
# Where the lock must hold a pin for every requirement that applies there (Python 3.11 on
# Linux x86-64 is where CI and the image run).
TARGETS = {
    "linux-x86_64-py3.11": ("linux", "x86_64", "Linux", "3.11"),
    "linux-x86_64-py3.12": ("linux", "x86_64", "Linux", "3.12"),
    "linux-aarch64-py3.11": ("linux", "aarch64", "Linux", "3.11"),
    "macos-arm64-py3.11": ("darwin", "arm64", "Darwin", "3.11"),
}


def readme_commands() -> list[str]:
    """The bash blocks the README opens with, before its first paragraph."""
    text = (ROOT / "README.md").read_text()
    head = text[: text.index("\n\n", text.index("```bash\n", text.index("```bash\n") + 1) + 8)]
    return re.findall(r"```bash\n(.*?)\n```", head, re.S)


def project_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = project["dependencies"] + [
        requirement for extra in project["optional-dependencies"].values() for requirement in extra
    ]
    return [Requirement(line) for line in listed]


def lock_pins() -> list[Requirement]:
    lines = LOCK.read_text().splitlines()
    return [Requirement(line) for line in lines if line[:1].isalnum()]  # not "#" nor "    # via"


def lock_parents() -> dict[str, set[str]]:
    """Each pinned package and the packages its `# via` comment names (the project itself as
    `glassbox`)."""
    parents: dict[str, set[str]] = {}
    pinned = ""
    for line in LOCK.read_text().splitlines():
        if line[:1].isalnum():
            pinned = canonicalize_name(Requirement(line).name)
            parents.setdefault(pinned, set())
        elif (via := line.strip().removeprefix("# via").strip().lstrip("#").strip()) and pinned:
            parents[pinned].add(canonicalize_name(via.split(" (")[0]))
    return parents


def environment(target: str) -> dict[str, str]:
    platform, machine, system, python = TARGETS[target]
    return default_environment() | {
        "sys_platform": platform,
        "platform_machine": machine,
        "platform_system": system,
        "python_version": python,
        "python_full_version": f"{python}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }


def applies(requirement: Requirement, env: dict[str, str]) -> bool:
    return requirement.marker is None or requirement.marker.evaluate(env)


def pinned_version(pin: Requirement) -> str:
    (specifier,) = pin.specifier
    assert specifier.operator == "==", pin
    return specifier.version


def test_readme_opens_with_the_serve_and_the_test_command():
    serve, test = readme_commands()
    assert serve == f"{INSTALL} -e . && {shlex.join(SERVE_COMMAND)}"
    assert test == f'{INSTALL} -e ".[test]" && python -m pytest'


def test_ci_runs_the_readme_test_command_in_a_new_virtual_environment():
    script = (ROOT / ".ci" / "run").read_text()
    _, test = readme_commands()
    lines = [line.strip() for line in script.splitlines()]
    assert lines[-1] == test
    venv = next(line for line in lines if " -m venv " in line)
    activate = next(line for line in lines if line.startswith(". ") and "activate" in line)
    assert lines.index(venv) < lines.index(activate) < len(lines) - 1


def test_the_image_installs_from_the_lock():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^COPY pyproject\.toml requirements\.lock \./$", dockerfile, re.M)
    assert "pip install --no-cache-dir -c requirements.lock" in dockerfile
    assert "!requirements.lock" in (ROOT / ".dockerignore").read_text().splitlines()


def test_the_readme_refreshes_the_lock_with_the_command_that_made_it():
    made_by = LOCK.read_text().splitlines()[1].removeprefix("#").strip()
    assert made_by.startswith("uv pip compile pyproject.toml ")
    assert made_by in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_requirement_has_one_pin_in_its_range(target):
    env = environment(target)
    pins = lock_pins()
    for requirement in project_requirements():
        if not applies(requirement, env):
            continue
        name = canonicalize_name(requirement.name)
        matching = [p for p in pins if canonicalize_name(p.name) == name and applies(p, env)]
        assert len(matching) == 1, f"{requirement}: {len(matching)} pins for {target}"
        version = pinned_version(matching[0])
        assert requirement.specifier.contains(version, prereleases=True), (
            f"pyproject.toml wants {requirement}, the lock pins {version}: refresh the lock"
        )


def test_this_environment_was_installed_from_the_lock():
    env = default_environment()
    installed = {
        canonicalize_name(dist.metadata["Name"]): dist.version for dist in metadata.distributions()
    }
    # The README's test command installs the `test` extra: the benchmark extra's own packages
    # (Granian, scikit-image) and what only they need are pinned in the lock too, but installed
    # only where a benchmark is run.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    bench_only = {
        canonicalize_name(Requirement(line).name)
        for line in project["optional-dependencies"]["bench"]
    } - set(installed)
    needed_by = lock_parents()
    while more := {
        name
        for name, parents in needed_by.items()
        if name not in bench_only and name not in installed and parents and parents <= bench_only
    }:
        bench_only |= more
    wrong = {
        pin.name: (pinned_version(pin), installed.get(canonicalize_name(pin.name)))
        for pin in lock_pins()
        if applies(pin, env)
        and canonicalize_name(pin.name) not in bench_only
        and installed.get(canonicalize_name(pin.name)) != pinned_version(pin)
    }
    assert not wrong, f"installed without the lock (pinned, installed): {wrong}"
