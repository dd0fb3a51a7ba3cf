"""The package's shape: three layers that import only downward (import-linter), a small lazy public API, ``__all__``
everywhere, no private names across modules, short functions, and the Python version it declares."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ftcourse import paths

ROOT = paths.project_root()
PACKAGE = ROOT / "ftcourse"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def library_modules() -> list[Path]:
    """The library layer: the modules directly under ftcourse/ (course/ and tools/ are the layers above)."""
    return sorted(p for p in PACKAGE.glob("*.py") if p.name != "__init__.py")


def run_lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True)


def test_the_layers_contract_holds():
    out = run_lint_imports(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 kept, 0 broken" in out.stdout


@pytest.mark.parametrize("module, planted", [
    ("models.py", "from ftcourse.course import bundled"),  # library -> course
    ("course/lessons.py", "from ftcourse.tools import build"),  # course -> tools
    ("metrics.py", "def _late():\n    from ftcourse.tools.cli import main"),  # inside a function counts too
])
def test_an_upward_import_breaks_the_contract(tmp_path, module, planted):
    shutil.copytree(PACKAGE, tmp_path / "ftcourse", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with open(tmp_path / "ftcourse" / module, "a", encoding="utf-8") as fh:
        fh.write(f"\n{planted}  # planted\n")
    out = run_lint_imports(tmp_path)
    assert out.returncode != 0 and "BROKEN" in out.stdout, out.stdout


def test_a_new_module_must_be_given_a_layer(tmp_path):
    shutil.copytree(PACKAGE, tmp_path / "ftcourse", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "ftcourse" / "unlisted.py").write_text('"""A module nobody put in a layer."""\n')
    out = run_lint_imports(tmp_path)
    assert out.returncode != 0 and "unlisted" in out.stdout + out.stderr


def python(code: str) -> str:
    """The last line ``code`` prints (libraries may print notices before it)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout.strip().splitlines()[-1]


def test_import_ftcourse_loads_no_torch_until_a_name_is_used():
    assert python("import sys, ftcourse; print('torch' in sys.modules)") == "False"
    assert python("import sys, ftcourse; ftcourse.fine_tune; print('torch' in sys.modules, callable(ftcourse.fine_tune))") == "True True"


def test_the_public_api_names_what_a_user_needs():
    import ftcourse

    needed = {"load_model", "load_tokenizer", "get_profile", "fine_tune", "load_run", "evaluate_model", "compare", "generate",
              "classify", "merge_adapter", "CourseError", "LoraSettings", "TrainingSettings"}
    assert needed <= set(ftcourse.__all__) and len(ftcourse.__all__) <= 30
    for name in ftcourse.__all__:
        assert getattr(ftcourse, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        ftcourse.nothing_here  # noqa: B018


def test_importing_the_package_changes_no_warning_filter():
    code = "import warnings; before = list(warnings.filters); import ftcourse, ftcourse.course, ftcourse.tools; print(warnings.filters == before)"
    assert python(code) == "True"
    calls = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:  # module level: runs on import
            for call in [n for n in ast.walk(node) if isinstance(n, ast.Call)] if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) else []:
                if isinstance(call.func, ast.Attribute) and call.func.attr in ("filterwarnings", "simplefilter"):
                    calls.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    assert calls == []


def test_every_module_declares_all_and_it_names_real_public_objects():
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        declared = [n for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                    and any(isinstance(t, ast.Name) and t.id == "__all__" for t in (n.targets if isinstance(n, ast.Assign) else [n.target]))]
        assert declared, f"{path.relative_to(ROOT)} has no __all__"
    import ftcourse.models
    import ftcourse.train

    for module in (ftcourse.models, ftcourse.train):
        assert all(hasattr(module, name) and not name.startswith("_") for name in module.__all__)


def imported_private_names(path: Path, source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ftcourse"):
            found += [f"{path}:{node.lineno} {node.module}.{a.name}" for a in node.names if a.name.startswith("_") and a.name != "__version__"]
    return found


def code_sources() -> list[tuple[Path, str]]:
    """Every Python source of the project: modules, scripts, tests, benchmarks, and the notebooks' code cells."""
    import nbformat

    sources = [(p, p.read_text(encoding="utf-8")) for folder in ("ftcourse", "scripts", "tests", "benchmarks", "data/tools")
               for p in (ROOT / folder).rglob("*.py")]
    for folder in ("notebooks", "solutions"):
        for nb_path in (ROOT / folder).rglob("*.ipynb"):
            for i, cell in enumerate(nbformat.read(nb_path, as_version=4).cells):
                if cell.cell_type == "code" and not cell.source.lstrip().startswith(("%", "!")):
                    sources.append((Path(f"{nb_path}#{i}"), re.sub(r"^\s*[!%].*$", "", cell.source, flags=re.M)))
    return sources


def test_no_private_name_is_imported_across_modules():
    found = [hit for path, source in code_sources() for hit in imported_private_names(path.relative_to(ROOT) if path.is_absolute() and path.exists() else path, source)]
    assert found == []


def test_the_private_name_finder_finds_one():
    assert imported_private_names(Path("x.py"), "from ftcourse.models import _hidden, load_model\n") == ["x.py:1 ftcourse.models._hidden"]


def function_lengths(path: Path) -> dict[str, int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {f"{path.name}:{n.name}": n.end_lineno - n.lineno + 1 for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_library_functions_are_short_and_fine_tune_reads_like_a_recipe():
    lengths = {name: n for path in library_modules() for name, n in function_lengths(path).items()}
    assert {name: n for name, n in lengths.items() if n > 80} == {}
    assert lengths["train.py:fine_tune"] <= 60


def test_each_exercise_has_its_checks_module():
    """A reader finds exercise NN's checks in ftcourse/course/checks/exNN.py, and ftcourse.course.checks re-exports them under one name each."""
    from ftcourse.course import checks

    exercises = {p.name[:4] for p in (ROOT / "solutions").glob("ex*.ipynb")}
    assert exercises == {p.stem for p in (PACKAGE / "course" / "checks").glob("ex*.py")}
    names = [n for n in checks.__all__ if n.startswith("check_ex")]
    assert len(checks.__all__) == len(set(checks.__all__)) and names
    assert all(getattr(checks, n).__module__ == f"ftcourse.course.checks.{n[6:10]}" for n in names)


def test_metrics_need_no_torch():
    """The metrics module is pure Python: importing it does not import torch."""
    assert python("import sys, ftcourse.metrics; print('torch' in sys.modules)") == "False"


def test_requires_python_is_what_the_code_needs():
    """pyproject declares Python >= 3.11 (tomllib, used by the course, is 3.11+) and this interpreter satisfies it."""
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["requires-python"]
    low = tuple(int(x) for x in re.fullmatch(r">=\s*(\d+)\.(\d+)", spec).groups())
    uses_tomllib = any("import tomllib" in p.read_text(encoding="utf-8") for p in [*PACKAGE.rglob("*.py"), *ROOT.glob("tests/*.py")])
    assert low >= ((3, 11) if uses_tomllib else (3, 10))
    assert sys.version_info[:2] >= low


def test_the_layers_are_listed_in_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert all(f"ftcourse/{layer}/" in readme for layer in ("course", "tools"))
