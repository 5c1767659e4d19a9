"""Aggregations against hand-computed values; token rewards against autograd; long answers stay finite."""

import math

import pytest
import torch

from nrt.rewards import AGGREGATIONS, aggregate

C = [0.5, 0.25, 0.8]  # answer-token probabilities with the trace
B = [0.9, 0.5, 0.1]  # ... and without it


def _inputs(c=C, b=B, pad=1):
    """One row of real tokens followed by ``pad`` masked positions holding junk values."""
    logp = torch.tensor([[math.log(x) for x in c] + [-3.0] * pad])
    base = torch.tensor([[math.log(x) for x in b] + [-7.0] * pad])
    mask = torch.tensor([[True] * len(c) + [False] * pad])
    return logp, mask, base


HAND = {
    "log_prob": math.log(0.5) + math.log(0.25) + math.log(0.8),
    "prob": 0.5 * 0.25 * 0.8,
    "arithmetic_mean": (0.5 + 0.25 + 0.8) / 3,
    "geometric_mean": (0.5 * 0.25 * 0.8) ** (1 / 3),
    "weighted_sum_inverse_prob": (0.5 / 0.9 + 0.25 / 0.5 + 0.8 / 0.1) / 3,
    "weighted_sum_log_prob": (0.5 * -math.log(0.9) + 0.25 * -math.log(0.5) + 0.8 * -math.log(0.1)) / 3,
}


def test_all_six_modes_exist_by_name():
    assert set(AGGREGATIONS) == set(HAND)


@pytest.mark.parametrize("mode", sorted(HAND))
def test_trace_reward_matches_hand_computed(mode):
    logp, mask, base = _inputs()
    reward, token_reward = aggregate(mode, logp, mask, base)
    assert reward.shape == (1,) and token_reward.shape == (1, 4)
    assert reward.item() == pytest.approx(HAND[mode], rel=1e-5)
    assert token_reward[0, 3].item() == 0.0  # masked position


def _plain_f(mode, c, b):
    """The aggregation written directly in probability space, for autograd."""
    t = c.numel()
    return {
        "log_prob": lambda: c.log().sum(),
        "prob": lambda: c.prod(),
        "arithmetic_mean": lambda: c.mean(),
        "geometric_mean": lambda: c.prod() ** (1 / t),
        "weighted_sum_inverse_prob": lambda: (c / b).sum() / t,
        "weighted_sum_log_prob": lambda: (c * -b.log()).sum() / t,
    }[mode]()


@pytest.mark.parametrize("mode", sorted(HAND))
def test_token_reward_is_c_times_df_dc(mode):
    c = torch.tensor(C, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(B, dtype=torch.float64)
    (grad,) = torch.autograd.grad(_plain_f(mode, c, b), c)
    logp, mask, base = _inputs()
    _, token_reward = aggregate(mode, logp, mask, base)
    torch.testing.assert_close(token_reward[0, :3].double(), (c * grad).detach(), rtol=1e-5, atol=1e-7)


def test_token_reward_hand_values_for_ws():
    logp, mask, base = _inputs()
    _, token_reward = aggregate("weighted_sum_log_prob", logp, mask, base)
    expected = [0.5 * -math.log(0.9) / 3, 0.25 * -math.log(0.5) / 3, 0.8 * -math.log(0.1) / 3, 0.0]
    torch.testing.assert_close(token_reward[0], torch.tensor(expected), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("mode", sorted(HAND))
def test_rows_with_different_lengths_are_independent(mode):
    logp = torch.log(torch.tensor([[0.5, 0.25, 0.8], [0.6, 0.6, 0.6]]))
    base = torch.log(torch.tensor([[0.9, 0.5, 0.1], [0.3, 0.2, 0.2]]))
    mask = torch.tensor([[True, True, True], [True, False, False]])
    reward, _ = aggregate(mode, logp, mask, base)
    single, _ = aggregate(mode, logp[1:, :1], mask[1:, :1], base[1:, :1])
    assert reward[0].item() == pytest.approx(HAND[mode], rel=1e-5)
    assert reward[1].item() == pytest.approx(single.item(), rel=1e-6)


@pytest.mark.parametrize("mode", sorted(HAND))
def test_long_answers_stay_finite(mode):
    torch.manual_seed(0)
    t = 5000
    logp = -torch.rand(2, t) * 5 - 0.01  # probabilities between e^-5 and 0.99
    base = -torch.rand(2, t) * 5 - 0.01
    mask = torch.ones(2, t, dtype=torch.bool)
    reward, token_reward = aggregate(mode, logp, mask, base)
    assert torch.isfinite(reward).all() and torch.isfinite(token_reward).all()
    if mode in {"arithmetic_mean", "weighted_sum_log_prob", "weighted_sum_inverse_prob", "geometric_mean"}:
        assert (reward > 0).all()  # means do not underflow with length; only prob does


def test_weighted_modes_need_the_base():
    logp, mask, _ = _inputs()
    with pytest.raises(ValueError, match="base_logp"):
        aggregate("weighted_sum_log_prob", logp, mask)


def test_unknown_mode_is_an_error():
    logp, mask, base = _inputs()
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate("median", logp, mask, base)


def test_ws_gives_no_reward_for_tokens_that_are_easy_without_a_trace():
    """A token with b = 1 has weight -log b = 0: however likely the trace makes it, it earns nothing."""
    logp = torch.log(torch.tensor([[0.99, 0.01]]))
    base = torch.tensor([[0.0, math.log(0.01)]])
    reward, token_reward = aggregate("weighted_sum_log_prob", logp, torch.ones(1, 2, dtype=torch.bool), base)
    assert token_reward[0, 0].item() == 0.0
    assert reward.item() == pytest.approx(0.01 * -math.log(0.01) / 2, rel=1e-5)
