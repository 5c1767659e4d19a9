"""The fused step (one pass with gradients, empty-trace pass per prompt) and the reference recipe's three-pass
structure give the same loss, rewards and gradients on the same batch."""

import copy

import pytest
import torch
from accelerate import Accelerator
from conftest import tiny_overrides

from nrt import load_config, load_policy
from nrt.data import Example
from nrt.prompts import encode_example
from nrt.step import micro_batch_groups, nrt_step


class GradRecorder(torch.optim.SGD):
    """An optimizer that keeps a copy of the gradients it is asked to apply (and applies none)."""

    def __init__(self, params):
        super().__init__(params, lr=0.0)
        self.grads: list[torch.Tensor] = []

    def step(self, closure=None):
        self.grads = [p.grad.clone() for g in self.param_groups for p in g["params"] if p.grad is not None]


@pytest.mark.parametrize(("preset", "extra"), [
    ("nrt-ws", {}),
    ("rlpr", {"token_reward": "derived", "group_std_min": 0.0}),
    ("jepo", {"updates_per_step": 2}),
])
def test_fused_and_reference_passes_agree(preset, extra, tiny_model_dir, qa_file, tmp_path):
    policy = load_policy(str(tiny_model_dir))
    examples = [Example([{"role": "user", "content": f"What is {i} + {i}?"}], str(2 * i), "t") for i in range(4)]
    encoded = [encode_example(policy.tokenizer, e, system_prompt=None, max_answer_tokens=8) for e in examples]
    results = {}
    for structure in ("fused", "reference"):
        cfg = load_config(preset, tiny_overrides(tiny_model_dir, qa_file, tmp_path, prompts_per_step=4,
                                                 prompts_per_micro_batch=2, max_trace_tokens=6,
                                                 pass_structure=structure, **extra))
        model = copy.deepcopy(policy.model)
        optimizer = GradRecorder(model.parameters())
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        torch.manual_seed(7)  # same traces for both
        out = nrt_step(model, policy, Accelerator(cpu=True), optimizer, scheduler, encoded, cfg)
        results[structure] = (out, optimizer.grads)
    (fused, fused_grads), (ref, ref_grads) = results["fused"], results["reference"]
    assert [s["trace"] for s in fused.samples] == [s["trace"] for s in ref.samples]
    for key in ("loss", "reward_raw_mean", "reward_raw_std", "answer_nll_with_trace", "answer_nll_without_trace"):
        # rel 1e-4: group normalisation divides float noise in the rewards by a small std (JEPO: ~0.1)
        assert fused.metrics[key] == pytest.approx(ref.metrics[key], rel=1e-4, abs=1e-6), key
    assert fused.metrics["advantage_abs_mean"] > 0
    assert len(fused_grads) == len(ref_grads) > 0
    for a, b in zip(fused_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)  # the fused step sums K copies of a prompt's gradient


def test_micro_batches_hold_groups_of_similar_length():
    lengths = [5, 9, 3, 4, 7, 7]  # K = 2: groups' longest 9, 4, 7
    assert micro_batch_groups(lengths, 2, 2) == [[[1, 2], [0]]]
    assert micro_batch_groups(lengths, 2, 1) == [[[1], [2], [0]]]
    # mini-batches are disjoint consecutive blocks of groups, each sorted within itself
    assert micro_batch_groups([5, 9, 3, 4, 7, 7, 1, 1], 2, 1, mini_batches=2) == [[[1], [0]], [[3], [2]]]


def test_per_sample_records_stay_in_trace_order_after_sorting(tiny_model_dir, qa_file, tmp_path):
    """Micro-batches run in length order; the samples log still pairs each trace with its own reward."""
    policy = load_policy(str(tiny_model_dir))
    questions = ["What is one hundred and twenty three plus four hundred and fifty six?", "1+1?", "What is 2+2?"]
    examples = [Example([{"role": "user", "content": q}], "2", "t") for q in questions]
    encoded = [encode_example(policy.tokenizer, e, system_prompt=None, max_answer_tokens=4) for e in examples]
    cfg = load_config("nrt-ws", tiny_overrides(tiny_model_dir, qa_file, tmp_path, prompts_per_step=3,
                                                prompts_per_micro_batch=1, max_trace_tokens=4, samples_per_step=99))
    optimizer = GradRecorder(policy.model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)

    def prompt_length(samples, tokenizer):  # a verifier-style reward that names the prompt it was computed for
        return torch.tensor([float(len(s.prompt_ids)) for s in samples])

    out = nrt_step(policy.model, policy, Accelerator(cpu=True), optimizer, scheduler, encoded, cfg,
                   reward_fn=prompt_length)
    k = cfg.num_traces
    assert [r["reward"] for r in out.samples] == [float(len(encoded[i // k].prompt_ids)) for i in range(3 * k)]
    assert [r["prompt_index"] for r in out.samples] == [i // k for i in range(3 * k)]
