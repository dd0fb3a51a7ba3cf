"""Planted wrong answers of exercise 12: each tempting mistake fails its check with a hint that says why
(the rules: ``tests/test_wrong_answers.py``'s docstring; ``tests/planted.py`` runs a check on both cases)."""

from __future__ import annotations

import json

import pytest
import torch

from ftcourse.course import checks
from ftcourse.course.checks import CheckFailed
from ftcourse.tools.grading import grading_case
from tests.planted import fails, passes

# ---------------------------------------------------------------- ex12


def _ex12_answer_logps(logits, input_ids, mask):
    token = logits[:, :-1].float().log_softmax(-1).gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (token * mask[:, 1:]).sum(-1)


def _ex12_token_logps(logits, input_ids):
    return logits[:, :-1].log_softmax(-1).gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)


def test_ex12_task1_a_mean_no_shift_an_unshifted_mask_every_token_probabilities_and_one_number_fail():
    assert "summed log-probability" in passes(checks.check_ex12_task1, _ex12_answer_logps)
    fails(checks.check_ex12_task1, lambda lg, ids, m: _ex12_answer_logps(lg, ids, m) / m[:, 1:].sum(-1), hint="the SUM of its tokens")
    fails(checks.check_ex12_task1, lambda lg, ids, m: (lg.log_softmax(-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1) * m).sum(-1),
           hint="predict token t+1")
    fails(checks.check_ex12_task1, lambda lg, ids, m: (_ex12_token_logps(lg, ids) * m[:, :-1]).sum(-1), hint="shift the completion mask")
    fails(checks.check_ex12_task1, lambda lg, ids, m: _ex12_token_logps(lg, ids).sum(-1), hint="only the answer's tokens count")
    upto_answer_end = lambda m: (m.flip(-1).cumsum(-1).flip(-1) > 0).long()  # noqa: E731 (the prompt and the answer, not the padding)
    fails(checks.check_ex12_task1, lambda lg, ids, m: _ex12_answer_logps(lg, ids, upto_answer_end(m)), hint="the prompt's tokens are not the answer")
    fails(checks.check_ex12_task1, lambda lg, ids, m: (_ex12_token_logps(lg, ids).exp() * m[:, 1:]).sum(-1), hint="not probabilities")
    fails(checks.check_ex12_task1, lambda lg, ids, m: _ex12_answer_logps(lg, ids, m).sum(), hint="one number per row")


def _ex12_dpo(pc, pr, rc, rr, beta):
    return -torch.nn.functional.logsigmoid(beta * ((pc - rc.detach()) - (pr - rr.detach()))).mean()


def test_ex12_task2_a_swapped_sign_no_reference_the_chosen_likelihood_beta_on_one_side_a_sum_and_a_live_reference_fail():
    logsigmoid = torch.nn.functional.logsigmoid
    assert "log 2 where the policy is the reference" in passes(checks.check_ex12_task2, _ex12_dpo)
    passes(checks.check_ex12_task2, lambda pc, pr, rc, rr, b: -logsigmoid(b * ((pc - pr) - (rc - rr).detach())).mean() * (1 + 1e-6))
    fails(checks.check_ex12_task2, lambda pc, pr, rc, rr, b: -logsigmoid(b * ((pr - rr) - (pc - rc))).mean(), hint="sign is swapped")
    fails(checks.check_ex12_task2, lambda pc, pr, rc, rr, b: -logsigmoid(b * (pc - pr)).mean(), hint="the reference is missing")
    fails(checks.check_ex12_task2, lambda pc, pr, rc, rr, b: -pc.mean(), hint="plain likelihood of the chosen answer")
    fails(checks.check_ex12_task2, lambda pc, pr, rc, rr, b: -logsigmoid((pc - rc) - (pr - rr)).mean(), hint="multiply the margin by beta")
    fails(checks.check_ex12_task2, lambda pc, pr, rc, rr, b: -logsigmoid(b * (pc - rc) - (pr - rr)).mean(), hint="both log-ratios")
    fails(checks.check_ex12_task2, lambda pc, pr, rc, rr, b: -logsigmoid(b * ((pc - rc) - (pr - rr))).sum(), hint="average over the pairs")
    fails(checks.check_ex12_task2, lambda pc, pr, rc, rr, b: -logsigmoid(b * ((pc - rc) - (pr - rr))), hint="one value per pair")
    fails(checks.check_ex12_task2, lambda pc, pr, rc, rr, b: -logsigmoid(b * ((pc - rc) - (pr - rr))).mean(), hint="detach them")
    fails(checks.check_ex12_task2, lambda pc, pr, rc, rr, b: _ex12_dpo(pc, pr, rc, rr, b).item(), hint="not a tensor that gradients flow through")
    fails(checks.check_ex12_task2, lambda pc, pr, rc, rr, b: _ex12_dpo(pc.detach(), pr.detach(), rc, rr, b),
          hint="not a tensor that gradients flow through")


def _ex12_groups(rewards, size, std=lambda g: g.std(1, keepdim=True), eps=1e-4):
    g = rewards.view(-1, size)
    return ((g - g.mean(1, keepdim=True)) / (std(g) + eps)).flatten()


def test_ex12_task3_whole_batch_population_std_no_epsilon_no_scaling_and_interleaved_groups_fail():
    assert "zero for a group" in passes(checks.check_ex12_task3, _ex12_groups)
    fails(checks.check_ex12_task3, lambda r, size: (r - r.mean()) / (r.std() + 1e-4), hint="within each GROUP")
    fails(checks.check_ex12_task3, lambda r, size: _ex12_groups(r, size, std=lambda g: g.std(1, keepdim=True, unbiased=False)), hint="Bessel")
    fails(checks.check_ex12_task3, lambda r, size: _ex12_groups(r, size, eps=0.0), hint="add 1e-4")
    fails(checks.check_ex12_task3, lambda r, size: _ex12_groups(r, size, std=lambda g: torch.zeros(1), eps=1.0), hint="Dr. GRPO")
    fails(checks.check_ex12_task3, lambda r, size: _ex12_groups(r, r.numel() // size), hint="consecutive")  # view(size, -1)
    fails(checks.check_ex12_task3, lambda r, size: _ex12_groups(r, size)[: size], hint="one advantage per reward")


def _ex12_fields_right(completion, reference, same=lambda got, want: got == want):
    try:
        answer = json.loads(completion)
    except json.JSONDecodeError:
        return 0.0
    expected = json.loads(reference)
    return sum(same(answer.get(k), v) for k, v in expected.items()) / len(expected) if isinstance(answer, dict) else 0.0


def test_ex12_task4_rewards_for_length_valid_json_strings_braces_in_prose_and_all_or_nothing_fail():
    import re

    def parses(text):
        try:
            return isinstance(json.loads(text), dict)
        except json.JSONDecodeError:
            return False

    def braces(completion, reference):
        found = re.search(r"\{.*?\}", completion)
        return _ex12_fields_right(found.group(0), reference) if found else 0.0

    assert "only right fields earn reward" in passes(checks.check_ex12_task4, _ex12_fields_right)
    fails(checks.check_ex12_task4, lambda c, r: min(1.0, len(c) / len(r)), hint="must not grow with the answer's length")
    fails(checks.check_ex12_task4, lambda c, r: float(parses(c)), hint="valid JSON alone must earn nothing")
    fails(checks.check_ex12_task4, lambda c, r: float(c == r), hint="key order and spaces")
    fails(checks.check_ex12_task4, braces, hint="do not search the text for braces")
    fails(checks.check_ex12_task4, lambda c, r: float(_ex12_fields_right(c, r) == 1.0), hint="give partial credit")
    fails(checks.check_ex12_task4, lambda c, r: 3 * _ex12_fields_right(c, r), hint="between 0 and 1")

    contains = lambda c, r: _ex12_fields_right(c, r, same=lambda got, want: str(want) in str(got))  # noqa: E731
    fails(checks.check_ex12_task4, contains, hint="not with `in` or a substring search")
    fails(checks.check_ex12_task4, lambda c, r: 1.0 - _ex12_fields_right(c, r) if "{" not in c else _ex12_fields_right(c, r),
          hint="only a JSON object can earn reward")


def _ex12_diagnose(run):
    logs = run["logs"]
    if run["trainer"] == "GRPO":
        return "cold_start" if max(logs["reward"]) == 0 else "reward_hacking"
    return "learning_rate_too_low" if abs(logs["loss"][-1] - 0.6931) < 0.01 else "both_rewards_fall"


def test_ex12_task5_rules_that_read_one_number_or_the_start_fail_and_a_lookup_of_the_practice_runs_fails_the_grader():
    assert "diagnosed from their logs" in passes(checks.check_ex12_task5, _ex12_diagnose)

    def by_trainer(run, grpo, dpo):
        return grpo(run["logs"]) if run["trainer"] == "GRPO" else dpo(run["logs"])

    message = fails(checks.check_ex12_task5, lambda run: by_trainer(run, lambda g: "cold_start" if g["reward_std"][-1] == 0 else "reward_hacking",
                                                                     lambda d: _ex12_diagnose(run)), hint="`cold_start` would show")
    assert "reward_hacking" not in message.split("Hint:")[1]  # the hint names the learner's choice, not the right one
    fails(checks.check_ex12_task5, lambda run: by_trainer(run, lambda g: _ex12_diagnose(run), lambda d: "both_rewards_fall"
                                                          if d["rewards/chosen"][-1] < 0 else "learning_rate_too_low"), hint="`both_rewards_fall` would show")
    fails(checks.check_ex12_task5, lambda run: by_trainer(run, lambda g: _ex12_diagnose(run), lambda d: "learning_rate_too_low"
                                                          if abs(d["loss"][0] - 0.6931) < 0.01 else "both_rewards_fall"), hint="`learning_rate_too_low` would show")
    fails(checks.check_ex12_task5, lambda run: by_trainer(run, lambda g: _ex12_diagnose(run), lambda d: "both_rewards_fall"
                                                          if d["rewards/margins"][-1] > 0 else "learning_rate_too_low"), hint="`both_rewards_fall` would show")
    fails(checks.check_ex12_task5, lambda run: "both_rewards_fall" if run["held_out_all_fields"][1] < run["held_out_all_fields"][0]
          else _ex12_diagnose(run), hint="`both_rewards_fall` would show")
    fails(checks.check_ex12_task5, lambda run: "bad luck", hint="return one of")
    memorised = {run["setup"]: want for run, want in zip(checks.EX12_RUNS.values(), checks.check_ex12_task5.practice["expected"]["diagnoses"].values())}
    assert checks.check_ex12_task5.verify(lambda run: memorised[run["setup"]])  # the practice runs learned by heart ...
    with pytest.raises(CheckFailed, match="raised KeyError"):  # ... fail the grader's runs
        checks.check_ex12_task5.verify_case(grading_case(checks.check_ex12_task5), lambda run: memorised[run["setup"]], hidden=True)
