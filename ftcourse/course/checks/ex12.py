"""Checks of exercise 12, preference tuning and RL (``solutions/ex12_preference_and_rl.ipynb``).

Every task follows the grading protocol (``core``'s docstring): a collect step runs the learner's function on the case's
inputs (built from plain numbers: a seed and shapes, rewards, answers, run logs) and a judge recomputes the answer and
the tempting wrong ones (a mean instead of a sum, the log-ratio's sign swapped, β on one side, the reference forgotten or
not detached, advantages normalised over the batch, a reward that pays for valid JSON or length) and names the one the
learner's output matches, without giving the expected value. The practice cases are here; the hidden inputs and expected
answers the grader uses are in ``solutions/hidden/ex12.json``.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from ftcourse.course.checks.core import Case, expect, forbid_source_helpers, graded_check, output_of, outputs_of, run_learner

__all__ = ["check_ex12_task1", "check_ex12_task2", "check_ex12_task3", "check_ex12_task4", "check_ex12_task5", "EX12_DIAGNOSES", "EX12_RUNS"]


def _close(got: Any, want, tol: float = 1e-4) -> bool:
    """Whether the collected ``got`` (numbers, possibly nested) equals the tensor ``want`` within ``tol``."""
    import torch

    try:
        got = torch.as_tensor(got, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return False
    want = torch.as_tensor(want, dtype=torch.float64)
    return got.shape == want.shape and bool(torch.allclose(got, want, atol=tol, rtol=tol, equal_nan=False))


def _numbers(value: Any, n: int) -> bool:
    return isinstance(value, list) and len(value) == n and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def _logps_case(inputs: dict):
    """Logits, token ids and answer masks from ``inputs`` (seed, shape, answer spans [start, end) per row; padding after end)."""
    import torch

    gen = torch.Generator().manual_seed(int(inputs["seed"]))
    batch, length, vocab = inputs["shape"]
    logits = torch.randn(batch, length, vocab, generator=gen) * 3
    input_ids = torch.randint(0, vocab, (batch, length), generator=gen)
    mask = torch.zeros(batch, length, dtype=torch.long)
    for row, (start, end) in enumerate(inputs["spans"]):
        mask[row, start:end] = 1
    return logits, input_ids, mask


def _logps_variants(logits, input_ids, mask) -> dict[str, object]:
    """The right answer ("sum") and the tempting wrong ones, computed on the same case."""
    shifted = logits[:, :-1].log_softmax(-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    unshifted = logits.log_softmax(-1).gather(-1, input_ids[:, :, None]).squeeze(-1)
    answer = mask[:, 1:].float()
    return {
        "sum": (shifted * answer).sum(-1),
        "mean": (shifted * answer).sum(-1) / answer.sum(-1),
        "unshifted": (unshifted * mask).sum(-1),
        "mask_unshifted": (shifted * mask[:, :-1]).sum(-1),
        "every_token": shifted.sum(-1),
        "prompt_counted": (shifted * (mask.flip(-1).cumsum(-1).flip(-1) > 0)[:, 1:]).sum(-1),
        "probabilities": (shifted.exp() * answer).sum(-1),
    }


_LOGPS_HINTS = {
    "mean": "that is the mean over the answer's tokens (ORPO's choice): log π(y|x) of a whole answer is the SUM of its tokens' "
            "log-probabilities — the log of the product of their probabilities.",
    "unshifted": "the logits at position t predict token t+1: compare logits[:, :-1] with input_ids[:, 1:].",
    "mask_unshifted": "shift the completion mask with the targets: the mask of a predicted token is completion_mask[:, 1:].",
    "every_token": "only the answer's tokens count: multiply by the completion mask before summing (the prompt and the padding are not the answer).",
    "prompt_counted": "the prompt's tokens are not the answer: DPO compares log π(answer | prompt), so only the positions of "
                      "completion_mask count — the prompt is the same for both answers and would only add noise.",
    "probabilities": "add log-probabilities (log_softmax), not probabilities.",
}


@graded_check({"inputs": {"seed": 1207, "shape": [3, 11, 40], "spans": [[4, 9], [6, 8], [2, 11]]}, "expected": {}})
def check_ex12_task1(inputs, answer_logps) -> dict:
    """``answer_logps(logits, input_ids, completion_mask)``: per row, the summed log-probability of the answer tokens."""
    return {"output": run_learner(answer_logps, *_logps_case(inputs))}


@check_ex12_task1.judge
def _judge_task1(data: dict, case: Case) -> str:
    rows = len(case.inputs["spans"])
    got, kind = output_of(data.get("output"), "answer_logps", "define def answer_logps(logits, input_ids, completion_mask): ...")
    expect(_numbers(got, rows), f"answer_logps returned a {kind} that is not one number per row, for a batch of {rows} rows.",
           "return one number per row: a tensor of shape (batch,).")
    variants = _logps_variants(*_logps_case(case.inputs))
    if not _close(got, variants["sum"]):
        where = f"answer_logps differs from log π(answer | prompt) on a {case.kind} batch of {rows} right-padded rows."
        for name, hint in _LOGPS_HINTS.items():
            expect(not _close(got, variants[name]), where, hint)
        expect(False, where, "log_softmax the logits at positions 0..T-2, pick the log-probability of each next token (input_ids[:, 1:]), "
                             "multiply by completion_mask[:, 1:] and sum over the positions.")
    return f"the summed log-probability of each answer, on a {case.kind} right-padded batch (shifted, masked, not averaged)."


def _dpo_case(inputs: dict) -> list:
    """Policy and reference log-probabilities of ``inputs["pairs"]`` pairs (policy_chosen, policy_rejected, ref_chosen, ref_rejected)."""
    import torch

    gen = torch.Generator().manual_seed(int(inputs["seed"]))
    n = int(inputs["pairs"])
    ref_c, ref_r = -torch.rand(n, generator=gen) * 40 - 5, -torch.rand(n, generator=gen) * 40 - 5
    pol_c, pol_r = ref_c + torch.randn(n, generator=gen) * 4, ref_r + torch.randn(n, generator=gen) * 4 - 2
    return [pol_c, pol_r, ref_c, ref_r]


def _dpo_calls(inputs: dict) -> list[tuple[list, float]]:
    """(the four log-probability tensors, beta) of each call: the seeded pairs under each beta, then (last) policy = reference."""
    import torch

    start = torch.tensor(inputs["start"])
    return [*((_dpo_case(inputs), beta) for beta in inputs["betas"]), ([start, start - 3, start.clone(), start - 3], 0.1)]


def _dpo_probe(dpo_loss, tensors: list, beta: float) -> dict:
    """The learner's loss on leaf copies of ``tensors`` and, when it is a one-element tensor with a graph, each input's gradient."""
    import torch

    leaves = [t.detach().clone().requires_grad_(True) for t in tensors]

    def probe():
        loss = dpo_loss(*leaves, beta)
        graph = isinstance(loss, torch.Tensor) and loss.numel() == 1 and loss.requires_grad
        if graph:
            loss.backward()
        return {"loss": loss, "graph": graph, "grads": [leaf.grad for leaf in leaves]}

    return run_learner(probe) if callable(dpo_loss) else run_learner(dpo_loss)


def _dpo_variants(pol_c, pol_r, ref_c, ref_r, beta) -> dict[str, object]:
    import torch.nn.functional as F

    margin = (pol_c - ref_c) - (pol_r - ref_r)
    return {
        "right": -F.logsigmoid(beta * margin).mean(),
        "swapped": -F.logsigmoid(-beta * margin).mean(),
        "no_reference": -F.logsigmoid(beta * (pol_c - pol_r)).mean(),
        "chosen_likelihood": -pol_c.mean(),
        "scaled_chosen_likelihood": -(beta * pol_c).mean(),
        "no_beta": -F.logsigmoid(margin).mean(),
        "beta_one_side": -F.logsigmoid(beta * (pol_c - ref_c) - (pol_r - ref_r)).mean(),
        "summed": -F.logsigmoid(beta * margin).sum(),
    }


_DPO_HINTS = {
    "swapped": "the log-ratio's sign is swapped: the loss must FALL when the chosen answer gains on the rejected one — "
               "the margin is (chosen's log-ratio) - (rejected's log-ratio), inside -log σ(β · margin).",
    "no_reference": "the reference is missing: DPO's reward is the log-RATIO log π_θ(y) - log π_ref(y), so subtract ref_chosen and "
                    "ref_rejected. Without it the loss rewards what the reference already preferred.",
    "chosen_likelihood": "that is the plain likelihood of the chosen answer (SFT's loss): DPO compares the two answers' log-ratios "
                         "against the reference, inside -log σ(·).",
    "scaled_chosen_likelihood": "that is the plain likelihood of the chosen answer, scaled: DPO compares the two answers' log-ratios "
                                "against the reference, inside -log σ(·).",
    "no_beta": "multiply the margin by beta before the log-sigmoid: β sets how strongly the policy may move away from the reference.",
    "beta_one_side": "β multiplies the whole margin, both log-ratios: β·(chosen's log-ratio) - (rejected's log-ratio) weighs the two "
                     "answers differently. Put the brackets around the difference.",
    "summed": "average over the pairs (mean), as TRL does, so the loss does not grow with the batch size.",
}


def _dpo_gradients(data: dict, tensors: list, beta: float, where: str) -> None:
    """Fail unless the collected gradients reach the policy as DPO's do and never reach the (frozen) reference."""
    import torch.nn.functional as F

    expect(data.get("graph") is True, f"{where}: the loss is not a tensor that gradients flow through.",
           "keep it a torch tensor built from the inputs: .item(), float() or math functions cut the graph, and nothing would train.")
    grads = data.get("grads")
    expect(isinstance(grads, list) and len(grads) == 4, "the data collected for this task is malformed: the check was changed or bypassed.",
           "run the task's cell and its check as given.")
    expect(all(g is None or (isinstance(g, list) and not any(g)) for g in grads[2:]),
           f"{where}: the loss sends gradients into ref_chosen / ref_rejected.",
           "the reference is frozen (TRL computes its log-probabilities under torch.no_grad()): detach them "
           "(ref_chosen.detach(), ref_rejected.detach()) so that only the policy's log-probabilities are trained.")
    leaves = [t.detach().clone().requires_grad_(i < 2) for i, t in enumerate(tensors)]
    pc, pr, rc, rr = leaves
    (-F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()).backward()
    expect(all(_close(g, leaf.grad) for g, leaf in zip(grads[:2], leaves[:2])),
           f"{where}: the gradients that reach policy_chosen / policy_rejected are not DPO's.",
           "compute the loss from the inputs with torch operations only (no .detach() on the policy's log-probabilities).")


@graded_check({"inputs": {"seed": 20261207, "pairs": 6, "betas": [0.1, 0.5], "start": [-12.0, -30.5, -7.25]}, "expected": {}})
def check_ex12_task2(inputs, dpo_loss) -> dict:
    """``dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)``: DPO's loss, averaged over the pairs."""
    return {"outputs": [_dpo_probe(dpo_loss, tensors, beta) for tensors, beta in _dpo_calls(inputs)]}


@check_ex12_task2.judge
def _judge_task2(data: dict, case: Case) -> str:
    calls = _dpo_calls(case.inputs)
    outputs = data.get("outputs")
    expect(isinstance(outputs, list) and len(outputs) == len(calls), "no output of `dpo_loss` was collected.",
           "define def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta): ... and run the task's cell.")
    for index, ((tensors, beta), entry) in enumerate(zip(calls, outputs)):
        got, _ = output_of(entry, "dpo_loss", "define def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta): ...")
        expect(isinstance(got, dict), "the data collected for this task is malformed: the check was changed or bypassed.",
               "run the task's cell and its check as given.")
        loss = got.get("loss")
        expect(not isinstance(loss, list) or len(loss) == 1, "dpo_loss returned one value per pair.", "average the per-pair losses into one number (.mean()).")
        loss = loss[0] if isinstance(loss, list) else loss
        if index == len(calls) - 1:  # the call with policy = reference
            expect(_close(loss, math.log(2)), "when the policy equals the reference, your loss is not log 2.",
                   "with policy = reference every log-ratio is 0, so the loss is -log σ(0) = log 2 whatever the answers' likelihoods.")
            continue
        where = f"dpo_loss on {case.kind} pairs with beta={beta}"
        variants = _dpo_variants(*tensors, beta)
        if not _close(loss, variants["right"]):
            for name, hint in _DPO_HINTS.items():
                expect(not _close(loss, variants[name]), f"{where} is wrong.", hint)
            expect(False, f"{where} is wrong.", "margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected); "
                                                "loss = -logsigmoid(beta * margin).mean().")
        _dpo_gradients(got, tensors, beta, where)
    betas = ", ".join(map(str, case.inputs["betas"]))
    return f"DPO's loss and its gradients on {case.kind} pairs for β = {betas} (none into the reference), and log 2 where the policy is the reference."


def _advantage_variants(rewards, size) -> dict[str, object]:
    grouped = rewards.view(-1, size)
    centred = grouped - grouped.mean(1, keepdim=True)
    reshaped = rewards.view(size, -1)
    return {
        "right": (centred / (grouped.std(1, keepdim=True) + 1e-4)).flatten(),
        "batch": (rewards - rewards.mean()) / (rewards.std() + 1e-4),
        "population_std": (centred / (grouped.std(1, keepdim=True, unbiased=False) + 1e-4)).flatten(),
        "no_scaling": centred.flatten(),
        "interleaved": ((reshaped - reshaped.mean(0, keepdim=True)) / (reshaped.std(0, keepdim=True) + 1e-4)).flatten(),
        "reshaped": ((reshaped - reshaped.mean(1, keepdim=True)) / (reshaped.std(1, keepdim=True) + 1e-4)).flatten(),
    }


_ADVANTAGE_HINTS = {
    "batch": "normalise within each GROUP (the samples of one prompt), not across the whole batch: a hard prompt's best answer "
             "must count as good even if an easy prompt's answers all scored higher.",
    "population_std": "TRL divides by the sample standard deviation (Bessel's correction, torch's default unbiased=True).",
    "no_scaling": "divide by the group's standard deviation + 1e-4 (TRL's default scale_rewards='group'); not dividing is "
                  "Dr. GRPO's variant (scale_rewards='none').",
    "interleaved": "the samples of one prompt are consecutive: rewards.view(-1, group_size) puts each group in one row.",
    "reshaped": "the samples of one prompt are consecutive: rewards.view(-1, group_size) puts each group in one row "
                "(view(group_size, -1) cuts the batch into the wrong rows).",
}


@graded_check({"inputs": {"rewards": [1.0, 2 / 3, 1 / 3, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0], "group_size": 4}, "expected": {}})
def check_ex12_task3(inputs, group_advantages) -> dict:
    """``group_advantages(rewards, group_size)``: GRPO's advantages, (r - group mean) / (group std + 1e-4)."""
    import torch

    return {"output": run_learner(group_advantages, torch.tensor(inputs["rewards"]), int(inputs["group_size"]))}


@check_ex12_task3.judge
def _judge_task3(data: dict, case: Case) -> str:
    import torch

    rewards, size = torch.tensor(case.inputs["rewards"]), int(case.inputs["group_size"])
    got, kind = output_of(data.get("output"), "group_advantages", "define def group_advantages(rewards, group_size): ...")
    expect(isinstance(got, list) and len(got) == len(rewards) and all(isinstance(v, (int, float)) or v is None for v in got),
           f"group_advantages returned a {kind} that is not one advantage per reward, for {len(rewards)} rewards.",
           "return one advantage per reward, in the same order (flatten the groups again).")
    expect(not any(v is None or math.isnan(v) for v in got), "a group whose rewards are all equal gives NaN advantages.",
           "add 1e-4 to the standard deviation: a group with equal rewards then gets advantages 0, not 0/0.")
    variants = _advantage_variants(rewards, size)
    groups = len(rewards) // size
    if not _close(got, variants["right"]):
        where = f"group_advantages differs from GRPO's on a {case.kind} batch of {groups} groups of {size}."
        for name, hint in _ADVANTAGE_HINTS.items():
            expect(not _close(got, variants[name]), where, hint)
        expect(False, where, "reshape to (groups, group_size), subtract each row's mean, divide by each row's std (+ 1e-4), flatten.")
    return f"GRPO's group-normalised advantages on a {case.kind} batch of {groups} groups: zero for a group whose samples all scored the same."


_TICKET = '{"intent":"damaged_item","order_id":"762104","product":"lumi lamp"}'

#: What each kind of answer of task 4 teaches when the learner's reward gets it wrong (never the reward it should get).
_REWARD_HINTS = {
    "right": "the right ticket must earn the full reward.",
    "reordered": "parse the JSON (json.loads) and compare fields: key order and spaces do not change a ticket.",
    "prose": "prose is not a ticket, and the reward must not grow with the answer's length: only a JSON object can earn reward.",
    "wrong_fields": "valid JSON alone must earn nothing: pay for fields that match the reference, or the model learns to write any JSON.",
    "empty": "an empty object has no field right.",
    "wrapped": "the answer must be the JSON object alone (what the task's valid-JSON metric accepts): do not search the text for braces.",
    "repeated": "two tickets in a row are not one JSON object: a repeated answer is not a ticket.",
    "list": "a JSON list is not a ticket: only a JSON object (a dict) can earn a reward.",
    "stuffed": "a field that lists several values is not the right value: compare each field's value with ==, not with `in` or a substring search.",
    "partial": "give partial credit — the share of the reference's fields that are right — so that the samples of a group differ in "
               "reward even when none is perfect (otherwise most advantages are 0).",
}


def _ticket(**fields) -> str:
    import json

    return json.dumps({**json.loads(_TICKET), **fields})


def _reward_practice() -> dict:
    answers = [  # (kind, answer, reward)
        ("right", _TICKET, 1.0),
        ("reordered", '{ "product": "lumi lamp", "intent": "damaged_item", "order_id": "762104" }', 1.0),
        ("prose", "I am sorry to hear that your lamp arrived broken. " * 12, 0.0),
        ("wrong_fields", '{"intent":"order_status","order_id":"11111","product":null}', 0.0),
        ("empty", "{}", 0.0),
        ("wrapped", "Sure! Here is the ticket: " + _TICKET, 0.0),
        ("repeated", _TICKET + " " + _TICKET, 0.0),
        ("list", "[" + _TICKET + "]", 0.0),
        ("stuffed", '{"intent":"damaged_item order_status","order_id":"762104 11111","product":"lumi lamp, vase"}', 0.0),
        ("partial", _ticket(order_id="11111", product="vase"), 1 / 3),
        ("partial", _ticket(product="vase"), 2 / 3),
    ]
    return {"inputs": {"reference": _TICKET, "answers": [a for _, a, _ in answers]},
            "expected": {"kinds": [k for k, _, _ in answers], "rewards": [r for _, _, r in answers]}}


@graded_check(_reward_practice)
def check_ex12_task4(inputs, ticket_reward) -> dict:
    """``ticket_reward(completion, reference)``: a reward in [0, 1] that can only be earned by getting the ticket's fields right."""
    return {"outputs": [run_learner(ticket_reward, answer, inputs["reference"]) for answer in inputs["answers"]]}


@check_ex12_task4.judge
def _judge_task4(data: dict, case: Case) -> str:
    forbid_source_helpers(case, "ticket_reward", {"json_field_scores": "ftcourse.metrics.json_field_scores",
                                                  "json_metrics": "ftcourse.metrics.json_metrics"},
                          "parse the answer and compare its fields yourself; that is the exercise.")
    answers = case.inputs["answers"]
    outputs = outputs_of(data, len(answers), "ticket_reward", "define def ticket_reward(completion, reference): ...")
    for answer, kind, want, (got, _) in zip(answers, case.expected["kinds"], case.expected["rewards"], outputs):
        shown = f"{answer[:60]!r}{'…' if len(answer) > 60 else ''}"
        expect(isinstance(got, (int, float)) and not isinstance(got, bool) and 0 <= got <= 1,
               f"ticket_reward returned {got!r} for the {case.kind} answer {shown}.", "return a float between 0 and 1.")
        expect(abs(got - want) < 1e-6, f"ticket_reward gives {got:.3f} to the {case.kind} answer {shown}.", _REWARD_HINTS[kind])
    return f"{len(answers)} {case.kind} answers: only right fields earn reward, with partial credit; valid JSON alone, prose, length and repeats earn 0."


#: The diagnoses of task 5, and what each looks like in the logs (a wrong answer's hint names the learner's choice, never the right one).
EX12_DIAGNOSES = {
    "learning_rate_too_low": "a loss that stays at log 2 ≈ 0.693 with rewards near 0: the policy never leaves the reference",
    "both_rewards_fall": "a growing margin while rewards/chosen AND rewards/rejected fall far below 0, and the task metric drops",
    "cold_start": "reward 0 and reward_std 0 in every group from the first step: no sample is ever rewarded, so no advantage and no gradient",
    "reward_hacking": "the reward climbing to its maximum while the task's own metric does not follow",
}

#: The practice runs of task 5 (illustrative numbers, written for the exercise): each log as [first step, last step].
EX12_RUNS = {
    "run_a": {"trainer": "GRPO", "setup": "from lesson 02's SFT model, reward 1 for any answer that parses as a JSON object",
              "logs": {"reward": [0.81, 1.0], "reward_std": [0.31, 0.0], "frac_reward_zero_std": [0.05, 1.0], "grad_norm": [0.42, 0.0]},
              "held_out_all_fields": [0.36, 0.28]},
    "run_b": {"trainer": "DPO", "setup": "from the SFT model, 40 steps",
              "logs": {"loss": [0.6931, 0.6931], "rewards/chosen": [0.0, -0.0004], "rewards/rejected": [0.0, -0.0007],
                       "rewards/margins": [0.0, 0.0003], "rewards/accuracies": [0.5, 0.62]},
              "held_out_all_fields": [0.36, 0.36]},
    "run_c": {"trainer": "GRPO", "setup": "from the base model (no SFT), the lesson's partial-credit reward",
              "logs": {"reward": [0.0, 0.0], "reward_std": [0.0, 0.0], "frac_reward_zero_std": [1.0, 1.0], "grad_norm": [0.0, 0.0]},
              "held_out_all_fields": [0.0, 0.0]},
    "run_d": {"trainer": "DPO", "setup": "from the SFT model, 300 steps",
              "logs": {"loss": [0.6931, 0.0009], "rewards/chosen": [0.0, -6.1], "rewards/rejected": [0.0, -15.5],
                       "rewards/margins": [0.0, 9.4], "rewards/accuracies": [0.5, 1.0]},
              "held_out_all_fields": [0.36, 0.12]},
}


@graded_check({"inputs": {"runs": EX12_RUNS}, "expected": {"diagnoses": {"run_a": "reward_hacking", "run_b": "learning_rate_too_low",
                                                                         "run_c": "cold_start", "run_d": "both_rewards_fall"}}})
def check_ex12_task5(inputs, diagnose) -> dict:
    """``diagnose(run) -> str``: one of :data:`EX12_DIAGNOSES` for a run's logs."""
    return {"outputs": {name: run_learner(diagnose, copy.deepcopy(run)) for name, run in inputs["runs"].items()}}


@check_ex12_task5.judge
def _judge_task5(data: dict, case: Case) -> str:
    runs, outputs = case.inputs["runs"], data.get("outputs")
    expect(isinstance(outputs, dict) and set(outputs) == set(runs), "no output of `diagnose` was collected.",
           "define def diagnose(run): ... and run the task's cell.")
    for name, want in case.expected["diagnoses"].items():
        got, _ = output_of(outputs[name], "diagnose", "define def diagnose(run): ... returning one diagnosis.")
        expect(got in EX12_DIAGNOSES, f"diagnose gives {got!r} for the {case.kind} run {name}.", f"return one of {', '.join(EX12_DIAGNOSES)}.")
        expect(got == want, f"diagnose gives {got!r} for the {case.kind} run {name} ({runs[name]['trainer']}).",
               f"`{got}` would show {EX12_DIAGNOSES[got]}. Read that run's logs again: which numbers does your rule look at, and "
               "does it tell this run apart from the others of its trainer? Decide from where the logs end, not only where they start.")
    return f"{len(runs)} {case.kind} runs diagnosed from their logs: a hacked reward, a policy that never moves, a cold start, likelihood displacement."
