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


def module_name(path) -> str:
    """ftcourse/checks/ex01.py -> "checks.ex01"; a package's __init__.py names the package ("checks")."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the ftcourse modules it imports, counting imports inside functions too (subpackages' modules as "checks.ex01")."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    files.pop("", None)  # ftcourse/__init__.py
    graph = {}
    for name, path in files.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ftcourse"):
                sub = node.module.removeprefix("ftcourse").lstrip(".")
                for alias in node.names:  # `from ftcourse.checks import core` imports the module checks.core
                    full = f"{sub}.{alias.name}" if sub else alias.name
                    deps.add(full if full in files else sub)
            elif isinstance(node, ast.Import):
                deps.update(a.name.removeprefix("ftcourse.") for a in node.names if a.name.startswith("ftcourse."))
        graph[name] = deps & files.keys() - {name}
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


def test_the_graph_sees_the_checks_package():
    """The checks package's modules are in the graph: each exercise module imports core, the package re-exports them all."""
    graph = import_graph()
    assert {f"checks.ex{n:02d}" for n in range(1, 12)} <= graph.keys()
    assert all(graph[f"checks.ex{n:02d}"] >= {"checks.core"} for n in range(1, 12))
    assert graph["checks"] >= {"checks.core", "checks.ex01", "checks.ex11"}


def test_each_exercise_has_its_checks_module():
    """A reader finds exercise NN's checks in ftcourse/checks/exNN.py, and ftcourse.checks re-exports them under one name each."""
    from ftcourse import checks

    exercises = {p.name[:4] for p in (ROOT / "solutions").glob("ex*.ipynb")}
    assert exercises == {p.stem for p in (PACKAGE / "checks").glob("ex*.py")}
    names = [n for n in checks.__all__ if n.startswith("check_ex")]
    assert len(checks.__all__) == len(set(checks.__all__)) and names
    assert all(getattr(checks, n).__module__ == f"ftcourse.checks.{n[6:10]}" for n in names)


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
    uses_tomllib = any("import tomllib" in p.read_text(encoding="utf-8") for p in [*PACKAGE.rglob("*.py"), *ROOT.glob("tests/*.py")])
    assert low >= ((3, 11) if uses_tomllib else (3, 10))
    assert sys.version_info[:2] >= low
