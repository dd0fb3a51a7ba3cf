"""What every exercise's checks share: the failure types, ``expect``, calling the learner's code, spotting a course
helper the learner should not call, the :class:`SelfCheck` wrapper, the grading protocol (:class:`GradedCheck`), and small
helpers several exercises use (trained runs, saved adapters, probe logits, PEFT parameter counts).

The grading protocol: verdicts are decided outside the learner's kernel
-------------------------------------------------------------------------
``ftcourse grade`` runs a submission in a sandbox, and everything that runs there — the checks' code included — is the
student's to change. So a converted task's check is split in two, and only plain data crosses from one to the other:

* **collect** runs where the learner's code lives (their kernel; under ``ftcourse grade``, the sandbox after the
  student's cells). It turns what the task defined into JSON data: values (:func:`describe`), the outputs of the learner's
  functions on the task's inputs (:func:`run_learner`), names of files written into the workspace. It decides nothing and
  holds no expected answer. Write it as ``@graded_check(practice) def check_exNN_taskK(inputs, <the task's arguments>) -> dict``.
* **judge** runs in the grader's own process on that data and a :class:`Case`: the inputs, the expected answers, the
  learner's source cells (rules such as "write it yourself" read their syntax tree, :func:`forbid_source_helpers`, never
  live objects), the grading profile, reference objects (the model, the tokenizer) that the grader loads itself, and the
  files the learner's code wrote, which the collect step names by their path in the workspace and the judge reads with
  ``case.file(path)`` (no link followed out of the workspace, size capped).
  It returns the success message or raises :class:`CheckFailed` with the hint. Write it as
  ``@check_exNN_taskK.judge def _(data, case) -> str``; read a collected value or call with :func:`output_of`, and treat
  every collected value as untrusted (check its type before using it).

The master's hidden-test cell of a converted task is the single line ``check_exNN_taskK.collect(<the task's arguments>)``.
Under the grader (``$FTCOURSE_GRADING_DIR`` set) it reads the task's inputs from ``inputs.json`` there and writes
``collected/check_exNN_taskK.json``; elsewhere (the master run by papermill) it judges the practice case at once and
raises on a wrong answer. In the learner's notebook the check, ``check_exNN_taskK(...)``, collects and judges the practice
case in one process (their own kernel), with their own model and tokenizer as the reference objects.

Inputs come in two cases: the *practice* case, in the package, which the learner's self-check uses; and the *hidden*
case, ``solutions/hidden/exNN.json`` (``{check name: {"inputs": ..., "expected": ...}}``), which only the grader reads.
The grader copies a task's ``inputs`` into the sandbox — the learner's code must run on them — but never ``expected``,
and never mounts ``solutions/``. A tampered collect step can therefore only report data the student could have computed
anyway: it cannot change a verdict or read an expected answer. A task without an entry in the hidden file is graded on its
practice case.

Every task of ex01–ex13 follows the protocol. To write a new exercise: a collect step and a judge per task (as
``ex01.py`` and ``ex03.py`` do), its hidden inputs and expected answers in ``solutions/hidden/exNN.json``, the master's
hidden-test cells as ``.collect(...)`` calls, then ``ftcourse build``. A check written the old way (``@self_check``, a
hidden-test cell calling ``.verify(...)``) still runs inside the submission's kernel, where a hostile notebook can fake
its verdict; the grader names the path that graded each task.
"""

from __future__ import annotations

import ast
import functools
import inspect
import json
import os
import re
import stat
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Case", "CheckerError", "CheckFailed", "collected_path", "collected_run", "describe", "describe_run", "expect",
    "expect_intent_record", "expect_saved_adapter", "forbid_source_helpers", "graded_check",
    "GradedCheck", "GRADING_DIR_ENV", "INPUTS_FILE", "is_4bit", "is_close", "learner_source", "lora_targets", "output_of", "outputs_of",
    "peft_trainable", "probe_logits", "read_inside", "record_trained_on", "reference_model", "reference_tokenizer", "run_learner",
    "saved_run", "safetensors_bytes", "self_check", "SelfCheck", "source_helper",
    "workspace_adapter", "workspace_path",
]

#: Set by ``ftcourse grade`` inside the sandbox: the folder with ``inputs.json`` and ``collected/``.
GRADING_DIR_ENV = "FTCOURSE_GRADING_DIR"
INPUTS_FILE = "inputs.json"
#: Characters of a learner's exception message kept in the collected data.
MESSAGE_KEEP = 300


class CheckFailed(AssertionError):
    """A result is wrong: ``what`` is wrong and ``hint`` says how to get it right."""

    def __init__(self, what: str, hint: str):
        self.what, self.hint = what, hint
        super().__init__(f"{what} Hint: {hint}")


class CheckerError(RuntimeError):
    """The check itself failed (a fault in the checker or the course, not in the learner's answer)."""


def expect(condition: object, what: str, hint: str) -> None:
    """Raise :class:`CheckFailed` unless ``condition`` holds."""
    if not condition:
        raise CheckFailed(what, hint)


class SelfCheck:
    """A task's check: call it for a ✓/✗ line; ``.verify(...)`` returns the message or raises.

    :class:`CheckFailed` means the answer is wrong (its hint is for the learner);
    :class:`CheckerError` means the check itself failed and says nothing about the answer.
    """

    def __init__(self, func: Callable[..., Any], signature: inspect.Signature | None = None):
        functools.update_wrapper(self, func)
        self.func = func
        exercise, task = re.fullmatch(r"check_ex(\d+)_task(\d+)", func.__name__).groups()
        self.label = f"Exercise {exercise}, task {task}"
        self.signature = (signature or inspect.signature(func)).replace(return_annotation=inspect.Signature.empty)

    def bind(self, args: tuple, kwargs: dict) -> inspect.BoundArguments:
        """The check's arguments by name; the wrong arguments are the learner's mistake (:class:`CheckFailed`)."""
        try:
            return self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise CheckFailed(f"the check was called with the wrong arguments ({exc}).",
                              f"pass what the task asks for: {self.func.__name__}{self.signature}") from None

    def guarded(self, step: Callable[[], Any]) -> Any:
        """Run a step of the check: a failure that is not a verdict becomes a :class:`CheckerError`."""
        try:
            return step()
        except (CheckFailed, NotImplementedError):
            raise
        except Exception as exc:
            raise CheckerError(f"{self.label}: the checker itself failed ({type(exc).__name__}: {exc}). "
                               "This says nothing about your answer; please tell your instructor.") from exc

    def verify(self, *args, **kwargs) -> str:
        self.bind(args, kwargs)
        return self.guarded(lambda: self.func(*args, **kwargs))

    def __call__(self, *args, **kwargs) -> None:
        try:
            message = self.verify(*args, **kwargs)
        except CheckFailed as exc:
            print(f"✗ {self.label}: {exc.what}\n  Hint: {exc.hint}")
        except NotImplementedError:
            print(f"✗ {self.label}: not answered yet.\n  Hint: replace `raise NotImplementedError()` with your code.")
        except CheckerError as exc:
            print(f"⚠ {exc}")
        else:
            print(f"✓ {self.label}: {message}")


def self_check(func: Callable[..., str]) -> SelfCheck:
    """Decorator: a function ``check_exNN_taskK(...) -> str`` that raises :class:`CheckFailed` becomes a :class:`SelfCheck`."""
    return SelfCheck(func)


# ---------------------------------------------------------------- the grading protocol (see the module's docstring)


@dataclass(frozen=True)
class Case:
    """What a judge knows besides the collected data.

    ``inputs`` and ``expected`` are the practice case's or the hidden case's; ``source`` is the learner's code cells;
    ``profile`` is the grading profile (``P``). ``objects`` holds, in the learner's own kernel, the live arguments of the
    check (``model``, ``tokenizer``, ``P``), which then serve as the reference objects; the grader leaves it empty and
    loads its own. ``workspace`` is the folder the learner's notebook ran in (the course folder in their own kernel).
    """

    inputs: Mapping[str, Any]
    expected: Mapping[str, Any] = field(default_factory=dict)
    source: tuple[str, ...] = ()
    hidden: bool = False
    profile: Any = None
    objects: Mapping[str, Any] = field(default_factory=dict)
    workspace: Path | None = None

    def file(self, relative: str, cap: int = 2**30) -> bytes | None:
        """A file the learner's code wrote, by its path relative to the workspace (a collect step names it): read
        without following a link, None when missing or over ``cap`` bytes."""
        return read_inside(self.workspace, relative, cap) if self.workspace is not None else None

    @property
    def kind(self) -> str:
        """``"hidden"`` or ``"practice"``: which inputs the learner's code ran on (for messages)."""
        return "hidden" if self.hidden else "practice"

    def reference(self, name: str) -> Any:
        """The ``"P"``, ``"model"`` or ``"tokenizer"`` a judge compares with: the learner's own in their kernel, else the grader's."""
        if name in self.objects:
            return self.objects[name]
        if self.profile is None:
            raise CheckerError(f"the judge needs the {name}, and neither the check's arguments nor the grader gave one.")
        if name == "P":
            return self.profile
        return {"model": reference_model, "tokenizer": reference_tokenizer}[name](self.profile.model)


@functools.cache
def reference_model(name: str):
    """The grader's own copy of a base model (loaded once per process), for judges that recompute a value."""
    from ftcourse.models import load_model

    return load_model(name)


@functools.cache
def reference_tokenizer(name: str):
    from ftcourse.models import load_tokenizer

    return load_tokenizer(name)


def read_inside(root: Path, relative: str, cap: int) -> bytes | None:
    """A regular file under ``root`` written by the learner's code, or None: missing, a link anywhere on the way, not a
    regular file, or over ``cap`` bytes. Each component is opened relative to the last, never following a link."""
    parts = Path(relative).parts
    if not parts or any(part in ("..", "/") for part in parts):
        return None
    fds = []
    try:
        fds.append(os.open(root, os.O_RDONLY | os.O_DIRECTORY))
        for part in parts[:-1]:
            fds.append(os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fds[-1]))
        fds.append(os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fds[-1]))
        if not stat.S_ISREG(os.fstat(fds[-1]).st_mode):
            return None
        with os.fdopen(os.dup(fds[-1]), "rb") as fh:
            data = fh.read(cap + 1)
        return data if len(data) <= cap else None
    except OSError:
        return None
    finally:
        for fd in fds:
            os.close(fd)


def describe(value: Any) -> dict:
    """A value as plain data: ``{"type": its type's name, "value": JSON}``, or ``{"type": ..., "opaque": True}``.

    Tensors and arrays become lists, tuples become lists; the type's name keeps what JSON loses.
    """
    try:
        return {"type": type(value).__name__, "value": _plain(value, 0)}
    except (TypeError, ValueError, RecursionError):
        return {"type": type(value).__name__, "opaque": True}


def _plain(value: Any, depth: int) -> Any:
    if depth > 32:
        raise ValueError("nested too deeply")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if callable(getattr(value, "tolist", None)):  # tensors, arrays, numpy scalars
        return _plain(value.tolist(), depth + 1)
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    raise TypeError(f"a {type(value).__name__} is not plain data")


def run_learner(func: Any, *args, **kwargs) -> dict:
    """The learner's ``func`` called on ``args``, as plain data: :func:`describe` of its result,
    ``{"raised": name, "message": ...}`` when it raised, or ``{"not_callable": type}``."""
    if not callable(func):
        return {"not_callable": type(func).__name__}
    try:
        result = func(*args, **kwargs)
    except Exception as exc:
        return {"raised": type(exc).__name__, "message": str(exc)[:MESSAGE_KEEP]}
    return describe(result)


def _malformed() -> CheckFailed:
    return CheckFailed("the data collected for this task is malformed: the check was changed or bypassed.",
                       "run the task's cell and its check as given.")


def output_of(entry: Any, name: str, define: str = "") -> tuple[Any, str]:
    """``(value, type name)`` of a collected value or call of the learner's ``name``.

    A call that raised becomes a :class:`CheckFailed` naming the exception (``NotImplementedError``: not answered);
    ``define`` is the hint when ``name`` is not a function.
    """
    if not isinstance(entry, dict):
        raise _malformed()
    if "not_callable" in entry:
        raise CheckFailed(f"`{name}` is not a function (it is a {str(entry['not_callable'])[:80]}).",
                          define or f"define it with `def {name}(...)`.")
    if "raised" in entry:
        if entry["raised"] == "NotImplementedError":
            raise NotImplementedError()
        raise CheckFailed(f"`{name}` raised {str(entry['raised'])[:80]}: {str(entry.get('message', ''))[:MESSAGE_KEEP]}",
                          "run it on the small example of the task yourself; the task gives its arguments and what it returns.")
    if not isinstance(entry.get("type"), str) or not (entry.get("opaque") or "value" in entry):
        raise _malformed()
    if entry.get("opaque"):
        raise CheckFailed(f"`{name}` gives a {entry['type'][:80]}, which is not plain data.",
                          "return lists, tuples, dicts, numbers and strings (tensors are fine), as the task asks.")
    return entry["value"], entry["type"]


def collected_path(folder: str | Path, check: str) -> Path:
    """Where the collect step of ``check`` writes its data under the grading folder."""
    return Path(folder) / "collected" / f"{check}.json"


def learner_source(arguments: Mapping[str, Any]) -> tuple[str, ...]:
    """The learner's code as cells, for a check called in the learner's own process with ``arguments`` (name -> value):
    the kernel's input history in IPython, elsewhere the source of each function argument after the imports of its
    module; then ``name = function`` for an argument whose function has another name, so that the task's name finds it."""
    functions = {name: value for name, value in arguments.items() if inspect.isfunction(value)}
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    cells: list[str] = list(shell.user_ns["In"]) if shell is not None and shell.user_ns.get("In") else []
    for func in functions.values() if not cells else ():
        try:
            module = inspect.getmodule(func)
            tree = ast.parse(inspect.getsource(module)) if module else None
            cells += [ast.unparse(n) for n in (tree.body if tree else []) if isinstance(n, (ast.Import, ast.ImportFrom))]
            cells.append(textwrap.dedent(inspect.getsource(func)))
        except (OSError, TypeError, SyntaxError):
            continue
    return (*cells, *(f"{name} = {func.__name__}" for name, func in functions.items() if func.__name__ not in (name, "<lambda>")))


def _parsed(cells: tuple[str, ...] | list[str]) -> list[ast.Module]:
    """The cells that parse (IPython magics turned into Python first); the others are skipped."""
    trees = []
    for cell in cells:
        try:
            trees.append(ast.parse(cell))
            continue
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            pass
        try:
            from IPython.core.inputtransformer2 import TransformerManager

            trees.append(ast.parse(TransformerManager().transform_cell(cell)))
        except Exception:  # not Python even after IPython's transforms (or nested too deeply to parse)
            continue
    return trees


def _in_order(tree: ast.AST):
    """Every node of ``tree`` in source order (depth first, without recursion)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _bindings(trees: list[ast.Module]) -> dict[str, Any]:
    """Name -> what the source last bound it to (in cell order): a def or lambda (its node), an import (its qualified
    name) or an assigned expression (its node)."""
    bound: dict[str, Any] = {}
    for tree in trees:
        for node in _in_order(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                bound[node.name] = node
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    bound[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    bound[alias.asname or alias.name] = f"{node.module or ''}.{alias.name}"
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    if isinstance(target, ast.Name):
                        bound[target.id] = node.value
    return bound


def _local_names(node: ast.AST) -> set[str]:
    """The names local to the functions, lambdas and comprehensions inside ``node``: their parameters and what they assign."""
    names = set()
    for sub in ast.walk(node):
        if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = sub.args
            names |= {arg.arg for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg] if arg is not None}
            names |= {n.id for n in ast.walk(sub) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        elif isinstance(sub, ast.comprehension):
            names |= {n.id for n in ast.walk(sub.target) if isinstance(n, ast.Name)}
    return names


def source_helper(cells: tuple[str, ...] | list[str], name: str, helpers: Mapping[str, str]) -> str | None:
    """The helper (bare name -> qualified name, e.g. ``{"split_dataset": "ftcourse.data.split_dataset"}``) that the
    learner's ``name`` uses, read from the source ``cells``: called directly, under an alias, as an attribute, through a
    getattr string, or through another function of the learner's. None when it uses none.

    Source text, not live objects: what the grader judges is the notebook the student submitted.
    """
    bound = _bindings(_parsed(cells))
    seen: set[int] = set()

    def helper_of(qualified: str) -> str | None:
        bare = qualified.rsplit(".", 1)[-1]
        if bare in helpers and (qualified == helpers[bare] or qualified.split(".")[0] == helpers[bare].split(".")[0]):
            return bare
        return None

    def visit_name(ident: str) -> str | None:
        target = bound.get(ident)
        if target is None:
            return ident if ident in helpers else None  # never bound in the source: a star import, a builtin, a global
        if isinstance(target, str):
            return helper_of(target)
        if id(target) in seen:
            return None
        seen.add(id(target))
        return visit_node(target)

    def visit_node(node: ast.AST) -> str | None:
        local = _local_names(node)  # a function's parameters and variables shadow the globals of those names
        for sub in ast.walk(node):
            found = None
            if isinstance(sub, ast.Name):
                found = None if sub.id in local else visit_name(sub.id)
            elif isinstance(sub, ast.Attribute) or (isinstance(sub, ast.Constant) and isinstance(sub.value, str)):
                text = sub.attr if isinstance(sub, ast.Attribute) else sub.value
                found = text if text in helpers else None
            elif isinstance(sub, ast.ImportFrom):
                found = next((h for a in sub.names if (h := helper_of(f"{sub.module or ''}.{a.name}"))), None)
            if found:
                return found
        return None

    return visit_name(name) if name in bound else None


def forbid_source_helpers(case: Case, name: str, helpers: Mapping[str, str], why: str) -> None:
    """Fail when the learner's ``name`` (in ``case.source``) hands the task to one of the course's ``helpers``."""
    used = source_helper(case.source, name, helpers)
    expect(used is None, f"`{name}` calls `{used}`, the course's helper for this very task.", why)


class GradedCheck(SelfCheck):
    """A check of the grading protocol: a collect step (the decorated function) and a judge (see the module's docstring).

    ``practice`` is the learner's case, ``{"inputs": ..., "expected": ...}``, or a function that returns it (built on
    first use). ``check(...)`` prints a line, ``verify(...)`` judges the practice case, ``verify_case(case, ...)`` another
    case (tests use the hidden one), and ``collect(...)`` is the master's hidden-test cell.
    """

    def __init__(self, collect: Callable[..., dict], practice: Mapping[str, Any] | Callable[[], Mapping[str, Any]]):
        parameters = list(inspect.signature(collect).parameters.values())[1:]  # the first is the inputs
        super().__init__(collect, inspect.Signature(parameters))
        self._practice = practice
        self.decide: Callable[[dict, Case], str] | None = None

    def judge(self, func: Callable[[dict, Case], str]) -> Callable[[dict, Case], str]:
        """Decorator: the judge of this check, ``(data, case) -> message``."""
        self.decide = func
        return func

    @property
    def practice(self) -> Mapping[str, Any]:
        if callable(self._practice):
            self._practice = self._practice()
        return self._practice

    def collected(self, inputs: Mapping[str, Any], *args, **kwargs) -> dict:
        """The collect step on ``inputs``: plain data, after a JSON round trip (exactly what the grader reads)."""
        self.bind(args, kwargs)
        return self.guarded(lambda: json.loads(json.dumps(self.func(inputs, *args, **kwargs), allow_nan=True)))

    def judged(self, data: Any, case: Case) -> str:
        """The judge's verdict on collected ``data``: the message, :class:`CheckFailed`, or :class:`CheckerError`."""
        if not isinstance(data, dict):
            raise _malformed()
        return self.guarded(lambda: self.decide(data, case))

    def verify_case(self, case: Mapping[str, Any], *args, hidden: bool = False, **kwargs) -> str:
        """Collect and judge ``case`` (``{"inputs", "expected"}``) in this process, the arguments as the reference objects."""
        arguments = self.bind(args, kwargs).arguments
        inputs = json.loads(json.dumps(case["inputs"]))  # as the sandbox reads them
        data = self.collected(inputs, *args, **kwargs)
        source = learner_source(arguments)
        from ftcourse import paths

        return self.judged(data, Case(inputs, case.get("expected", {}), source, hidden, objects=arguments, workspace=paths.project_root()))

    def verify(self, *args, **kwargs) -> str:
        return self.verify_case(self.practice, *args, **kwargs)

    def collect(self, *args, **kwargs) -> None:
        """The master's hidden-test cell: under ``ftcourse grade`` write the collected data for the grader to judge;
        elsewhere (a master run by papermill) judge the practice case and raise on a wrong answer."""
        folder = os.environ.get(GRADING_DIR_ENV)
        if not folder:
            self.verify(*args, **kwargs)
            return
        inputs = json.loads((Path(folder) / INPUTS_FILE).read_text(encoding="utf-8")).get(self.__name__)
        if inputs is None:
            raise CheckerError(f"{self.label}: the grader gave no inputs for {self.__name__}.")
        path = collected_path(folder, self.__name__)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.collected(inputs, *args, **kwargs)), encoding="utf-8")


def graded_check(practice: Mapping[str, Any] | Callable[[], Mapping[str, Any]]) -> Callable[[Callable[..., dict]], GradedCheck]:
    """Decorator: a collect step ``check_exNN_taskK(inputs, ...) -> dict`` becomes a :class:`GradedCheck` with that practice case."""
    return lambda collect: GradedCheck(collect, practice)


def is_close(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-12)


def outputs_of(data: dict, count: int, name: str, define: str) -> list[tuple[Any, str]]:
    """The ``count`` collected calls of the learner's ``name`` in ``data["outputs"]``, each as :func:`output_of` gives it."""
    outputs = data.get("outputs")
    expect(isinstance(outputs, list) and len(outputs) == count, f"no output of `{name}` was collected.", f"{define} and run the task's cell.")
    return [output_of(entry, name, define) for entry in outputs]


def describe_run(result: Any) -> dict:
    """What ``fine_tune`` returned, as plain data: its type, method, metrics and losses, and its folder relative to the
    project root (the grader's workspace; None outside it), whose files a judge reads with :func:`saved_run`."""
    folder = workspace_path(getattr(result, "run_dir", None))
    try:
        losses = [loss for _, loss in result.losses]
    except Exception:  # not a RunResult: the judge names its type
        losses = None
    return {"type": type(result).__name__, "method": describe(getattr(result, "method", None)), "folder": folder,
            "metrics": describe(getattr(result, "metrics", None)), "losses": describe(losses)}


def collected_run(run: Any, case: Case, method: str, loss_must_drop: bool = True) -> tuple[dict, dict, list[float], dict]:
    """Judge a run collected by :func:`describe_run` from the files in its folder
    (:func:`saved_run`): returns (adapter config, saved tensors, losses, run record)."""
    run = run if isinstance(run, dict) else {}
    expect(run.get("type") == "RunResult", f"`result` is a {str(run.get('type'))[:80]}, not what fine_tune returns.",
           f"result = fine_tune(records, model=P.model, method={method!r}, settings=settings_from_profile(P), run_name=...).")
    used = output_of(run.get("method"), "result.method")[0]
    expect(used == method, f"the run used method {str(used)[:40]!r}; the task asks for {method!r}.", f"pass method={method!r}.")
    record, _, config, tensors = saved_run(case, run.get("folder"))
    losses = output_of(run.get("losses"), "result.losses")[0]
    expect(isinstance(losses, list) and all(isinstance(v, (int, float)) for v in losses), "the run's losses were not collected.",
           "pass the RunResult fine_tune returned.")
    expect_saved_adapter(used, method, losses, tensors, loss_must_drop)
    return config, tensors, losses, record


# ---------------------------------------------------------------- helpers several exercises' checks share


def peft_trainable(model, method: str, settings=None) -> int:
    """Trainable parameters PEFT gives ``method`` with ``settings`` on ``model``'s architecture (counted on a weightless copy)."""
    from ftcourse.course.comparison import peft_parameter_count

    return int(peft_parameter_count(model, method, settings)["trainable"])


def lora_targets(config) -> set[str]:
    modules = config.target_modules if hasattr(config, "target_modules") else config["target_modules"]
    return {modules} if isinstance(modules, str) else set(modules)


def expect_saved_adapter(used: str, method: str, losses: list, tensors: Mapping[str, Any], loss_must_drop: bool = True) -> None:
    """Fail unless a run of method ``used`` is of ``method``, its ``losses`` went down and every saved lora_B (``tensors``) trained."""
    expect(used == method, f"the run used method {used!r}; the task asks for {method!r}.", f"pass method={method!r}.")
    expect(not loss_must_drop or (len(losses) >= 2 and losses[-1] < losses[0]),
           f"the training loss did not go down: {[round(v, 3) for v in losses]}.",
           "train at least two logged steps with the method's default learning rate (settings_from_profile(P)).")
    frozen = [n for n, t in tensors.items() if "lora_B" in n and not t.abs().sum()]
    expect(not frozen, f"{len(frozen)} of the saved lora_B matrices are still all zero: those layers never learned.",
           "check that the optimizer updates the adapter (learning rate > 0, steps > 0).")


def record_trained_on(record: Mapping[str, Any], records, packing: bool = False, init_text: str | None = None) -> bool:
    """True when a run record (``ftcourse_run.json``) says its run was trained on exactly ``records``, with fine_tune's other defaults."""
    from ftcourse.configs import LoraSettings, TrainingSettings
    from ftcourse.errors import CourseError
    from ftcourse.runs import run_fingerprint

    try:
        return record.get("fingerprint") == run_fingerprint(record["base_model"], record["method"], LoraSettings(**record["lora"]),
                                                             TrainingSettings(**record["training"]), list(records), packing, init_text)
    except (KeyError, TypeError, ValueError, CourseError):  # not a record fine_tune wrote
        return False


def expect_intent_record(record: Mapping[str, Any], init_text: str | None = None) -> None:
    """Fail unless a run record says its run was trained on the intent task's training split (of some profile)."""
    from ftcourse.course.bundled import intent_records
    from ftcourse.profiles import PROFILES, get_profile

    splits = {split for name in PROFILES for split, records in intent_records(get_profile(name)).items()
              if record_trained_on(record, records, init_text=init_text)}
    evaluation = sorted(splits - {"train"})
    expect("train" in splits, f"the run was trained on the {evaluation[0]} split." if evaluation else
           "the run was not trained on the intent training split (its fingerprint matches none of the course's intent splits).",
           "evaluation data is never trained on: a model that has seen the test (or validation) examples scores well on them "
           "without having learned the task. Train on data['train']." if evaluation else
           "train on data['train'] as it is (same records, same order), with fine_tune's defaults otherwise.")


def saved_run(case: Case, folder: Any) -> tuple[dict, dict, dict, dict]:
    """A run folder that the learner's ``fine_tune`` wrote, named by a collect step (:func:`workspace_path`) and read by the
    judge: (run record, metrics, adapter config, adapter tensors). Fails when a file is missing or unreadable."""
    from safetensors.torch import load as load_safetensors

    from ftcourse.runs import RUN_RECORD

    expect(isinstance(folder, str) and folder, "the run folder is not inside the course folder, where the grader can read it.",
           "keep fine_tune's default output folder (models/fine_tuned/<run_name>) and pass its RunResult.")
    names = (RUN_RECORD, "metrics.json", "adapter_config.json", "adapter_model.safetensors")
    raw = {name: case.file(f"{folder}/{name}") for name in names}
    missing = [name for name in names if raw[name] is None]
    expect(not missing, f"the run folder {folder} holds no {missing[0] if missing else ''} (or it is not a regular file).",
           "fine_tune saves the adapter, its metrics and its record when training ends; let it finish and leave the folder as it wrote it.")
    try:
        record, metrics, config = (json.loads(raw[name]) for name in names[:3])
        tensors = load_safetensors(raw["adapter_model.safetensors"])
    except Exception as exc:  # the learner's file, whatever it holds
        raise CheckFailed(f"the run folder {folder} holds a file that cannot be read ({type(exc).__name__}).",
                          "leave the folder as fine_tune wrote it.") from None
    expect(all(isinstance(v, dict) for v in (record, metrics, config)), f"the run folder {folder} holds a file that cannot be read.",
           "leave the folder as fine_tune wrote it.")
    return record, metrics, config, tensors


def safetensors_bytes(folder) -> int:
    """The bytes of the tensors in a folder's .safetensors files (without their headers)."""
    from safetensors import safe_open

    total = 0
    for path in Path(folder).glob("*.safetensors"):
        with safe_open(path, "pt") as f:
            for key in f.keys():
                tensor = f.get_tensor(key)
                total += tensor.numel() * tensor.element_size()
    return total


def probe_logits(model, tokenizer, text: str = "Hi, my order 4417 has not arrived yet. Where is it?"):
    import torch

    device = next(model.parameters()).device
    batch = tokenizer(text, return_tensors="pt").to(device)
    model.eval()
    with torch.no_grad():
        return model(**batch).logits.float().cpu()


def is_4bit(model) -> bool:
    return any(type(m).__name__ == "Linear4bit" for m in model.modules())


def workspace_path(path: Any) -> str | None:
    """``path`` relative to the course folder (under ``ftcourse grade``, the submission's workspace), for a collect step
    to name a file or folder the learner's code wrote; None when it is not a path inside that folder."""
    from ftcourse import paths

    try:
        return Path(path).resolve().relative_to(paths.project_root().resolve()).as_posix()
    except (TypeError, ValueError, OSError):
        return None


def workspace_adapter(case: Case, folder: Any):
    """The PEFT adapter saved in the workspace's ``folder`` (a :func:`workspace_path`), on a fresh copy of its base model:
    the grading profile's model under the grader, else the base its config names (the learner's own kernel). A folder
    that holds no adapter, or one that does not fit the base, is the learner's fault (:class:`CheckFailed`)."""
    import tempfile

    from peft import PeftModel

    from ftcourse.models import load_model

    names = ("adapter_config.json", "adapter_model.safetensors")
    files = {name: case.file(f"{folder}/{name}") if isinstance(folder, str) else None for name in names}
    hint = "save the adapter with save_pretrained into a folder under the course folder (paths.fine_tuned_dir()) and pass that folder."
    expect(all(files.values()), f"no saved adapter was found in {str(folder)[:120]!r} (adapter_config.json and adapter_model.safetensors).", hint)
    try:
        config = json.loads(files["adapter_config.json"])
        base = case.profile.model if case.profile is not None else config["base_model_name_or_path"]
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in files.items():
                (Path(tmp) / name).write_bytes(data)
            model = PeftModel.from_pretrained(load_model(base), tmp)
    except Exception as exc:  # a damaged or foreign adapter: the learner's files
        raise CheckFailed(f"the adapter in {folder!r} cannot be loaded onto the base model ({type(exc).__name__}: {str(exc)[:200]}).", hint) from None
    return model.eval()
