"""The rules of the codebase's layers (docs/architecture.md), checked on its source."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "pgq"


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), str(path))
    return found


def test_nothing_outside_app_py_touches_a_private_attribute_of_an_app() -> None:
    """``app._x``, ``self.app._x``: an App's private parts belong to app.py (the rest uses
    ``app.db``, ``app.hooks`` and the public API). Recognised by the name: an expression
    ending in ``app``."""
    found = []
    for name, tree in modules().items():
        if name == "pgq.app":
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and ast.unparse(node.value).split(".")[-1].endswith("app")
            ):
                found.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


def test_no_module_imports_a_private_name_of_another() -> None:
    """``from pgq.x import _y`` ties two modules by a name one of them keeps to itself."""
    found = []
    for name, tree in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pgq"):
                found += [
                    f"{name}:{node.lineno}: {alias.name} from {node.module}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
    assert found == []


def _module_level_imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """What importing ``name`` imports of pgq: imports at module level, outside ``if TYPE_CHECKING``."""
    targets: set[str] = set()
    package = name if name in known and (PACKAGE / Path(*name.split(".")[1:]) / "__init__.py").exists() else None
    base = package or name.rsplit(".", 1)[0]

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
            elif isinstance(node, ast.If | ast.Try):
                visit(node.body)
                visit(node.orelse)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level:
                    module = ".".join(
                        base.split(".")[: len(base.split(".")) - node.level + 1] + ([module] if module else [])
                    )
                for alias in node.names:
                    # `from pgq.db import channels` imports the submodule; `from pgq.x import y`, pgq.x.
                    targets.add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module)

    visit(tree.body)
    return {target for target in targets if target in known and target != name}


def test_no_import_cycles_at_import_time() -> None:
    trees = modules()
    known = set(trees)
    graph = {name: _module_level_imports(name, tree, known) for name, tree in trees.items()}
    cycles = []
    state: dict[str, int] = {}

    def walk(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                walk(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    assert cycles == []


def test_the_workers_prometheus_metrics_need_no_dashboard_packages() -> None:
    """``pgq worker --metrics-port`` needs prometheus-client alone (the ``metrics`` extra)."""
    code = (
        "import sys\n"
        "for name in ('fastapi', 'starlette', 'jinja2', 'uvicorn'):\n"
        "    sys.modules[name] = None\n"
        "import pgq.worker.prometheus\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
