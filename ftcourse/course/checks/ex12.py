"""Checks of exercise 12, preference tuning and RL (``solutions/ex12_preference_and_rl.ipynb``).

Each check runs the learner's function on hidden cases and names the tempting wrong answer it matches (a mean instead
of a sum, the log-ratio's sign swapped, the reference forgotten, advantages normalised over the batch, a reward that
pays for valid JSON or length) without printing the expected value.
"""

from __future__ import annotations

import json
import math

from ftcourse.course.checks.core import call_learner, expect, self_check

__all__ = ["check_ex12_task1", "check_ex12_task2", "check_ex12_task3", "check_ex12_task4", "check_ex12_task5"]


def _close(got, want, tol: float = 1e-4) -> bool:
    import torch

    got = torch.as_tensor(got, dtype=torch.float64)
    want = torch.as_tensor(want, dtype=torch.float64)
    return got.shape == want.shape and bool(torch.allclose(got, want, atol=tol, rtol=tol, equal_nan=False))


def _ex12_logps_case():
    """Hidden logits, token ids and answer masks: three right-padded rows with prompts and answers of different lengths."""
    import torch

    gen = torch.Generator().manual_seed(1207)
    logits = torch.randn(3, 11, 40, generator=gen) * 3
    input_ids = torch.randint(0, 40, (3, 11), generator=gen)
    mask = torch.zeros(3, 11, dtype=torch.long)
    for row, (start, end) in enumerate(((4, 9), (6, 8), (2, 11))):  # answer positions [start, end); padding after end
        mask[row, start:end] = 1
    return logits, input_ids, mask


def _ex12_logps_variants(logits, input_ids, mask) -> dict[str, object]:
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
        "probabilities": (shifted.exp() * answer).sum(-1),
    }


_EX12_LOGPS_HINTS = {
    "mean": "that is the mean over the answer's tokens (ORPO's choice): log π(y|x) of a whole answer is the SUM of its tokens' "
            "log-probabilities — the log of the product of their probabilities.",
    "unshifted": "the logits at position t predict token t+1: compare logits[:, :-1] with input_ids[:, 1:].",
    "mask_unshifted": "shift the completion mask with the targets: the mask of a predicted token is completion_mask[:, 1:].",
    "every_token": "only the answer's tokens count: multiply by the completion mask before summing (the prompt and the padding are not the answer).",
    "probabilities": "add log-probabilities (log_softmax), not probabilities.",
}


@self_check
def check_ex12_task1(answer_logps) -> str:
    """``answer_logps(logits, input_ids, completion_mask)``: per row, the summed log-probability of the answer tokens."""
    expect(callable(answer_logps), "`answer_logps` is not a function.", "define def answer_logps(logits, input_ids, completion_mask): ...")
    logits, input_ids, mask = _ex12_logps_case()
    got = call_learner(answer_logps, logits.clone(), input_ids.clone(), mask.clone(), name="answer_logps")
    variants = _ex12_logps_variants(logits, input_ids, mask)
    expect(hasattr(got, "shape") and tuple(got.shape) == (3,), f"answer_logps returned {type(got).__name__} "
           f"{tuple(getattr(got, 'shape', ()))} for a batch of 3 rows.", "return one number per row: a tensor of shape (batch,).")
    if not _close(got, variants["sum"]):
        for name, hint in _EX12_LOGPS_HINTS.items():
            expect(not _close(got, variants[name]), "answer_logps differs from log π(answer | prompt) on a hidden batch.", hint)
        expect(False, "answer_logps differs from log π(answer | prompt) on a hidden batch of 3 right-padded rows.",
               "log_softmax the logits at positions 0..T-2, pick the log-probability of each next token (input_ids[:, 1:]), "
               "multiply by completion_mask[:, 1:] and sum over the positions.")
    return "the summed log-probability of each answer, on a hidden right-padded batch (shifted, masked, not averaged)."


def _ex12_dpo_case():
    import torch

    gen = torch.Generator().manual_seed(20261207)
    ref_c, ref_r = -torch.rand(6, generator=gen) * 40 - 5, -torch.rand(6, generator=gen) * 40 - 5
    pol_c, pol_r = ref_c + torch.randn(6, generator=gen) * 4, ref_r + torch.randn(6, generator=gen) * 4 - 2
    return pol_c, pol_r, ref_c, ref_r


def _ex12_dpo_variants(pol_c, pol_r, ref_c, ref_r, beta) -> dict[str, object]:
    import torch.nn.functional as F

    margin = (pol_c - ref_c) - (pol_r - ref_r)
    return {
        "right": -F.logsigmoid(beta * margin).mean(),
        "swapped": -F.logsigmoid(-beta * margin).mean(),
        "no_reference": -F.logsigmoid(beta * (pol_c - pol_r)).mean(),
        "chosen_likelihood": -pol_c.mean(),
        "scaled_chosen_likelihood": -(beta * pol_c).mean(),
        "no_beta": -F.logsigmoid(margin).mean(),
        "summed": -F.logsigmoid(beta * margin).sum(),
    }


_EX12_DPO_HINTS = {
    "swapped": "the log-ratio's sign is swapped: the loss must FALL when the chosen answer gains on the rejected one — "
               "the margin is (chosen's log-ratio) - (rejected's log-ratio), inside -log σ(β · margin).",
    "no_reference": "the reference is missing: DPO's reward is the log-RATIO log π_θ(y) - log π_ref(y), so subtract ref_chosen and "
                    "ref_rejected. Without it the loss rewards what the reference already preferred.",
    "chosen_likelihood": "that is the plain likelihood of the chosen answer (SFT's loss): DPO compares the two answers' log-ratios "
                         "against the reference, inside -log σ(·).",
    "scaled_chosen_likelihood": "that is the plain likelihood of the chosen answer, scaled: DPO compares the two answers' log-ratios "
                                "against the reference, inside -log σ(·).",
    "no_beta": "multiply the margin by beta before the log-sigmoid: β sets how strongly the policy may move away from the reference.",
    "summed": "average over the pairs (mean), as TRL does, so the loss does not grow with the batch size.",
}


@self_check
def check_ex12_task2(dpo_loss) -> str:
    """``dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)``: DPO's loss, averaged over the pairs."""
    import torch

    expect(callable(dpo_loss), "`dpo_loss` is not a function.",
           "define def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta): ...")
    for beta in (0.1, 0.5):
        case = _ex12_dpo_case()
        got = call_learner(dpo_loss, *(t.clone() for t in case), beta, name="dpo_loss")
        variants = _ex12_dpo_variants(*case, beta)
        expect(not hasattr(got, "shape") or got.numel() == 1, "dpo_loss returned one value per pair.",
               "average the per-pair losses into one number (.mean()).")
        if not _close(got, variants["right"]):
            for name, hint in _EX12_DPO_HINTS.items():
                expect(not _close(got, variants[name]), f"dpo_loss is wrong on hidden pairs with beta={beta}.", hint)
            expect(False, f"dpo_loss is wrong on hidden pairs with beta={beta}.",
                   "margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected); loss = -logsigmoid(beta * margin).mean().")
    same = torch.tensor([-12.0, -30.5, -7.25])
    start = call_learner(dpo_loss, same, same - 3, same, same - 3, 0.1, name="dpo_loss")
    expect(_close(start, math.log(2)), "when the policy equals the reference, your loss is not log 2.",
           "with policy = reference every log-ratio is 0, so the loss is -log σ(0) = log 2 whatever the answers' likelihoods.")
    return "DPO's loss on hidden pairs for two betas, and log 2 where the policy is the reference."


def _ex12_reward_case():
    import torch

    # three prompts x 4 samples: partial credit, all equal (no signal), one success
    return torch.tensor([1.0, 2 / 3, 1 / 3, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0]), 4


def _ex12_advantage_variants(rewards, size) -> dict[str, object]:
    grouped = rewards.view(-1, size)
    centred = grouped - grouped.mean(1, keepdim=True)
    interleaved = reshaped = rewards.view(size, -1)
    return {
        "right": (centred / (grouped.std(1, keepdim=True) + 1e-4)).flatten(),
        "batch": (rewards - rewards.mean()) / (rewards.std() + 1e-4),
        "population_std": (centred / (grouped.std(1, keepdim=True, unbiased=False) + 1e-4)).flatten(),
        "no_scaling": centred.flatten(),
        "interleaved": ((interleaved - interleaved.mean(0, keepdim=True)) / (interleaved.std(0, keepdim=True) + 1e-4)).flatten(),
        "reshaped": ((reshaped - reshaped.mean(1, keepdim=True)) / (reshaped.std(1, keepdim=True) + 1e-4)).flatten(),
    }


_EX12_ADVANTAGE_HINTS = {
    "batch": "normalise within each GROUP (the samples of one prompt), not across the whole batch: a hard prompt's best answer "
             "must count as good even if an easy prompt's answers all scored higher.",
    "population_std": "TRL divides by the sample standard deviation (Bessel's correction, torch's default unbiased=True).",
    "no_scaling": "divide by the group's standard deviation + 1e-4 (TRL's default scale_rewards='group'); not dividing is "
                  "Dr. GRPO's variant (scale_rewards='none').",
    "interleaved": "the samples of one prompt are consecutive: rewards.view(-1, group_size) puts each group in one row.",
    "reshaped": "the samples of one prompt are consecutive: rewards.view(-1, group_size) puts each group in one row "
                "(view(group_size, -1) cuts the batch into the wrong rows).",
}


@self_check
def check_ex12_task3(group_advantages) -> str:
    """``group_advantages(rewards, group_size)``: GRPO's advantages, (r - group mean) / (group std + 1e-4)."""
    import torch

    expect(callable(group_advantages), "`group_advantages` is not a function.", "define def group_advantages(rewards, group_size): ...")
    rewards, size = _ex12_reward_case()
    got = call_learner(group_advantages, rewards.clone(), size, name="group_advantages")
    got = torch.as_tensor(got, dtype=torch.float64)
    expect(got.shape == rewards.shape, f"group_advantages returned shape {tuple(got.shape)} for {len(rewards)} rewards.",
           "return one advantage per reward, in the same order (flatten the groups again).")
    expect(not bool(torch.isnan(got).any()), "a group whose rewards are all equal gives NaN advantages.",
           "add 1e-4 to the standard deviation: a group with equal rewards then gets advantages 0, not 0/0.")
    variants = _ex12_advantage_variants(rewards, size)
    if not _close(got, variants["right"]):
        for name, hint in _EX12_ADVANTAGE_HINTS.items():
            expect(not _close(got, variants[name]), "group_advantages differs from GRPO's on a hidden batch of 3 groups.", hint)
        expect(False, "group_advantages differs from GRPO's on a hidden batch of 3 groups.",
               "reshape to (groups, group_size), subtract each row's mean, divide by each row's std (+ 1e-4), flatten.")
    return "GRPO's group-normalised advantages on a hidden batch: zero for a group whose samples all scored the same."


_EX12_REFERENCE = '{"intent":"damaged_item","order_id":"762104","product":"lumi lamp"}'


def _ticket(**fields) -> str:
    return json.dumps({"intent": "damaged_item", "order_id": "762104", "product": "lumi lamp", **fields})


#: (completion, what it must get, the hint when it does not); "full" = 1, "zero" = 0.
_EX12_REWARD_CASES = (
    (_EX12_REFERENCE, "full", "the right ticket must earn the full reward, 1.0."),
    ('{ "product": "lumi lamp", "intent": "damaged_item", "order_id": "762104" }', "full",
     "parse the JSON (json.loads) and compare fields: key order and spaces do not change a ticket."),
    ("I am sorry to hear that your lamp arrived broken. " * 12, "zero",
     "prose is not a ticket, and the reward must not grow with the answer's length: give 0 to anything that is not a JSON object."),
    ('{"intent":"order_status","order_id":"11111","product":null}', "zero",
     "valid JSON alone must earn nothing: this ticket has every field wrong. Pay for fields that match the reference, "
     "or the model learns to write any JSON."),
    ("{}", "zero", "an empty object has no field right: it must earn 0."),
    ("Sure! Here is the ticket: " + _EX12_REFERENCE, "zero",
     "the answer must be the JSON object alone (what the task's valid-JSON metric accepts): do not search the text for braces."),
    (_EX12_REFERENCE + " " + _EX12_REFERENCE, "zero", "two tickets in a row are not one JSON object: a repeated answer must earn 0."),
    ("[" + _EX12_REFERENCE + "]", "zero", "a JSON list is not a ticket: only a JSON object (a dict) can earn a reward."),
)


@self_check
def check_ex12_task4(ticket_reward) -> str:
    """``ticket_reward(completion, reference)``: a reward in [0, 1] that can only be earned by getting the ticket's fields right."""
    expect(callable(ticket_reward), "`ticket_reward` is not a function.", "define def ticket_reward(completion, reference): ...")
    for completion, want, hint in _EX12_REWARD_CASES:
        got = call_learner(ticket_reward, completion, _EX12_REFERENCE, name="ticket_reward")
        expect(isinstance(got, (int, float)) and 0 <= got <= 1, f"ticket_reward returned {got!r} for a hidden answer.",
               "return a float between 0 and 1.")
        expect(abs(got - (1.0 if want == "full" else 0.0)) < 1e-9, f"ticket_reward gives {got:.3f} to the hidden answer "
               f"{completion[:60]!r}{'…' if len(completion) > 60 else ''}.", hint)
    partial = [ticket_reward(_ticket(order_id="11111", product="vase"), _EX12_REFERENCE),
               ticket_reward(_ticket(product="vase"), _EX12_REFERENCE)]
    expect(0 < partial[0] < partial[1] < 1, "a ticket with one field right and one with two right do not get rising partial "
           "rewards between 0 and 1.", "give partial credit — the share of the reference's fields that are right — so that "
           "the samples of a group differ in reward even when none is perfect (otherwise most advantages are 0).")
    return f"{len(_EX12_REWARD_CASES) + 2} hidden answers: only right fields earn reward; valid JSON alone, prose, length and repeats earn 0."


#: What each diagnosis looks like in the logs (the hint names the learner's choice, never the right one).
_EX12_SIGNS = {
    "learning_rate_too_low": "a loss that stays at log 2 ≈ 0.693 with rewards of exactly 0: the policy never leaves the reference",
    "both_rewards_fall": "a growing margin while rewards/chosen AND rewards/rejected fall far below 0, and the task metric drops",
    "cold_start": "reward 0 and reward_std 0 in every group from the first step: no sample is ever rewarded, so no advantage and no gradient",
    "reward_hacking": "the reward climbing to its maximum while the task's own metric does not follow",
}
_EX12_RUNS = {"run_a": "reward_hacking", "run_b": "learning_rate_too_low", "run_c": "cold_start", "run_d": "both_rewards_fall"}


@self_check
def check_ex12_task5(diagnoses) -> str:
    """``diagnoses``: for each run key, one of the diagnoses in the task."""
    expect(isinstance(diagnoses, dict) and set(diagnoses) == set(_EX12_RUNS),
           f"`diagnoses` must be a dict with the keys {sorted(_EX12_RUNS)}.", "give one diagnosis per run.")
    for run, want in _EX12_RUNS.items():
        got = diagnoses[run]
        expect(got in _EX12_SIGNS, f"diagnoses[{run!r}] is {got!r}.", f"answer one of {', '.join(_EX12_SIGNS)}.")
        expect(got == want, f"diagnoses[{run!r}] does not match the logs of {run}.",
               f"`{got}` would show {_EX12_SIGNS[got]}. Read {run}'s numbers again: which run shows that, and what does {run} show?")
    return "four runs read from their logs: a hacked reward, a learning rate that never moves, a cold start, likelihood displacement."
