"""The package's shape: a clean import stack, and the Python version it declares (ruff runs in `make test-unit`)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib

from ftcourse import paths

ROOT = paths.project_root()
PACKAGE = ROOT / "ftcourse"


def import_graph() -> dict[str, set[str]]:
    """Module -> the ftcourse modules it imports, counting imports inside functions too."""
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    graph = {}
    for name in modules:
        deps = set()
        for node in ast.walk(ast.parse((PACKAGE / f"{name}.py").read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ftcourse"):
                sub = node.module.removeprefix("ftcourse").lstrip(".")
                deps.update([sub] if sub else [a.name for a in node.names])
            elif isinstance(node, ast.Import):
                deps.update(a.name.removeprefix("ftcourse.") for a in node.names if a.name.startswith("ftcourse."))
        graph[name] = deps & modules - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if not state.get(dep) and (found := visit(dep, stack)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if not state.get(node) and (found := visit(node, [])):
            return found
    return None


def test_the_package_has_no_import_cycle():
    assert find_cycle(import_graph()) is None, " -> ".join(find_cycle(import_graph()))


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_metrics_need_no_torch():
    """The metrics module is pure Python: importing it does not import torch."""
    code = "import sys, ftcourse.metrics; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_requires_python_is_what_the_code_needs():
    """pyproject declares Python >= 3.11 (tomllib, used by the course, is 3.11+) and this interpreter satisfies it."""
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["requires-python"]
    low = tuple(int(x) for x in re.fullmatch(r">=\s*(\d+)\.(\d+)", spec).groups())
    uses_tomllib = any("import tomllib" in p.read_text(encoding="utf-8") for p in [*PACKAGE.glob("*.py"), *ROOT.glob("tests/*.py")])
    assert low >= ((3, 11) if uses_tomllib else (3, 10))
    assert sys.version_info[:2] >= low
