"""Policy-gradient pieces for reading group-relative RL as contrastive learning (chapter 10).

A policy answers each prompt ``G`` times; each answer gets a scalar reward. Group-relative policy
optimisation (GRPO, Shao et al. 2024) needs no value network: it normalises the rewards within each
prompt's group, and the normalised reward is the answer's **advantage**
(:func:`group_advantages`). On the first step of an update (probability ratio 1, so the clipping of
the PPO-style objective is inactive, and no KL term) its gradient is that of
:func:`policy_gradient_loss`, ``-mean(A * log pi(answer))``.

With ``G = 2`` (Wu et al. 2025, "It Takes Two: Your GRPO Is Secretly DPO") the advantages are
``(+1, -1)`` whenever the two rewards differ (``0`` when they are equal), so each prompt's gradient
is ``-(grad log pi(better) - grad log pi(worse)) / 2``: raise the better answer, lower the worse one.
That is the direction of the pairwise preference loss of DPO (Rafailov et al. 2023,
:func:`preference_loss`), whose gradient is the same difference weighted by
``beta * sigmoid(-margin)`` instead of the constant ``1/2``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def group_advantages(rewards: torch.Tensor, eps: float = 1e-6, unbiased: bool = False) -> torch.Tensor:
    """Group-normalised advantages ``(r - mean(r)) / (std(r) + eps)`` within each row.

    Args:
        rewards: (prompts, G) rewards, one row per prompt, ``G >= 2`` answers each.
        eps: added to the standard deviation, so that a group of equal rewards gets 0, not 0/0.
        unbiased: standard deviation with Bessel's correction (``G - 1``; ``torch.std``'s default, used
            by some implementations) instead of the population one (``G``). For ``G = 2`` and different
            rewards the advantages are then ``+-1/sqrt(2)`` instead of ``+-1``: same signs, another scale.

    Returns:
        (prompts, G) advantages of the rewards' dtype.
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be (prompts, G) with G >= 2 answers per prompt (one answer has no group to "
                         f"compare with), got shape {tuple(rewards.shape)}.")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}.")
    rewards = rewards if rewards.is_floating_point() else rewards.double()
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True, correction=1 if unbiased else 0)
    if eps == 0:  # equal rewards: 0 / 0 -> 0
        return torch.where(std > 0, centred / std.clamp_min(torch.finfo(rewards.dtype).tiny), torch.zeros_like(centred))
    return centred / (std + eps)


def policy_gradient_loss(logprobs: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """``-mean(advantages * logprobs)``: its gradient is the on-policy policy gradient of the answers.

    Args:
        logprobs: (prompts, G) log-probabilities of the sampled answers under the policy (with gradient;
            for a sequence, the sum or mean of its tokens' log-probabilities).
        advantages: (prompts, G), treated as constants (detached).

    Returns:
        A scalar: the mean over prompts and answers (GRPO's ``1/G`` sum per prompt, averaged over prompts).
    """
    if logprobs.shape != advantages.shape or logprobs.dim() != 2:
        raise ValueError(f"logprobs and advantages must both be (prompts, G); got {tuple(logprobs.shape)} and "
                         f"{tuple(advantages.shape)}.")
    return -(advantages.detach().to(logprobs.dtype) * logprobs).mean()


def preference_loss(chosen_logratio: torch.Tensor, rejected_logratio: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """The pairwise preference (DPO) loss ``-mean(log sigmoid(beta * (chosen - rejected)))``.

    Args:
        chosen_logratio: (n,) ``log pi(y+) - log pi_ref(y+)`` of the preferred answers.
        rejected_logratio: (n,) the same for the dispreferred answers.
        beta: > 0, the strength of the implicit KL constraint (DPO's beta).

    Returns:
        A scalar. Its gradient with respect to ``chosen_logratio[i]`` is
        ``-beta * sigmoid(-beta * margin_i) / n`` (the opposite for the rejected one).
    """
    if chosen_logratio.shape != rejected_logratio.shape or chosen_logratio.dim() != 1:
        raise ValueError(f"chosen_logratio and rejected_logratio must both be (n,); got {tuple(chosen_logratio.shape)} "
                         f"and {tuple(rejected_logratio.shape)}.")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}.")
    return -F.logsigmoid(beta * (chosen_logratio - rejected_logratio)).mean()


__all__ = ["group_advantages", "policy_gradient_loss", "preference_loss"]
