"""Every file and every piece of code the README and docs/ name exists, so a move or a rename
cannot leave the docs pointing at nothing.

Paths: anything in a page (prose, backticks, code blocks) that starts with `app/`, `bench/`,
`training/`, `tests/` or `deploy/`, and every relative link, names a file or folder of the
checkout; `<name>` or `{name}` stand for any name; `path:123` names a line of the file,
`path:name` a name defined in it, and `path::test_name` a test in it.

Code names: a backticked span outside code blocks is one when it is a dotted Python identifier
(a leading `@` and a trailing `()` aside) and has a dot, or ends in `()`, or is CamelCase (a
capital first, a lowercase letter and a second capital), unless it is a file name (it ends in an
extension such as `.py`) or a Kubernetes field path (`spec.`, `metadata.`). Besides, every
`python -m module` and every `module:attribute` import string of this project's packages, in
code blocks too. A code name resolves when it is

- defined in app/, bench/, training/ or tests/ (`ast`): a module by its dotted path or a tail of
  it (`traces.describe`), a class, function or module-level assignment, and a class's methods,
  class-level fields and `self.` attributes; a bare `name()` may also be a method the code calls;
- a name the project's code imports (`APIRoute`, `kserve.InferenceRESTClient`), or an
  attribute chain the code spells on a module it imports (`bentoml.service`), or reached by
  importing its module and looking up each attribute (`json.loads`, and `tf.saved_model.load`
  through the code's own `import tensorflow as tf`);
- a service, method, message, field path or package of the protobuf files the code imports
  (`inference.GRPCInferenceService`, `ModelInfer`, `model_spec.version`);
- a Kubernetes kind of the manifests under deploy/, or a key path of a committed model card
  (`training.replanned`), or a string the code spells (`http.response.start`, or a dotted
  prefix of one);
- or in `OTHER_NAMES`, names from other languages and projects, each with why.

Environment variables are tests/ops/test_configuration_docs.py's.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.ops.manifests import documents
from tests.ops.test_layers import module_name

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PACKAGES = ("app", "bench", "training", "tests")
PATH_ROOTS = (*PACKAGES, "deploy")

# Names the docs rightly use that no Python here defines, imports or spells.
OTHER_NAMES = {
    "HttpClient": "Java's java.net.http client (docs/operations.md, h2c upgrades)",
    "RestClient": "Spring's HTTP client (docs/operations.md, h2c upgrades)",
    "ClusterServingRuntime": "KServe's cluster-wide kind, the one deploy/kserve does not use",
}

FENCE = re.compile(r"^\s*(```|~~~)")
SPAN = re.compile(r"(`+)(.+?)\1")
IDENTIFIER = r"[A-Za-z_]\w*"
DOTTED = re.compile(rf"{IDENTIFIER}(?:\.{IDENTIFIER})*")
CODE_NAME = re.compile(rf"@?(?P<name>{IDENTIFIER}(?:\.{IDENTIFIER})*)(?P<call>\(\))?")
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
class Mention:
    """A name as a page writes it, and where."""

    page: Path
    line: int
    text: str

    def problem(self, why: str) -> str:
        where = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{where}:{self.line}: `{self.text}` {why}"


def numbered_lines(page: Path, *, prose_only: bool) -> Iterator[tuple[int, str]]:
    fenced = False
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not (prose_only and fenced):
            yield number, line


# -- paths --------------------------------------------------------------------------------------


def path_mentions(page: Path) -> Iterator[Mention]:
    for number, line in numbered_lines(page, prose_only=False):
        for match in PATH.finditer(line):
            yield Mention(page, number, match.group().rstrip(".:"))


def link_mentions(page: Path) -> Iterator[Mention]:
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


def missing_paths(pages: Iterable[Path], root: Path = ROOT) -> list[str]:
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
            why = path_problem(mention.text, page.parent)
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
        self.functions: set[str] = set()  # every function and method, by name
        self.called: set[str] = set()  # every `x.name(...)` and `name(...)`, by name
        self.imported: dict[str, str] = {}  # the name an import binds -> what it names
        self.imported_modules: set[str] = set()
        self.spelled_names: set[str] = set()  # dotted strings, attributes of imported modules
        for package in PACKAGES:
            for source in sorted((root / package).rglob("*.py")):
                # The fixtures are data; this checker's strings are the names it tests with.
                if "fixtures" not in source.parts and source.name != Path(__file__).name:
                    self.read(module_name(source), ast.parse(source.read_text(), str(source)))

    def read(self, name: str, tree: ast.Module) -> None:
        module = self.modules.setdefault(name, Module())
        for node in tree.body:
            module.top.update(bound_names(node))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                module.classes.setdefault(node.name, set()).update(class_members(node))
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self.functions.add(node.name)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                self.called.add(node.func.attr)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                self.called.add(node.func.id)
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

    def defined(self, parts: list[str], call: bool) -> bool:
        if len(parts) == 1 and parts[0] in self.functions | (self.called if call else set()):
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
        """The kinds of the manifests under deploy/ and the key paths of the committed cards."""
        kinds = {
            doc["kind"]
            for path in sorted((self.root / "deploy").rglob("*.yaml"))
            for doc in documents(path)
        }
        cards = sorted((self.root / "models").glob("*/*/metadata.json"))
        return kinds | {key for card in cards for key in key_paths(json.loads(card.read_text()))}

    def spelled(self, name: str) -> bool:
        return any(text == name or text.startswith(name + ".") for text in self.spelled_names)

    def resolves(self, name: str, call: bool = False) -> bool:
        return name in OTHER_NAMES or self.found(name, call)

    def found(self, name: str, call: bool = False) -> bool:
        parts = name.split(".")
        return (
            self.defined(parts, call)
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


def code_mentions(page: Path) -> Iterator[tuple[Mention, str, bool]]:
    """(mention, name, whether written as a call) for each code name of the page."""
    for number, line in numbered_lines(page, prose_only=True):
        for span in SPAN.finditer(line):
            text = span.group(2).strip()
            match = CODE_NAME.fullmatch(text)
            if match is None:
                continue
            name, call = match["name"], bool(match["call"])
            dotted = "." in name
            if dotted and (name.rsplit(".", 1)[1] in FILE_EXTENSIONS or K8S_FIELD_PATH.match(name)):
                continue
            if call or dotted or CAMEL_CASE.fullmatch(name):
                yield Mention(page, number, text), name, call


def module_mentions(page: Path) -> Iterator[tuple[Mention, str]]:
    """`python -m module` and `module:attribute`, with the name each must resolve as."""
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


def missing_code_names(pages: Iterable[Path], names: ProjectNames) -> list[str]:
    problems = []
    for page in pages:
        for mention, name, call in code_mentions(page):
            if not names.resolves(name, call):
                problems.append(mention.problem("names no code of this project or its packages"))
        for mention, name in module_mentions(page):
            if mention.text.startswith("python -m "):
                if not runnable(name, names.root):
                    problems.append(mention.problem("is no module python -m can run"))
            elif not names.defined(name.split("."), call=False):
                problems.append(mention.problem("is defined nowhere"))
    return problems


@pytest.fixture(scope="module")
def project_names() -> ProjectNames:
    return ProjectNames()


def test_every_path_the_docs_name_exists():
    assert missing_paths(PAGES) == []


def test_every_code_name_the_docs_use_exists(project_names):
    assert missing_code_names(PAGES, project_names) == []


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

`InferenceService.predict`, `traces.describe`, `create_app()`, `APIRoute`, `logging.LogRecord`,
`tf.saved_model.load`, `json.loads`, `inference.GRPCInferenceService`, `ModelInfer`,
`model_spec.version`, `training.replanned`, `http.response.start`, `InferenceService`,
`GLASSBOX_MODELS`, `serving_default`, `metadata.json`, `spec.predictor.model`, `Gateway`.
"""

MADE_UP = """\
`app/nowhere.py` and tests/ops/test_docs_names.py::test_nothing and `app/main.py:9999`.
[gone](missing.md), `app/http/app.py:no_such_factory`, `bench/results/<no>-such`.

```bash
python -m bench.no_such_module
uvicorn app.main:no_such_app
```

`CallGuard.rpc`, `grpc_companion()`, `InferenceService.no_such_method`, `NoSuchClass`,
`app.no_such_module`, `json.no_such_function`, `model_spec.no_such_field`.
"""


def test_the_checker_passes_real_names(tmp_path, project_names):
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "page.md"
    page.write_text(PAGE.replace("../README.md", str(ROOT / "README.md")))
    assert missing_paths([page]) == []
    assert missing_code_names([page], project_names) == []


def test_the_checker_names_the_page_the_line_and_each_made_up_name(tmp_path, project_names):
    page = tmp_path / "page.md"
    page.write_text(MADE_UP)
    lines = len((ROOT / "app" / "main.py").read_text().splitlines())
    assert missing_paths([page]) == [
        f"{page}:1: `app/nowhere.py` does not exist",
        f"{page}:1: `tests/ops/test_docs_names.py::test_nothing` has no test test_nothing",
        f"{page}:1: `app/main.py:9999` has {lines} lines",
        f"{page}:2: `app/http/app.py:no_such_factory` defines no no_such_factory",
        f"{page}:2: `bench/results/<no>-such` matches no file",
        f"{page}:2: `missing.md` does not exist",
    ]
    why = "names no code of this project or its packages"
    assert missing_code_names([page], project_names) == [
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
            for name in ("app.no_such_module", "json.no_such_function", "model_spec.no_such_field")
        ),
        f"{page}:5: `python -m bench.no_such_module` is no module python -m can run",
        f"{page}:6: `app.main:no_such_app` is defined nowhere",
    ]


def test_a_made_up_name_in_a_copy_of_the_docs_fails(tmp_path, project_names):
    copy = tmp_path / "architecture.md"
    text = (ROOT / "docs" / "architecture.md").read_text()
    copy.write_text(text.replace("`ModelRoutes`", "`ModelRouter`", 1))
    line = text[: text.index("`ModelRoutes`")].count("\n") + 1
    assert missing_code_names([copy], project_names) == [
        f"{copy}:{line}: `ModelRouter` names no code of this project or its packages"
    ]
