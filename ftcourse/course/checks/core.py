"""What every exercise's checks share: the failure types, ``expect``, calling the learner's code, spotting a course
helper the learner should not call, the :class:`SelfCheck` wrapper, and small helpers several exercises use (trained
runs, saved adapters, probe logits, PEFT parameter counts)."""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "call_learner", "CheckerError", "CheckFailed", "expect", "expect_choices", "expect_intent_train", "forbid_helpers", "is_4bit",
    "is_close", "lora_targets", "peft_trainable", "probe_logits", "safetensors_bytes", "self_check", "SelfCheck",
    "trained_adapter", "trained_on", "uses_helper",
]

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


def expect_choices(answers, expected: dict[str, tuple[str, str]], options: tuple[str, ...], name: str = "choices",
                   unit: str = "scenario") -> None:
    """Fail unless ``answers`` gives every key of ``expected`` its answer, one of ``options``; ``expected`` maps a key to
    (answer, hint), and a wrong answer fails with that hint — never with the answer."""
    expect(isinstance(answers, dict) and set(answers) == set(expected),
           f"`{name}` must be a dict with the keys {sorted(expected)}.", f"fill in one answer per {unit}.")
    quoted = [f'"{o}"' for o in options]
    for key, (want, hint) in expected.items():
        got = answers[key]
        expect(got in options, f"{name}[{key!r}] is {got!r}.", f"answer {', '.join(quoted[:-1])} or {quoted[-1]}.")
        expect(got == want, f"{name}[{key!r}] is {got!r}.", hint)


def call_learner(func: Callable, *args, name: str = "your function", **kwargs):
    """Call the learner's ``func``; an exception it raises becomes a :class:`CheckFailed` (the learner's fault)."""
    try:
        return func(*args, **kwargs)
    except (CheckFailed, NotImplementedError):
        raise
    except Exception as exc:
        raise CheckFailed(f"`{name}` raised {type(exc).__name__}: {exc}",
                          "run it on the small example of the task yourself; the task gives its arguments and what it returns.") from None


def _code_names(code) -> set[str]:
    names = set(code.co_names) | set(code.co_varnames) | set(code.co_freevars)
    for const in code.co_consts:
        if inspect.iscode(const):
            names |= _code_names(const)
    return names


def uses_helper(func: Callable, helpers: dict[str, object]) -> str | None:
    """The name of a helper (name -> object) that ``func`` calls, directly, under another name or as an attribute."""
    code = getattr(func, "__code__", None)
    if code is None:
        return None
    names = _code_names(code)
    scope = {**getattr(func, "__globals__", {}), **inspect.getclosurevars(func).nonlocals}
    for helper, obj in helpers.items():
        if helper in names or (obj is not None and any(scope.get(n) is obj for n in names if n in scope)):
            return helper
    return None


def forbid_helpers(func: Callable, name: str, helpers: dict[str, object], why: str) -> None:
    """Fail when the learner's ``func`` hands the task to one of the course's ``helpers``."""
    used = uses_helper(func, helpers)
    expect(used is None, f"`{name}` calls `{used}`, the course's helper for this very task.", why)


class SelfCheck:
    """A task's check: call it for a ✓/✗ line; ``.verify(...)`` returns the message or raises.

    :class:`CheckFailed` means the answer is wrong (its hint is for the learner);
    :class:`CheckerError` means the check itself failed and says nothing about the answer.
    """

    def __init__(self, func: Callable[..., str]):
        functools.update_wrapper(self, func)
        self.func = func
        exercise, task = re.fullmatch(r"check_ex(\d+)_task(\d+)", func.__name__).groups()
        self.label = f"Exercise {exercise}, task {task}"
        self.signature = inspect.signature(func).replace(return_annotation=inspect.Signature.empty)

    def verify(self, *args, **kwargs) -> str:
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise CheckFailed(f"the check was called with the wrong arguments ({exc}).",
                              f"pass what the task asks for: {self.func.__name__}{self.signature}") from None
        try:
            return self.func(*args, **kwargs)
        except (CheckFailed, NotImplementedError):
            raise
        except Exception as exc:
            raise CheckerError(f"{self.label}: the checker itself failed ({type(exc).__name__}: {exc}). "
                               "This says nothing about your answer; please tell your instructor.") from exc

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


def is_close(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-12)


# ---------------------------------------------------------------- helpers several exercises' checks share


def peft_trainable(model, method: str, settings=None) -> int:
    """Trainable parameters PEFT gives ``method`` with ``settings`` on ``model``'s architecture (counted on a weightless copy)."""
    from ftcourse.course.comparison import peft_parameter_count

    return int(peft_parameter_count(model, method, settings)["trainable"])


def lora_targets(config) -> set[str]:
    modules = config.target_modules if hasattr(config, "target_modules") else config["target_modules"]
    return {modules} if isinstance(modules, str) else set(modules)


def trained_adapter(result, method: str, loss_must_drop: bool = True) -> tuple[dict, list[float]]:
    """Check a RunResult of ``method``: adapter saved, every lora_B trained, loss down; return (adapter config, losses)."""
    import json
    from pathlib import Path

    from safetensors.torch import load_file

    from ftcourse.runs import RunResult

    expect(isinstance(result, RunResult), f"`result` is a {type(result).__name__}, not what fine_tune returns.",
           f"result = fine_tune(records, model=P.model, method={method!r}, settings=settings_from_profile(P), run_name=...).")
    expect(result.method == method, f"the run used method {result.method!r}; the task asks for {method!r}.", f"pass method={method!r}.")
    run_dir = Path(result.run_dir)
    files = {p.name for p in run_dir.iterdir()} if run_dir.is_dir() else set()
    expect({"adapter_config.json", "adapter_model.safetensors"} <= files, f"{run_dir} holds no saved adapter (found {sorted(files)}).",
           "fine_tune saves the adapter when training ends; let it finish.")
    losses = [loss for _, loss in result.losses]
    expect(not loss_must_drop or (len(losses) >= 2 and losses[-1] < losses[0]),
           f"the training loss did not go down: {[round(v, 3) for v in losses]}.",
           "train at least two logged steps with the method's default learning rate (settings_from_profile(P)).")
    tensors = load_file(run_dir / "adapter_model.safetensors")
    frozen = [n for n, t in tensors.items() if "lora_B" in n and not t.abs().sum()]
    expect(not frozen, f"{len(frozen)} of the saved lora_B matrices are still all zero: those layers never learned.",
           "check that the optimizer updates the adapter (learning rate > 0, steps > 0).")
    return json.loads((run_dir / "adapter_config.json").read_text()), losses


def trained_on(result, records, packing: bool = False, init_text: str | None = None) -> bool:
    """True when ``result``'s saved run was trained on exactly ``records`` (with fine_tune's other defaults): its fingerprint says so."""
    from ftcourse.configs import LoraSettings, TrainingSettings
    from ftcourse.runs import RUN_RECORD, run_fingerprint

    record = json.loads((Path(result.run_dir) / RUN_RECORD).read_text())
    return record.get("fingerprint") == run_fingerprint(record["base_model"], record["method"], LoraSettings(**record["lora"]),
                                                         TrainingSettings(**record["training"]), list(records), packing, init_text)


def expect_intent_train(result, init_text: str | None = None) -> None:
    """Fail unless ``result`` was trained on the intent task's training split (of some profile), naming an evaluation split it used."""
    from ftcourse.course.bundled import intent_records
    from ftcourse.profiles import PROFILES, get_profile
    from ftcourse.runs import RUN_RECORD

    expect((Path(result.run_dir) / RUN_RECORD).is_file(), f"{result.run_dir} holds no {RUN_RECORD}: it was not saved by fine_tune.",
           "train with ftcourse.train.fine_tune and pass its RunResult.")
    splits = {split for name in PROFILES for split, records in intent_records(get_profile(name)).items() if trained_on(result, records, init_text=init_text)}
    evaluation = sorted(splits - {"train"})
    expect("train" in splits, f"the run was trained on the {evaluation[0]} split." if evaluation else
           "the run was not trained on the intent training split (its fingerprint matches none of the course's intent splits).",
           "evaluation data is never trained on: a model that has seen the test (or validation) examples scores well on them "
           "without having learned the task. Train on data['train']." if evaluation else
           "train on data['train'] as it is (same records, same order), with fine_tune's defaults otherwise.")


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
