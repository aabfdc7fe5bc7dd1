"""Every file and every piece of code the README and docs/ name exists, so a move or a rename
cannot leave the docs pointing at nothing.

Paths: anything in a page (prose, backticks, code blocks) that starts with `app/`, `bench/`,
`training/`, `tests/` or `deploy/`, and every relative link, names a file or folder of the
checkout; `<name>` or `{name}` stand for any name; `path:123` names a line of the file,
`path:name` a name defined in it, and `path::test_name` a test in it.

Code names: a backticked span outside code blocks is one when it is a Python identifier or a
dotted one (a leading `@` and a trailing `()` aside) and has a dot, or ends in `()`, or is
CamelCase (a capital first, a lowercase letter and a second capital), or is snake_case (two
words or more, the last not a number: `grpc_serving`, not `dense_1`); unless it is a file name
(it ends in an extension such as `.py`) or a Kubernetes field path (`spec.`, `metadata.`).
Besides, every module run with `python -m` and every `module:attribute` import string of this
project's packages, in code blocks too. A code name resolves when it is

- defined in app/, bench/, training/ or tests/ (`ast`): a module by its dotted path or a tail of
  it (`traces.describe`), a class, function or module-level assignment, and a class's methods,
  class-level fields and `self.` attributes; a bare name may also be any name the code defines
  at any depth, calls (`is_server_live()`) or passes as a keyword (`compression_algorithm`);
- a name the project's code imports (`APIRoute`, `kserve.InferenceRESTClient`), or an
  attribute chain the code spells on a module it imports (`bentoml.service`), or reached by
  importing its module and looking up each attribute (`json.loads`, and `tf.saved_model.load`
  through the code's own `import tensorflow as tf`);
- a service, method, message, field, field path or package of the protobuf files the code
  imports (`inference.GRPCInferenceService`, `ModelInfer`, `model_spec.version`);
- a word of the files under deploy/ (a kind, an nginx directive), a key or key path of a
  committed model card (`training.replanned`), or a string the code spells
  (`http.response.start`, `serving_default`; or a dotted prefix of one; or a counter's
  `_total` sample);
- or in `OTHER_NAMES`, names from other languages and projects, each with why.

The module docstrings of app/, bench/, training/ and tests/ are held to the same (they say
what each module is for, as the docs do), and every docstring and comment to the paths.
Environment variables are tests/ops/test_configuration_docs.py's.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import io
import json
import re
import tokenize
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.ops.test_layers import module_name

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PACKAGES = ("app", "bench", "training", "tests")
PATH_ROOTS = (*PACKAGES, "deploy")

# Names the docs rightly use that no Python here defines, imports or spells.
OTHER_NAMES = {
    "HttpClient": "Java's java.net.http client (docs/operations.md, h2c upgrades)",
    "RestClient": "Spring's HTTP client (docs/operations.md, h2c upgrades)",
    "grpc_health_probe": "grpc-ecosystem's health-check command",
    "round_robin": "a gRPC client's load-balancing policy, set by the caller",
    "process_resident_memory_bytes": "prometheus_client's process collector's gauge",
    "max_latency_ms": "BentoML's batching option, which bench/peers leaves at its default",
}

FENCE = re.compile(r"^\s*(```|~~~)")
SPAN = re.compile(r"(`+)(.+?)\1")
IDENTIFIER = r"[A-Za-z_]\w*"
DOTTED = re.compile(rf"{IDENTIFIER}(?:\.{IDENTIFIER})*")
CODE_NAME = re.compile(rf"@?(?P<name>{IDENTIFIER}(?:\.{IDENTIFIER})*)(?P<call>\(\))?")
# `grpc_serving`, not `values_0` or `dense_1` (numbered tensors and layers)
SNAKE_CASE = re.compile(r"_?[a-z][a-z0-9]*(?:_[a-z][a-z0-9]*)+")
CAMEL_CASE = re.compile(r"[A-Z](?=\w*[a-z])(?=\w*[A-Z]\w*$)\w*")
FILE_EXTENSIONS = {
    "conf", "in", "json", "jsonl", "lock", "lua", "md", "png", "proto", "py", "sh", "toml",
    "yaml", "yml",
}  # fmt: skip
K8S_FIELD_PATH = re.compile(r"(spec|metadata)\.")
PATH = re.compile(rf"(?<![\w./<>{{}}-])(?:{'|'.join(PATH_ROOTS)})/[^\s`'\"()\[\]|,;]*")
PLACEHOLDER = re.compile(r"<[^>/]*>|\{[^}/]*\}")
LINK = re.compile(r"\]\(([^)\s]+)\)")
RUN_MODULE = re.compile(r"python3? -m ([\w.]+)")
IMPORT_STRING = re.compile(rf"(?<![\w./])((?:{'|'.join(PACKAGES)})(?:\.\w+)*):({IDENTIFIER})\b")


@dataclass(frozen=True)
class Page:
    """Text that names files and code, and where it is: a doc, a docstring or a comment."""

    path: Path
    text: str
    first_line: int = 1

    @classmethod
    def of(cls, path: Path) -> Page:
        return cls(path, path.read_text())


@dataclass(frozen=True)
class Mention:
    """A name as a page writes it, and where."""

    page: Page
    line: int
    text: str

    def problem(self, why: str) -> str:
        path = self.page.path
        where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        return f"{where}:{self.line}: `{self.text}` {why}"


PAGES = [Page.of(path) for path in DOCS]


def python_sources(root: Path) -> Iterator[tuple[Path, str, ast.Module]]:
    for package in PACKAGES:
        for source in sorted((root / package).rglob("*.py")):
            if "fixtures" not in source.parts:  # data, not the project's code
                text = source.read_text()
                yield source, text, ast.parse(text, str(source))


def module_docstrings(root: Path = ROOT) -> list[Page]:
    """What each module is for, in the docs' words: naming files and code as the docs do."""
    return [
        Page(source, docstring, tree.body[0].lineno)
        for source, _, tree in python_sources(root)
        if (docstring := ast.get_docstring(tree, clean=False))
    ]


def docstrings_and_comments(root: Path = ROOT) -> list[Page]:
    """Every docstring and comment of the project's Python, where a path can go stale too."""
    pages = []
    for source, text, tree in python_sources(root):
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                docstring = ast.get_docstring(node, clean=False)
                if docstring:
                    pages.append(Page(source, docstring, node.body[0].lineno))
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.COMMENT:
                pages.append(Page(source, token.string, token.start[0]))
    return pages


def numbered_lines(page: Page, *, prose_only: bool) -> Iterator[tuple[int, str]]:
    fenced = False
    for number, line in enumerate(page.text.splitlines(), page.first_line):
        if FENCE.match(line):
            fenced = not fenced
        elif not (prose_only and fenced):
            yield number, line


# -- paths --------------------------------------------------------------------------------------


def path_mentions(page: Page) -> Iterator[Mention]:
    for number, line in numbered_lines(page, prose_only=False):
        for match in PATH.finditer(line):
            yield Mention(page, number, match.group().rstrip(".:"))


def link_mentions(page: Page) -> Iterator[Mention]:
    for number, line in numbered_lines(page, prose_only=True):
        for target in LINK.findall(line):
            if "://" not in target and not target.startswith(("#", "mailto:")):
                yield Mention(page, number, target)


def defined_at_top(source: Path) -> set[str]:
    tree = ast.parse(source.read_text(), str(source))
    return {name for node in tree.body for name in bound_names(node)}


def defined_tests(source: Path) -> set[str]:
    """`test_x` and `Class::test_x` for each test of a pytest file."""
    tree = ast.parse(source.read_text(), str(source))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names |= {
                f"{node.name}::{method.name}"
                for method in node.body
                if isinstance(method, ast.FunctionDef | ast.AsyncFunctionDef)
            }
    return names


def path_problem(text: str, base: Path) -> str | None:
    """Why `text`, a path relative to `base`, names nothing; None if it names something."""
    text, _, test = text.partition("::")
    text, _, suffix = text.partition(":")
    pattern = PLACEHOLDER.sub("*", text.split("#")[0].rstrip("/"))
    if "*" in pattern:
        found = sorted(base.glob(pattern))
        return None if found else "matches no file"
    path = (base / pattern).resolve()
    if not path.exists():
        return "does not exist"
    if test:
        return None if test.split("[")[0] in defined_tests(path) else f"has no test {test}"
    if suffix.isdigit():
        lines = len(path.read_text().splitlines())
        return None if int(suffix) <= lines else f"has {lines} lines"
    if suffix:
        return None if suffix in defined_at_top(path) else f"defines no {suffix}"
    return None


def run_outputs(root: Path) -> list[str]:
    """The folders .gitignore names outright: what a run makes (tests/artifacts/, /runs/)."""
    lines = (root / ".gitignore").read_text().splitlines()
    return [line.strip("/") for line in lines if line.endswith("/") and "*" not in line]


def missing_paths(pages: Iterable[Page], root: Path = ROOT) -> list[str]:
    problems = []
    outputs = run_outputs(root)
    for page in pages:
        for mention in path_mentions(page):
            path = mention.text.rstrip("/")
            made_by_a_run = any(path == out or path.startswith(out + "/") for out in outputs)
            why = None if made_by_a_run else path_problem(mention.text, root)
            if why:
                problems.append(mention.problem(why))
        for mention in link_mentions(page):
            why = path_problem(mention.text, page.path.parent)
            if why:
                problems.append(mention.problem(why))
    return problems


# -- code names ---------------------------------------------------------------------------------


def bound_names(node: ast.stmt) -> list[str]:
    """The names a module- or class-level statement defines."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [
            name.id
            for target in node.targets
            for name in ast.walk(target)
            if isinstance(name, ast.Name)
        ]
    if isinstance(node, ast.AnnAssign | ast.AugAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    if isinstance(node, ast.If | ast.Try):
        branches = [*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", [])]
        return [name for child in branches for name in bound_names(child)]
    return []


def class_members(node: ast.ClassDef) -> set[str]:
    members = {name for child in node.body for name in bound_names(child)}
    for child in ast.walk(node):
        if (
            isinstance(child, ast.Attribute)
            and isinstance(child.ctx, ast.Store)
            and isinstance(child.value, ast.Name)
            and child.value.id == "self"
        ):
            members.add(child.attr)
    return members


@dataclass
class Module:
    """What one module of the project defines."""

    top: set[str] = field(default_factory=set)
    classes: dict[str, set[str]] = field(default_factory=dict)


class ProjectNames:
    """The names the project's code defines, imports, calls and spells, read with `ast`."""

    def __init__(self, root: Path = ROOT) -> None:
        self.root = root
        self.modules: dict[str, Module] = {}
        # Every name the code defines, calls or passes as a keyword, at any depth
        self.words: set[str] = set()
        self.imported: dict[str, str] = {}  # the name an import binds -> what it names
        self.imported_modules: set[str] = set()
        self.spelled_names: set[str] = set()  # dotted strings, attributes of imported modules
        for source, _, tree in python_sources(root):
            if (
                source != Path(__file__).resolve()
            ):  # this checker's strings are the names it tests with
                self.read(module_name(source), tree)

    def read(self, name: str, tree: ast.Module) -> None:
        module = self.modules.setdefault(name, Module())
        for node in tree.body:
            module.top.update(bound_names(node))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                members = class_members(node)
                module.classes.setdefault(node.name, set()).update(members)
                self.words |= members | {node.name}
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self.words.add(node.name)
            elif isinstance(node, ast.Call):
                if isinstance(node.func, ast.Attribute):
                    self.words.add(node.func.attr)
                elif isinstance(node.func, ast.Name):
                    self.words.add(node.func.id)
                self.words |= {keyword.arg for keyword in node.keywords if keyword.arg}
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    self.imported[alias.asname or alias.name.split(".")[0]] = (
                        alias.name if alias.asname else alias.name.split(".")[0]
                    )
                    self.imported_modules.add(alias.name)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                self.imported_modules.add(node.module)
                for alias in node.names:
                    self.imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and DOTTED.fullmatch(node.value)  # names, not prose: no docstring
            ):
                self.spelled_names.add(node.value)
        # `bentoml.service`: an attribute of a module the file imports, as the file spells it
        modules = {
            alias.asname or alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                chain = attribute_chain(node)
                if chain and chain.split(".")[0] in modules:
                    self.spelled_names.add(chain)

    # -- the resolvers, in the order `resolves` tries them

    def defined(self, parts: list[str]) -> bool:
        if len(parts) == 1 and parts[0] in self.words:
            return True
        for split in range(len(parts) + 1):
            head, rest = ".".join(parts[:split]), parts[split:]
            for path, module in self.modules.items():
                if split and path != head and not path.endswith("." + head):
                    continue
                if not rest:
                    return True
                if rest[0] in module.classes and (
                    len(rest) == 1 or (len(rest) == 2 and rest[1] in module.classes[rest[0]])
                ):
                    return True
                if len(rest) == 1 and rest[0] in module.top:
                    return True
        return False

    def imported_by_name(self, parts: list[str]) -> bool:
        """`APIRoute`, or `kserve.InferenceRESTClient` as the code imports it."""
        name = ".".join(parts)
        return name in self.imported or name in self.imported.values()

    def reached_by_import(self, parts: list[str]) -> bool:
        """`tf.saved_model.load` (through the code's `import tensorflow as tf`), `json.loads`,
        `LeanRoute.get_route_handler` (a member the class inherits)."""
        head = self.imported.get(parts[0], parts[0]).split(".")
        return attribute_path(head + parts[1:]) is not None

    @cached_property
    def protobuf_names(self) -> set[str]:
        """Full and short names of the services, methods, messages and packages of the protobuf
        files the code imports, and each message's field paths (`model_spec.version`)."""
        # tritonclient's files first: kserve's SDK defines the same `inference.*` messages, and
        # only the first to load them can (tests/clients/test_kserve_sdk.py runs it apart).
        importlib.import_module("app.grpc.server")
        modules = {
            name.removesuffix("_grpc")
            for name in self.imported_modules | set(self.imported.values())
            if name.endswith(("_pb2", "_pb2_grpc"))
        }
        names: set[str] = set()
        for module in sorted(modules):
            try:
                descriptor = importlib.import_module(module).DESCRIPTOR
            except Exception:  # kserve's, whose messages tritonclient's defined first
                continue
            package = descriptor.package.split(".")
            names |= {".".join(package[:end]) for end in range(1, len(package) + 1)}
            for service in descriptor.services_by_name.values():
                names |= {service.full_name, service.name}
                names |= {method.name for method in service.methods}
            for message in descriptor.message_types_by_name.values():
                names |= message_names(message)
        return names

    @cached_property
    def data_names(self) -> set[str]:
        """The words of the files under deploy/ (kinds, nginx directives), and the keys and key
        paths of the committed cards."""
        deploy = [path for path in (self.root / "deploy").rglob("*") if path.is_file()]
        words = {word for path in deploy for word in re.findall(r"\w+", path.read_text())}
        cards = sorted((self.root / "models").glob("*/*/metadata.json"))
        keys = {key for card in cards for key in key_paths(json.loads(card.read_text()))}
        return words | keys | {key.rsplit(".", 1)[-1] for key in keys}

    def spelled(self, name: str) -> bool:
        """As a string or a prefix of one, or as a Prometheus counter's sample (`_total`)."""
        counter = name.removesuffix("_total")
        return any(
            text in (name, counter) or text.startswith(name + ".") for text in self.spelled_names
        )

    def resolves(self, name: str) -> bool:
        return name in OTHER_NAMES or self.found(name)

    def found(self, name: str) -> bool:
        parts = name.split(".")
        return (
            self.defined(parts)
            or self.imported_by_name(parts)
            or name in self.protobuf_names
            or name in self.data_names
            or self.spelled(name)
            or self.reached_by_import(parts)
        )


def attribute_chain(node: ast.expr) -> str | None:
    """`a.b.c` for an attribute of a name; None for one of a call, a subscript..."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = attribute_chain(node.value)
        return f"{head}.{node.attr}" if head else None
    return None


def message_names(message: Any) -> set[str]:
    """A message's short and full names, its nested messages' and its field paths."""
    names = {message.name, message.full_name} | field_paths(message)
    for nested in message.nested_types:
        names |= message_names(nested)
    return names


def field_paths(message: Any, prefix: str = "", depth: int = 3) -> set[str]:
    """`model_spec.version`: a message's fields, and their fields, `depth` deep."""
    paths = set()
    for each in message.fields:
        paths.add(prefix + each.name)
        if each.message_type is not None and depth > 1:
            paths |= field_paths(each.message_type, f"{prefix}{each.name}.", depth - 1)
    return paths


def key_paths(value: object, prefix: str = "") -> set[str]:
    if not isinstance(value, dict):
        return set()
    paths = set()
    for key, child in value.items():
        paths.add(prefix + key)
        paths |= key_paths(child, prefix + key + ".")
    return paths


def attribute_path(parts: list[str]) -> object | None:
    """The object `a.b.c` names, importing the longest module prefix; None if nothing."""
    for split in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:split]))
        except Exception:  # not a module, or one that cannot import here: the next prefix
            continue
        for attribute in parts[split:]:
            if isinstance(target, ModuleType) and not hasattr(target, attribute):
                try:
                    target = importlib.import_module(f"{target.__name__}.{attribute}")
                    continue
                except Exception:
                    return None
            if not hasattr(target, attribute):
                return None
            target = getattr(target, attribute)
        return target
    return None


def code_mentions(page: Page) -> Iterator[tuple[Mention, str]]:
    """(mention, name) for each code name of the page."""
    for number, line in numbered_lines(page, prose_only=True):
        for span in SPAN.finditer(line):
            text = span.group(2).strip()
            match = CODE_NAME.fullmatch(text)
            if match is None:
                continue
            name, dotted = match["name"], "." in match["name"]
            if dotted and (name.rsplit(".", 1)[1] in FILE_EXTENSIONS or K8S_FIELD_PATH.match(name)):
                continue
            if match["call"] or dotted or CAMEL_CASE.fullmatch(name) or SNAKE_CASE.fullmatch(name):
                yield Mention(page, number, text), name


def module_mentions(page: Page) -> Iterator[tuple[Mention, str]]:
    """A module run with `python -m`, and `module:attribute`, with the name each must resolve as."""
    for number, line in numbered_lines(page, prose_only=False):
        for module in RUN_MODULE.findall(line):
            yield Mention(page, number, f"python -m {module}"), module
        for module, attribute in IMPORT_STRING.findall(line):
            yield Mention(page, number, f"{module}:{attribute}"), f"{module}.{attribute}"


def runnable(module: str, root: Path) -> bool:
    path = root.joinpath(*module.split("."))
    return (
        path.with_suffix(".py").is_file()
        or (path / "__main__.py").is_file()
        or (module.split(".")[0] not in PACKAGES and importlib.util.find_spec(module) is not None)
    )


def missing_code_names(pages: Iterable[Page], names: ProjectNames) -> list[str]:
    problems = []
    for page in pages:
        for mention, name in code_mentions(page):
            if not names.resolves(name):
                problems.append(mention.problem("names no code of this project or its packages"))
        for mention, name in module_mentions(page):
            if mention.text.startswith("python -m "):
                if not runnable(name, names.root):
                    problems.append(mention.problem("is no module python -m can run"))
            elif not names.defined(name.split(".")):
                problems.append(mention.problem("is defined nowhere"))
    return problems


@pytest.fixture(scope="module")
def project_names() -> ProjectNames:
    return ProjectNames()


def test_every_path_the_docs_name_exists():
    assert missing_paths(PAGES) == []


def test_every_code_name_the_docs_use_exists(project_names):
    assert missing_code_names(PAGES, project_names) == []


def test_every_code_name_a_module_docstring_uses_exists(project_names):
    assert missing_code_names(module_docstrings(), project_names) == []


def test_every_path_a_docstring_or_comment_names_exists():
    assert missing_paths(docstrings_and_comments()) == []


def test_no_other_name_resolves_in_the_code(project_names):
    """Each entry of OTHER_NAMES is still needed: one the code came to define, import or spell
    leaves the list."""
    assert [name for name in OTHER_NAMES if project_names.found(name)] == []


# -- the checker itself, on small pages ---------------------------------------------------------

PAGE = """\
# A page

`app/main.py`, `app/core/`, app/serve.py in prose, [a link](../README.md),
`bench/peers/<peer>.lock`,
`tests/ops/test_docs_names.py::test_every_path_the_docs_name_exists`, `app/http/app.py:create_app`.

```bash
python -m bench.compare --help
uvicorn app.main:app
```

`Predictor.predict`, `traces.describe`, `create_app()`, `APIRoute`, `logging.LogRecord`,
`tf.saved_model.load`, `json.loads`, `inference.GRPCInferenceService`, `ModelInfer`,
`model_spec.version`, `training.replanned`, `http.response.start`, `InferenceService`,
`serving_default`, `trace_max_values`, `grpc_pass`, `glassbox_shadow_compared_rows_total`,
`GLASSBOX_MODELS`, `metadata.json`, `spec.predictor.model`, `Gateway`.
"""

MADE_UP = """\
`app/nowhere.py` and tests/ops/test_docs_names.py::test_nothing and `app/main.py:9999`.
[gone](missing.md), `app/http/app.py:no_such_factory`, `bench/results/<no>-such`.

```bash
python -m bench.no_such_module
uvicorn app.main:no_such_app
```

`CallGuard.rpc`, `grpc_companion()`, `InferenceService.no_such_method`, `NoSuchClass`,
`app.no_such_module`, `json.no_such_function`, `model_spec.no_such_field`, `grpc_companion`.
"""


def test_the_checker_passes_real_names(tmp_path, project_names):
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "page.md"
    page.write_text(PAGE.replace("../README.md", str(ROOT / "README.md")))
    assert missing_paths([Page.of(page)]) == []
    assert missing_code_names([Page.of(page)], project_names) == []


def test_the_checker_names_the_page_the_line_and_each_made_up_name(tmp_path, project_names):
    page = tmp_path / "page.md"
    page.write_text(MADE_UP)
    lines = len((ROOT / "app" / "main.py").read_text().splitlines())
    assert missing_paths([Page.of(page)]) == [
        f"{page}:1: `app/nowhere.py` does not exist",
        f"{page}:1: `tests/ops/test_docs_names.py::test_nothing` has no test test_nothing",
        f"{page}:1: `app/main.py:9999` has {lines} lines",
        f"{page}:2: `app/http/app.py:no_such_factory` defines no no_such_factory",
        f"{page}:2: `bench/results/<no>-such` matches no file",
        f"{page}:2: `missing.md` does not exist",
    ]
    why = "names no code of this project or its packages"
    assert missing_code_names([Page.of(page)], project_names) == [
        *(
            f"{page}:9: `{name}` {why}"
            for name in (
                "CallGuard.rpc",
                "grpc_companion()",
                "InferenceService.no_such_method",
                "NoSuchClass",
            )
        ),
        *(
            f"{page}:10: `{name}` {why}"
            for name in (
                "app.no_such_module",
                "json.no_such_function",
                "model_spec.no_such_field",
                "grpc_companion",
            )
        ),
        f"{page}:5: `python -m bench.no_such_module` is no module python -m can run",
        f"{page}:6: `app.main:no_such_app` is defined nowhere",
    ]


def test_a_made_up_name_in_a_copy_of_the_docs_fails(tmp_path, project_names):
    copy = tmp_path / "architecture.md"
    text = (ROOT / "docs" / "architecture.md").read_text()
    copy.write_text(text.replace("`ModelRoutes`", "`ModelRouter`", 1))
    line = text[: text.index("`ModelRoutes`")].count("\n") + 1
    assert missing_code_names([Page.of(copy)], project_names) == [
        f"{copy}:{line}: `ModelRouter` names no code of this project or its packages"
    ]
