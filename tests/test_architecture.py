"""The import rules behind the README's code map, checked on the source of rfai/ and scorers/.

Every module of ``rfai/`` and ``scorers/`` is parsed with `ast` (nothing is imported), and
every import statement counts, at module level, inside functions and under
``if TYPE_CHECKING:`` alike. An import is a dependency on the most specific module it names
(``from rfai.teachers.base import X`` depends on ``rfai.teachers.base``, not on the package
``rfai/teachers/__init__.py`` that Python also runs). The rules:

1. ``scorers`` never imports ``rfai``, except ``scorers/__main__.py`` (the ``python -m scorers``
   entry point), which no module imports.
2. ``rfai/advantages.py`` and ``rfai/loss.py`` import only ``mlx.core`` and a few pure stdlib
   modules (no I/O).
3. No import cycles between modules of ``rfai/`` and ``scorers/``; a cycle is reported with its
   path. No module imports the ``__init__`` of its own package (it only re-exports).
4. Only the modules in `NETWORK_ALLOWED` import a network client.
5. Only the modules in `PROCESS_ALLOWED` start a process (``subprocess``, ``os.exec*``,
   ``os.fork``, ...): a call, not a mere ``import subprocess`` for a type.

Not covered: dynamic imports (``importlib``, ``__import__``), and libraries that reach the
network or start processes on their own (``mlx_lm.load`` downloads a model given a Hub id, in
``rfai/student.py`` and ``rfai/teachers/mlx_local.py``).
"""

from __future__ import annotations

import ast
import itertools
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import REPO

PACKAGES = ("rfai", "scorers")

# Rule 1: the one module of scorers that may import rfai (nothing may import it).
SCORERS_ENTRY_POINT = "scorers.__main__"

# Rule 2: what the pure math modules may import.
PURE_MODULES = ("rfai.advantages", "rfai.loss")
PURE_IMPORTS = frozenset(
    {"__future__", "typing", "collections.abc", "dataclasses", "math", "functools", "mlx.core"}
)

# Rule 4: network clients (a module or any submodule of it).
NETWORK_CLIENTS = (
    "socket",
    "ssl",
    "socketserver",
    "http.client",
    "http.server",
    "urllib.request",
    "urllib3",
    "ftplib",
    "smtplib",
    "xmlrpc",
    "requests",
    "httpx",
    "httpx2",
    "aiohttp",
    "huggingface_hub",
    "datasets",
)
NETWORK_ALLOWED = {
    "rfai.hub": "uploads datasets and models to the Hugging Face Hub (huggingface_hub, httpx2)",
    "rfai.teachers.http": "the teachers' one door to the network: a JSON POST over urllib",
    "rfai.task_sources": "reads hf:ID task sources with `datasets` (fetched from the Hub)",
}

# Rule 5: calls that start a process (resolved through `import x as y` / `from x import y`).
PROCESS_STARTERS = (
    "subprocess.Popen",
    "subprocess.run",
    "subprocess.call",
    "subprocess.check_call",
    "subprocess.check_output",
    "subprocess.getoutput",
    "subprocess.getstatusoutput",
    "os.system",
    "os.popen",
    "os.fork",
    "os.forkpty",
    "os.posix_spawn",
    "os.posix_spawnp",
    "os.exec",  # prefix: execv, execve, execlp, ...
    "os.spawn",  # prefix: spawnv, spawnlp, ...
    "pty.fork",
    "pty.spawn",
    "asyncio.create_subprocess_exec",
    "asyncio.create_subprocess_shell",
    "multiprocessing.Process",
    "multiprocessing.Pool",
    "concurrent.futures.ProcessPoolExecutor",
    "_posixsubprocess.fork_exec",
)
PROCESS_ALLOWED = {
    "scorers.sandbox": "starts every sandboxed program (generated code and compilers)",
    "scorers.isolation": "probes `unshare` and `ulimit -u` once to choose the isolation",
    "scorers.isolation_holder": "starts the namespace holder process the sandbox joins",
    "scorers.isolation_macos": "probes which sandbox-exec profile this macOS accepts",
    "scorers.sandbox_init": "compiles rfai-init, our own C source (no model output), once",
    "scorers.languages": "asks `rustc --print sysroot` (no model output); compiles go "
    "through the sandbox",
    "scorers.quality": "runs ruff on model code: ruff parses it and never executes it",
    "rfai.hub": "runs `python -m mlx_lm fuse` in a child so the fused model's memory is freed",
}


@dataclass
class Module:
    name: str
    path: Path  # relative to the root, for messages
    is_package: bool
    imports: list[tuple[str, int]] = field(default_factory=list)  # (dotted name, line)
    process_calls: list[tuple[str, int]] = field(default_factory=list)


def collect_modules(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, Module]:
    """Every module under ``root/<package>``, with its imports and process-starting calls."""
    modules: dict[str, Module] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root)
            parts = list(rel.with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            modules[".".join(parts)] = Module(".".join(parts), rel, is_package)
    for module in modules.values():
        source = (root / module.path).read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(module.path))
        aliases = _read_imports(module, tree, modules)
        module.process_calls = _process_calls(tree, aliases)
    return modules


def _read_imports(module: Module, tree: ast.AST, known: dict[str, Module]) -> dict[str, str]:
    """Fill ``module.imports``; return local name -> the dotted name it is bound to.

    ``import a.b`` records ``a.b``. ``from m import n`` records ``m.n`` when that is a module
    of the tree or ``m`` is outside it (we cannot tell a submodule from a name there, and the
    rules match by prefix: ``from urllib import request`` is ``urllib.request``), else ``m``.
    """
    ours = {name.split(".")[0] for name in known}
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                module.imports.append((alias.name, node.lineno))
                top = alias.name.split(".")[0]
                aliases[alias.asname or top] = alias.name if alias.asname else top
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, node.module, node.level)
            for alias in node.names:
                dotted = f"{base}.{alias.name}"
                internal = base.split(".")[0] in ours
                target = base if internal and dotted not in known else dotted
                module.imports.append((target, node.lineno))
                aliases[alias.asname or alias.name] = dotted
    return aliases


def _absolute(module: Module, name: str | None, level: int) -> str:
    if level == 0:
        return name or ""
    package = module.name.split(".")
    if not module.is_package:
        package.pop()
    if level > 1:
        package = package[: len(package) - (level - 1)]
    return ".".join([*package, name] if name else package)


def _process_calls(tree: ast.AST, aliases: dict[str, str]) -> list[tuple[str, int]]:
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            dotted = _dotted(node.func, aliases)
            if dotted and any(dotted.startswith(p) for p in PROCESS_STARTERS):
                calls.append((dotted, node.lineno))
    return calls


def _dotted(node: ast.expr, aliases: dict[str, str]) -> str | None:
    """``sp.run`` -> ``subprocess.run`` where ``sp`` is bound by an import; else None."""
    attrs = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in aliases:
        return None
    return ".".join([aliases[node.id], *reversed(attrs)])


def _names(module: Module, prefixes: tuple[str, ...] | frozenset[str]) -> list[tuple[str, int]]:
    return [(name, line) for name, line in module.imports if _matches(name, prefixes)]


def _where(module: Module, line: int) -> str:
    return f"{module.path.as_posix()}:{line}"


def _matches(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def scorers_independence_problems(modules: dict[str, Module]) -> list[str]:
    problems = []
    for module in modules.values():
        if module.name.startswith("scorers") and module.name != SCORERS_ENTRY_POINT:
            for name, line in _names(module, ("rfai",)):
                problems.append(f"{_where(module, line)}: scorers module imports {name}")
        for name, line in module.imports:
            if name == SCORERS_ENTRY_POINT:
                problems.append(f"{_where(module, line)}: imports the entry point {name}")
    return problems


def pure_math_problems(modules: dict[str, Module]) -> list[str]:
    return [
        f"{_where(modules[name], line)}: {name} imports {imported}; the math modules import "
        f"only {', '.join(sorted(PURE_IMPORTS))}"
        for name in PURE_MODULES
        if name in modules
        for imported, line in modules[name].imports
        if not _matches(imported, PURE_IMPORTS)
    ]


def import_graph(modules: dict[str, Module]) -> dict[str, dict[str, int]]:
    """module -> {imported module of the same tree -> first line}."""
    graph: dict[str, dict[str, int]] = {name: {} for name in modules}
    for module in modules.values():
        for name, line in module.imports:
            if name in modules and name != module.name:
                graph[module.name].setdefault(name, line)
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One path per back edge found by a depth-first search: ``[a, b, ..., a]``."""
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def cycle_problems(modules: dict[str, Module]) -> list[str]:
    graph = import_graph(modules)
    problems = []
    for cycle in find_cycles(graph):
        steps = [f"{a} ({_where(modules[a], graph[a][b])})" for a, b in itertools.pairwise(cycle)]
        problems.append("import cycle: " + " -> ".join([*steps, cycle[-1]]))
    for module in modules.values():
        parent = module.name if module.is_package else module.name.rpartition(".")[0]
        while parent:
            if parent in graph[module.name] and parent != module.name:
                line = graph[module.name][parent]
                problems.append(
                    f"{_where(module, line)}: {module.name} imports its package's __init__ "
                    f"({parent}); import the module that defines the name"
                )
            parent = parent.rpartition(".")[0]
    return problems


def network_problems(modules: dict[str, Module]) -> list[str]:
    return [
        f"{_where(module, line)}: {module.name} imports the network client {name}; only "
        f"{', '.join(sorted(NETWORK_ALLOWED))} may"
        for module in modules.values()
        if module.name not in NETWORK_ALLOWED
        for name, line in _names(module, NETWORK_CLIENTS)
    ]


def process_problems(modules: dict[str, Module]) -> list[str]:
    return [
        f"{_where(module, line)}: {module.name} starts a process ({call}); only the sandbox "
        f"modules may ({', '.join(sorted(PROCESS_ALLOWED))})"
        for module in modules.values()
        if module.name not in PROCESS_ALLOWED
        for call, line in module.process_calls
    ]


RULES = (
    scorers_independence_problems,
    pure_math_problems,
    cycle_problems,
    network_problems,
    process_problems,
)


@pytest.fixture(scope="module")
def repo_modules() -> dict[str, Module]:
    return collect_modules(REPO)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.__name__)
def test_house_rule_holds(repo_modules: dict[str, Module], rule) -> None:
    problems = rule(repo_modules)
    assert not problems, "\n".join(problems)


def test_allowlists_name_real_modules_that_need_them(repo_modules: dict[str, Module]) -> None:
    """An entry that no longer imports a client / starts a process is stale: remove it."""
    for name in NETWORK_ALLOWED:
        assert _names(repo_modules[name], NETWORK_CLIENTS), f"{name} no longer uses the network"
    for name in PROCESS_ALLOWED:
        assert repo_modules[name].process_calls, f"{name} no longer starts a process"
    assert SCORERS_ENTRY_POINT in repo_modules


def test_scorers_import_without_rfai() -> None:
    """Rule 1 at run time: every scorers module imports with ``rfai`` made unimportable."""
    names = sorted(n for n in collect_modules(REPO, ("scorers",)) if n not in {SCORERS_ENTRY_POINT})
    code = (
        "import importlib, sys\n"
        "sys.modules['rfai'] = None  # any `import rfai...` now raises ImportError\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'rfai'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['rfai']", done.stdout  # only the blocking None entry


# --- the checker itself, on a small fake tree ---------------------------------------------


def _tree(root: Path, files: dict[str, str]) -> dict[str, Module]:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return collect_modules(root)


CLEAN = {
    "rfai/__init__.py": "",
    "rfai/loss.py": "from __future__ import annotations\nimport mlx.core as mx\n",
    "rfai/tasks.py": "from scorers.task import Task\n",
    "rfai/hub.py": "import subprocess\nfrom huggingface_hub import HfApi\nsubprocess.run(['x'])\n",
    "rfai/teachers/__init__.py": "from rfai.teachers.base import Answer\n",
    "rfai/teachers/base.py": "from scorers.task import Task\nclass Answer: ...\n",
    "rfai/teachers/core.py": "from .base import Answer\nfrom . import base\n",
    "scorers/__init__.py": "from scorers.task import Task\n",
    "scorers/task.py": "from dataclasses import dataclass\n",
    "scorers/sandbox.py": "import subprocess as sp\ndef go():\n    sp.Popen(['x'])\n",
    "scorers/io.py": "import subprocess\ndef f(p: subprocess.Popen) -> None: ...\n",
    "scorers/__main__.py": "from rfai.tasks import load_tasks\n",
}


def _problems(modules: dict[str, Module]) -> list[str]:
    return [p for rule in RULES for p in rule(modules)]


def test_checker_passes_a_clean_tree(tmp_path: Path) -> None:
    modules = _tree(tmp_path, CLEAN)
    assert _problems(modules) == []
    # relative imports resolve to the module they name, `from . import base` to the submodule
    assert ("rfai.teachers.base", 1) in modules["rfai.teachers.core"].imports
    assert ("rfai.teachers.base", 2) in modules["rfai.teachers.core"].imports
    assert modules["scorers.sandbox"].process_calls == [("subprocess.Popen", 3)]
    assert modules["scorers.io"].process_calls == []  # a type annotation starts nothing


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (  # a function-level import of rfai from scorers
            {"scorers/pool.py": "def f():\n    from rfai.tasks import load_tasks\n"},
            ["scorers/pool.py:2: scorers module imports rfai.tasks"],
        ),
        (  # `import rfai` under TYPE_CHECKING counts too
            {
                "scorers/pool.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                "    import rfai.config\n"
            },
            ["scorers/pool.py:3: scorers module imports rfai.config"],
        ),
        (
            {"rfai/trainer.py": "from scorers import __main__\n"},
            ["rfai/trainer.py:1: imports the entry point scorers.__main__"],
        ),
        (
            {"rfai/loss.py": "import mlx.core as mx\nimport numpy as np\n"},
            ["rfai/loss.py:2: rfai.loss imports numpy"],
        ),
        (
            {"rfai/advantages.py": "from rfai.config import X\n"},
            ["rfai/advantages.py:1: rfai.advantages imports rfai.config"],
        ),
        (  # the teachers cycle as it was: package __init__ <-> a module importing from it
            {
                "rfai/teachers/__init__.py": "def build():\n    from rfai.teachers.core import C\n",
                "rfai/teachers/core.py": "from rfai.teachers import Answer\n",
            },
            [
                "import cycle: rfai.teachers (rfai/teachers/__init__.py:2) -> rfai.teachers.core "
                "(rfai/teachers/core.py:1) -> rfai.teachers",
                "rfai/teachers/core.py:1: rfai.teachers.core imports its package's __init__",
            ],
        ),
        (  # scorers importing rfai at package level (no module cycle: rule 1 finds it)
            {"scorers/pool.py": "from rfai.tasks import Task\n"},
            ["scorers/pool.py:1: scorers module imports rfai.tasks"],
        ),
        (  # a module cycle across the packages, through a function-level import
            {"scorers/task.py": "def f():\n    from rfai import tasks\n"},
            [
                "import cycle: rfai.tasks (rfai/tasks.py:1) -> scorers.task (scorers/task.py:2)"
                " -> rfai.tasks",
            ],
        ),
        (
            {"rfai/sampler.py": "from urllib import request\n"},
            ["rfai/sampler.py:1: rfai.sampler imports the network client urllib.request"],
        ),
        (
            {"scorers/suite.py": "def f():\n    import requests.adapters\n"},
            ["scorers/suite.py:2: scorers.suite imports the network client requests.adapters"],
        ),
        (
            {"rfai/tiny_model.py": "from subprocess import run as go\ngo(['sh'])\n"},
            ["rfai/tiny_model.py:2: rfai.tiny_model starts a process (subprocess.run)"],
        ),
        (
            {"scorers/quality2.py": "import os\ndef f():\n    os.execvp('sh', ['sh'])\n"},
            ["scorers/quality2.py:3: scorers.quality2 starts a process (os.execvp)"],
        ),
    ],
)
def test_checker_reports_a_planted_violation(
    tmp_path: Path, files: dict[str, str], expected: list[str]
) -> None:
    problems = _problems(_tree(tmp_path, {**CLEAN, **files}))
    for text in expected:
        assert any(text in p for p in problems), f"{text!r} not in {problems}"
    assert problems, "a planted violation went unreported"
