"""Advantages, the empty-trace baseline and the loss on hand-made tensors, values and gradients."""

import math

import pytest
import torch

from nrt.objective import LossWeights, empty_trace_debias, group_advantages, nrt_loss, trace_term


def test_group_advantages_hand_values():
    rewards = torch.tensor([1.0, 2.0, 3.0, 5.0, 5.0, 5.0])
    adv, std = group_advantages(rewards, 3)
    # group 1: mean 2, unbiased std 1 -> (-1, 0, 1); group 2: all equal -> 0
    torch.testing.assert_close(adv, torch.tensor([-1.0, 0.0, 1.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(std, torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0]))


def test_group_advantages_ignore_rounding_noise_but_keep_tiny_real_spread():
    noisy = torch.tensor([0.1 + 0.2, 0.3, 0.3, 0.30000001])
    assert (group_advantages(noisy, 4)[0] == 0).all()
    tiny = torch.tensor([1e-30, 2e-30, 3e-30, 4e-30])  # VeriFree rewards of long answers: small but real
    assert group_advantages(tiny, 4)[0].abs().sum() > 1


def test_group_std_filter_zeroes_flat_groups():
    rewards = torch.tensor([0.10, 0.11, 0.5, 0.9])
    adv, _ = group_advantages(rewards, 2, std_min=0.05)
    assert adv[:2].abs().sum() == 0 and adv[2:].abs().sum() > 0


def test_single_trace_groups_have_no_advantage():
    adv, _ = group_advantages(torch.tensor([0.3, 0.7]), 1)
    assert (adv == 0).all()


def test_empty_trace_debias():
    out = empty_trace_debias(torch.tensor([0.2, 0.5, 0.9]), torch.tensor([0.4, 0.4, 0.4]))
    torch.testing.assert_close(out, torch.tensor([0.0, 0.1, 0.5]))


def test_trace_term_ratio_clip_and_mask():
    logp = torch.zeros(2, 3, requires_grad=True)
    # sample 0 (A = +1): ratios 1.1 (kept, weight 1.1), 2.0 (dropped: A>0 and rho>1.28), 0.5 (kept, weight 0.8)
    # sample 1 (A = -1): ratios 0.5 (dropped: A<0 and rho<0.8), 1.5 (kept, weight 1.28), padding
    old = -torch.log(torch.tensor([[1.1, 2.0, 0.5], [0.5, 1.5, 1.0]]))
    mask = torch.tensor([[True, True, True], [True, True, False]])
    total, clipped = trace_term(logp, old, mask, torch.tensor([1.0, -1.0]), 0.8, 1.28)
    total.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-1.1, 0.0, -0.8], [0.0, 1.28, 0.0]]))
    assert clipped.item() == 2  # of 5 tokens: the step divides the summed counts by its tokens


def test_nrt_loss_value_and_gradient_on_a_hand_made_batch():
    trace_logp = torch.log(torch.tensor([[0.5, 0.25], [0.5, 0.5]])).requires_grad_()
    answer_logp = torch.log(torch.tensor([[0.2, 0.9], [0.4, 1.0]])).requires_grad_()
    delim_logp = torch.log(torch.tensor([0.6, 0.3])).requires_grad_()
    end_logp = torch.log(torch.tensor([0.7, 0.8])).requires_grad_()
    trace_mask = torch.tensor([[True, True], [True, False]])
    answer_weights = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    adv = torch.tensor([0.5, -0.5])
    w = LossWeights(trace=1.0, answer=1.0, format=0.3)
    loss, parts = nrt_loss(trace_logp=trace_logp, old_trace_logp=trace_logp.detach(), trace_mask=trace_mask,
                           advantages=adv, delim_logp=delim_logp, delim_forced=torch.tensor([False, True]),
                           answer_logp=answer_logp, answer_weights=answer_weights, end_logp=end_logp,
                           weights=w, normalizer=4.0)
    pg = -0.5 * (math.log(0.5) + math.log(0.25)) + 0.5 * math.log(0.5)
    fmt = -math.log(0.3)
    ans = -(math.log(0.2) + math.log(0.9) + math.log(0.4)) - math.log(0.7) - math.log(0.8)
    assert loss.item() == pytest.approx((pg + 0.3 * fmt + ans) / 4, rel=1e-6)
    assert parts["loss_format"] == pytest.approx(0.3 * fmt / 4, rel=1e-6)
    loss.backward()
    torch.testing.assert_close(trace_logp.grad, torch.tensor([[-0.5, -0.5], [0.5, 0.0]]) / 4)
    torch.testing.assert_close(answer_logp.grad, -answer_weights / 4)
    torch.testing.assert_close(delim_logp.grad, torch.tensor([0.0, -0.3 / 4]))
    torch.testing.assert_close(end_logp.grad, torch.tensor([-0.25, -0.25]))


def test_derived_token_reward_weights_the_answer_term():
    answer_logp = torch.zeros(1, 2, requires_grad=True)
    weights = torch.tensor([[0.25, 2.0]])
    loss, _ = nrt_loss(trace_logp=torch.zeros(1, 1), old_trace_logp=torch.zeros(1, 1),
                       trace_mask=torch.zeros(1, 1, dtype=torch.bool), advantages=torch.zeros(1),
                       delim_logp=torch.zeros(1), delim_forced=torch.tensor([False]), answer_logp=answer_logp,
                       answer_weights=weights, end_logp=torch.zeros(1), weights=LossWeights(), normalizer=1.0)
    loss.backward()
    torch.testing.assert_close(answer_logp.grad, -weights)
