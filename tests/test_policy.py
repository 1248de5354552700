"""cselab.policy: group-normalised advantages, the policy-gradient surrogate and the pairwise preference loss,
against hand computations (plain Python loops and closed forms)."""
from __future__ import annotations

import math

import pytest
import torch

from cselab.policy import group_advantages, policy_gradient_loss, preference_loss


def _advantages_by_hand(rows, eps, unbiased=False):
    out = []
    for row in rows:
        g = len(row)
        mean = sum(row) / g
        std = math.sqrt(sum((r - mean) ** 2 for r in row) / (g - 1 if unbiased else g))
        out.append([(r - mean) / (std + eps) for r in row])
    return out


def test_group_advantages_match_hand_computation():
    rows = [[1.0, 0.0, 0.5, 2.0], [3.0, 3.0, 3.0, 3.0], [-1.0, 4.0, 0.0, 0.0]]
    for eps in (1e-6, 0.1):
        for unbiased in (False, True):
            got = group_advantages(torch.tensor(rows, dtype=torch.float64), eps=eps, unbiased=unbiased)
            torch.testing.assert_close(got, torch.tensor(_advantages_by_hand(rows, eps, unbiased), dtype=torch.float64))


def test_two_answers_give_plus_minus_one_or_zero():
    rewards = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.3, 0.3], [5.0, -2.0]], dtype=torch.float64)
    expected = torch.tensor([[1.0, -1.0], [-1.0, 1.0], [0.0, 0.0], [1.0, -1.0]], dtype=torch.float64)
    torch.testing.assert_close(group_advantages(rewards, eps=0.0), expected)  # whatever the reward gap
    torch.testing.assert_close(group_advantages(rewards, eps=0.0, unbiased=True), expected / math.sqrt(2))
    assert (group_advantages(rewards, eps=1e-6)[[0, 1, 3]].abs() < 1).all()  # eps shrinks them a little
    assert group_advantages(torch.tensor([[1, 0]])).dtype == torch.float64  # integer rewards are accepted


def test_group_advantages_bad_inputs():
    for bad in (torch.zeros(3), torch.zeros(3, 1), torch.zeros(2, 2, 2)):
        with pytest.raises(ValueError, match="G >= 2"):
            group_advantages(bad)
    with pytest.raises(ValueError, match="eps"):
        group_advantages(torch.zeros(2, 2), eps=-1.0)


def test_two_answer_gradient_on_a_softmax_policy_is_a_pairwise_update():
    """pi = softmax(theta); d log pi(a) / d theta = e_a - pi, so with advantages (+1, -1) the policy term cancels:
    the gradient of the loss is -(e_better - e_worse) / 2, for every theta."""
    g = torch.Generator().manual_seed(0)
    for better, worse in ((2, 5), (0, 1), (4, 4)):
        theta = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
        logp = torch.log_softmax(theta, dim=0)[[better, worse]].unsqueeze(0)  # (1 prompt, 2 answers)
        same = better == worse
        rewards = torch.tensor([[1.0, 1.0 if same else 0.0]], dtype=torch.float64)
        policy_gradient_loss(logp, group_advantages(rewards, eps=0.0)).backward()
        expected = torch.zeros(6, dtype=torch.float64)
        if not same:
            expected[better], expected[worse] = -0.5, 0.5
        torch.testing.assert_close(theta.grad, expected)


def test_policy_gradient_loss_is_a_mean_and_detaches_the_advantages():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -3.0]], requires_grad=True)
    adv = torch.tensor([[1.0, -1.0], [0.0, 0.0]], requires_grad=True)
    loss = policy_gradient_loss(logp, adv)
    assert loss.item() == pytest.approx(-(1 * -1.0 + -1 * -2.0) / 4)
    loss.backward()
    assert adv.grad is None
    torch.testing.assert_close(logp.grad, torch.tensor([[-0.25, 0.25], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="prompts, G"):
        policy_gradient_loss(torch.zeros(2, 2), torch.zeros(2, 3))


def test_preference_loss_and_its_gradient_by_hand():
    chosen = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    rejected = torch.tensor([0.1, 0.5, 2.0], dtype=torch.float64, requires_grad=True)
    beta = 0.5
    loss = preference_loss(chosen, rejected, beta)
    margins = [0.2, -1.5, 0.0]
    by_hand = sum(math.log1p(math.exp(-beta * m)) for m in margins) / 3  # -log sigmoid(x) = log(1 + e^-x)
    assert loss.item() == pytest.approx(by_hand)
    loss.backward()
    weights = [beta / (1 + math.exp(beta * m)) / 3 for m in margins]  # beta * sigmoid(-beta m) / n
    torch.testing.assert_close(chosen.grad, -torch.tensor(weights, dtype=torch.float64))
    torch.testing.assert_close(rejected.grad, torch.tensor(weights, dtype=torch.float64))
    with pytest.raises(ValueError, match="beta"):
        preference_loss(chosen, rejected, 0.0)
    with pytest.raises(ValueError, match=r"\(n,\)"):
        preference_loss(chosen[:2], rejected)
