"""Every notebook's tensors reach a model on the model's device (issue 25): a scan of the code cells.

``load_model`` puts the model on the GPU when there is one, so a tensor a cell builds itself must be created there
(``torch.tensor(..., device=model.device)``) or moved (``tokenizer(..., return_tensors="pt").to(model.device)``). On a
CPU both spellings run, so only a scan finds the cells that would fail on a GPU. It follows the names of a notebook from
cell to cell, in order:

- a *CPU tensor* is a ``return_tensors="pt"`` result or a ``torch`` factory call without ``device=``, and whatever is
  computed from one (an index, a method such as ``masked_fill``, arithmetic, ``torch.ones_like``) — until ``.to(...)``
  or ``.cuda()`` places it (a bare ``ids.to(device)`` statement does not: tensors are not moved in place);
- a *model input* is ``**batch`` in any call, a keyword such as ``input_ids=`` in any call (a forward or ``generate``),
  or a positional argument of something named like a model or a layer (``layer(x)``, ``encoder.embedding(ids)``).
"""

from __future__ import annotations

import ast
import json
import re
import textwrap

import pytest
from test_notebooks import NOTEBOOKS, ROOT

FACTORIES = {"tensor", "as_tensor", "from_numpy", "zeros", "ones", "full", "empty", "arange", "linspace", "rand", "randn",
             "randint", "randperm", "eye", "LongTensor", "FloatTensor"}
FOLLOW_INPUT = {"cat", "stack", "ones_like", "zeros_like", "full_like", "empty_like", "rand_like", "randn_like", "where"}
MODEL_INPUTS = {"input_ids", "attention_mask", "inputs_embeds", "labels", "position_ids", "past_key_values", "decoder_input_ids"}
MODEL_LIKE = re.compile(r"model|merged|layer|module|attention|decoder|encoder|head|embedding|exportable|theirs|multi|compiled", re.I)
PLACED = {"to", "cuda"}
NOT_TENSORS = {"shape", "dtype", "device", "ndim"}


def _name(node: ast.AST) -> str:
    """The last identifier of a callee: ``model`` for ``model(...)``, ``embedding`` for ``encoder.embedding(...)``."""
    while isinstance(node, ast.Call):
        node = node.func
    return node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""


def _is_torch(func: ast.AST, names: set[str]) -> bool:
    return (isinstance(func, ast.Attribute) and func.attr in names and isinstance(func.value, ast.Name)
            and func.value.id == "torch")


class Scan:
    """The CPU tensors of one notebook, by name, and the model inputs found to be one."""

    def __init__(self):
        self.cpu: set[str] = set()
        self.problems: list[str] = []

    def on_cpu(self, node: ast.AST | None) -> bool:
        if isinstance(node, ast.Name):
            return node.id in self.cpu
        if isinstance(node, ast.Subscript):
            return self.on_cpu(node.value)
        if isinstance(node, ast.Attribute):
            return node.attr not in NOT_TENSORS and self.on_cpu(node.value)
        if isinstance(node, (ast.BinOp, ast.Compare)):
            return any(self.on_cpu(n) for n in (getattr(node, "left", None), getattr(node, "right", None), *getattr(node, "comparators", [])))
        if isinstance(node, (ast.List, ast.Tuple)):
            return any(self.on_cpu(n) for n in node.elts)
        if not isinstance(node, ast.Call):
            return False
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in PLACED:
            return False
        if any(k.arg == "return_tensors" and isinstance(k.value, ast.Constant) and k.value.value == "pt" for k in node.keywords):
            return True
        if _is_torch(func, FACTORIES):
            return not any(k.arg == "device" for k in node.keywords)
        if _is_torch(func, FOLLOW_INPUT):
            return any(self.on_cpu(a) for a in node.args)
        return isinstance(func, ast.Attribute) and self.on_cpu(func.value)  # a tensor method: ids.masked_fill(...)

    def check_call(self, call: ast.Call, where: str) -> None:
        inputs = [k.value for k in call.keywords if k.arg is None or k.arg in MODEL_INPUTS]
        if MODEL_LIKE.search(_name(call.func)):
            inputs += call.args
        for node in inputs:
            if self.on_cpu(node):
                self.problems.append(f"{where}: {ast.unparse(node)} reaches {ast.unparse(call.func)}(...) on the CPU")

    def statements(self, body: list[ast.stmt], where: str) -> None:
        for stmt in body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                outer = set(self.cpu)
                self.statements(stmt.body, where)
                self.cpu = outer
                continue
            children = [b for field in ("body", "orelse", "finalbody") for b in getattr(stmt, field, [])]
            children += [s for handler in getattr(stmt, "handlers", []) for s in handler.body]
            headers = [n for n in ast.iter_child_nodes(stmt) if not isinstance(n, ast.stmt)]
            for node in (n for header in headers for n in ast.walk(header)):
                if isinstance(node, ast.Call):
                    self.check_call(node, f"{where}, line {node.lineno}")
            if isinstance(stmt, ast.Assign):
                for target in stmt.targets:
                    if isinstance(target, ast.Name):
                        (self.cpu.add if self.on_cpu(stmt.value) else self.cpu.discard)(target.id)
            self.statements(children, where)


def scan(cells: list[str], label: str = "") -> list[str]:
    """Problems in a notebook's code cells (in order): ``label, cell N, line L: <tensor> reaches <callee>(...) on the CPU``."""
    state = Scan()
    for index, source in cells:
        code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
        state.statements(ast.parse(code).body, f"{label}cell {index}")
    return state.problems


def code_cells(path) -> list[tuple[int, str]]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [(i, "".join(c["source"])) for i, c in enumerate(cells) if c["cell_type"] == "code"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_tensors_are_made_on_the_model_device(notebook):
    assert scan(code_cells(notebook)) == []


def _cells(*sources: str) -> list[tuple[int, str]]:
    return list(enumerate(textwrap.dedent(s) for s in sources))


PLANTED = {
    "tokenizer output unpacked into a forward": ['logits = model(**tokenizer("Hi", return_tensors="pt")).logits'],
    "a batch from an earlier cell": ['batch = tokenizer(texts, padding=True, return_tensors="pt")', "out = model(**batch)"],
    "ids for generate, and a mask made like them": [
        "ids = torch.tensor([encode_prompt(tokenizer, p)])",
        "out = merged.generate(input_ids=torch.ones_like(ids) * ids, attention_mask=torch.ones_like(ids))"],
    "a padded batch filled row by row in a function": ["""
        def batched(model, encoded):
            ids = torch.full((len(encoded), 9), 0)
            for row, seq in enumerate(encoded):
                ids[row, : len(seq)] = torch.tensor(seq, device=model.device)
            return model.generate(input_ids=ids, max_new_tokens=4)
        """],
    "a slice of a tokenized batch": [
        'batch = tokenizer(texts, return_tensors="pt")',
        'labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)',
        "loss = model(input_ids=batch['input_ids'][:2], labels=labels[:2]).loss"],
    "random hidden states into a layer": ["x = torch.randn(2, 5, 64)", "with torch.no_grad():\n    y = layer(x)"],
    "positions into an embedding": ["virtual = encoder.embedding(torch.arange(16))"],
    ".to() whose result is dropped": ["ids = torch.tensor([[1, 2, 3]])", "ids.to(model.device)", "model(input_ids=ids)"],
    "a placed name overwritten by a CPU tensor": [
        "ids = torch.tensor([[1, 2]], device=model.device)", "ids = torch.tensor([[3, 4]])", "model(input_ids=ids)"],
    "a forward inside a timed lambda": ["time_call(lambda: [exportable(torch.tensor([e])) for e in encoded], repeats=3)"],
    "a chat template's ids": [
        'ids = tokenizer.apply_chat_template(messages, return_dict=True, return_tensors="pt")["input_ids"]',
        "if ids.shape[1] > 4:\n    logits = peft_model(input_ids=ids).logits"],
}


@pytest.mark.parametrize("cells", PLANTED.values(), ids=PLANTED.keys())
def test_scan_finds_planted_cpu_tensors(cells):
    problems = scan(_cells(*cells))
    assert len(problems) >= 1 and all("on the CPU" in p for p in problems)


PLACED_RIGHT = [
    'logits = model(**tokenizer("Hi", return_tensors="pt").to(model.device)).logits',
    'batch = tokenizer(texts, return_tensors="pt")\nout = model(**batch.to(model.device))',
    "ids = torch.tensor([[1, 2]], device=model.device)\nout = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids))",
    "ids = torch.tensor([[1, 2]])\nids = ids.to(merged.device)\nmerged(input_ids=ids)",
    "batch = {k: v.to(model.device) for k, v in collate(examples, 0).items()}\nmodel(input_ids=batch['input_ids'])",
    "levels = torch.linspace(0, 1, 16)\nprint(torch.equal(levels, table.cpu()), len(levels))",  # CPU tensors that meet no model
    "W = model.lm_head.weight.detach().float().cpu()\ncodes = nf4_quantize(W)",
    "%matplotlib inline\nx = torch.zeros(3, device=model.device)\nlayer(x)",
]


@pytest.mark.parametrize("source", PLACED_RIGHT)
def test_scan_accepts_placed_tensors(source):
    assert scan(_cells(source)) == []
