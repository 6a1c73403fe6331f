"""The package's shape, as docs/architecture.md draws it: which layer may import which.

Imports are read with ``ast`` from the source (module level and inside functions), so a
lazy import breaks a rule as surely as one at the top of a file.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

import dispatcher
from dispatcher.errors import DispatcherError

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dispatcher"
MAX_LINES = 450

# The parsing layer: the job file, fleets, the plan and its checks. It knows nothing of
# sending, storing or the platform's wire format.
PARSING = (
    "dispatcher.check",
    "dispatcher.fleets",
    "dispatcher.imei",
    "dispatcher.jobfile",
    "dispatcher.plan",
    "dispatcher.planstats",
    "dispatcher.problems",
    "dispatcher.rolloutspec",
    "dispatcher.schema_errors",
    "dispatcher.seen",
    "dispatcher.template",
    "dispatcher.timewindow",
    "dispatcher.waves",
    "dispatcher.yamlfile",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


@cache
def _imports(module: str) -> tuple[tuple[str, bool], ...]:
    """``(imported module, at module level)`` for every import of ``module``'s source."""
    path = _modules()[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [base]
            # `from dispatcher import x` imports the submodule x when there is one
            names += [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in _modules()]
        else:
            continue
        if _type_checking_only(node, parents):
            continue
        top = parents.get(node) is tree
        found += [(name, top) for name in names]
    return tuple(found)


def _imported(module: str) -> set[str]:
    return {name for name, _ in _imports(module)}


def _loads(module: str) -> set[str]:
    """Every module importing ``module`` loads: its module-level imports, followed through
    the product's own modules (and each package's ``__init__`` on the way)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        parts = current.split(".")
        todo += [
            ".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in _modules()
        ]
        if current in _modules():
            todo += [name for name, top in _imports(current) if top]
    return seen - {module}


def _under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _product_modules() -> Iterator[str]:
    return (m for m in _modules() if not _under(m, "dispatcher.simulator"))


def test_the_parsing_modules_exist() -> None:
    """The rules below name real modules: a rename must update them."""
    assert set(PARSING) <= set(_modules())


def test_nothing_imports_the_cli() -> None:
    # dispatcher/__main__.py is the entry point `python -m dispatcher`, as the console script is
    offenders = {
        m
        for m in _modules()
        if m != "dispatcher.__main__" and _under_any(_imported(m), "dispatcher.cli")
    }
    assert set() == offenders


def _under_any(names: set[str], *prefixes: str) -> bool:
    return any(_under(n, *prefixes) for n in names)


def test_the_simulator_imports_nothing_of_the_product() -> None:
    offenders = {
        (m, name)
        for m in _modules()
        if _under(m, "dispatcher.simulator")
        for name in _imported(m)
        if _under(name, "dispatcher") and not _under(name, "dispatcher.simulator")
    }
    assert set() == offenders


@pytest.mark.parametrize("module", PARSING)
def test_parsing_knows_nothing_of_sending_or_storage(module: str) -> None:
    forbidden = ("dispatcher.onenet", "dispatcher.engine", "dispatcher.ledger", "aiohttp")
    direct = {n for n in _imported(module) if _under(n, *forbidden)}
    loaded = {n for n in _loads(module) if _under(n, *forbidden)}
    assert (set(), set()) == (direct, loaded)


def test_storage_knows_nothing_of_http() -> None:
    forbidden = ("dispatcher.onenet", "aiohttp", "dispatcher.engine")
    offenders = {
        (m, n)
        for m in _modules()
        if _under(m, "dispatcher.ledger")
        for n in _imported(m) | _loads(m)
        if _under(n, *forbidden)
    }
    assert set() == offenders


def test_the_engine_does_not_import_aiohttp() -> None:
    """It sees the network only through onenet.transport.Transport."""
    offenders = {
        (m, n)
        for m in _modules()
        if _under(m, "dispatcher.engine")
        for n in _imported(m) | _loads(m)
        if _under(n, "aiohttp", "dispatcher.onenet.client", "dispatcher.onenet.connect")
    }
    assert set() == offenders


def test_only_the_client_imports_aiohttp() -> None:
    users = {m for m in _product_modules() if _under_any(_imported(m), "aiohttp")}
    assert {"dispatcher.onenet.client"} == users


def test_the_engine_sees_of_onenet_only_its_protocols_and_the_errno_table() -> None:
    """Sending goes through ``Transport``; which outcomes are the platform's fault (for the
    breaker) is the wire contract's to say, as a pure function of the outcome."""
    allowed = {"dispatcher.onenet", "dispatcher.onenet.transport", "dispatcher.onenet.errnos"}
    used = {
        n
        for m in _modules()
        if _under(m, "dispatcher.engine")
        for n in _imported(m)
        if _under(n, "dispatcher.onenet")
    }
    assert used <= allowed, sorted(used - allowed)


def _strings(path: Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_the_platform_paths_are_spelled_in_one_module() -> None:
    """Outside the simulator, only onenet/platforms.py writes /nbiot or /nb-iot: help texts
    and docstrings name the profile table instead of copying its prefixes."""
    spelled = {
        (module, line)
        for module in _product_modules()
        for line, text in _strings(_modules()[module])
        if "/nbiot" in text or "/nb-iot" in text
    }
    assert {"dispatcher.onenet.platforms"} == {module for module, _ in spelled}


@pytest.mark.parametrize("module", sorted(_modules()))
def test_no_module_is_longer_than_the_limit(module: str) -> None:
    lines = len(_modules()[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{module}: {lines} lines"


def test_every_public_exception_descends_from_the_one_root() -> None:
    """The simulator is left out: it shares no code with the product, its root included."""
    outside: list[str] = []
    for info in pkgutil.walk_packages(dispatcher.__path__, "dispatcher."):
        if _under(info.name, "dispatcher.simulator") or info.name == "dispatcher.__main__":
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == info.name
                and not name.startswith("_")
                and not issubclass(value, DispatcherError)
            ):
                outside.append(f"{info.name}.{name}")
    assert [] == outside


def test_validate_loads_neither_aiohttp_nor_the_engine(tmp_path: Path) -> None:
    """Checking a job must stay quick and must not even load the code that sends."""
    script = (
        "import sys\n"
        "from dispatcher.cli import main\n"
        f"code = main(['validate', {str(ROOT / 'jobs' / 'example.yaml')!r}])\n"
        "loaded = sorted(m for m in sys.modules if m == 'aiohttp' or m.startswith("
        "('aiohttp.', 'dispatcher.engine', 'dispatcher.onenet.client', 'dispatcher.ledger')))\n"
        "print('LOADED', code, loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "LOADED 0 []" == done.stdout.strip().splitlines()[-1]
