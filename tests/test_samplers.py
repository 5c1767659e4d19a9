"""Every sampler keeps one contract: the same greedy tokens, rows drawn from softmax(logits / T) and nothing else,
stops at the delimiter or any end token; the sampling copy refreshes in place, and is held only while sampling
with ``sampling_copy: free``; micro-batches from a token budget. GPU tests (marked ``gpu``) run the same checks
on CUDA and skip without it."""

from __future__ import annotations

import pytest
import torch

from nrt import load_policy
from nrt.rollout import SAMPLERS, SamplingCopy, resolve_sampler
from nrt.step import micro_batch_groups, split_micro_batches

TOKENS = (11, 12, 13)


def _kw(policy, **extra):
    return dict(temperature=1.0, top_p=1.0, delimiter_id=policy.delimiter_id, end_ids=policy.end_ids,
                pad_id=policy.pad_id, **extra)


@pytest.mark.parametrize("sampler", ["generate", "static"])
def test_greedy_tokens_equal_the_kv_cache_loop(tiny_model_dir, sampler):
    policy = load_policy(str(tiny_model_dir))
    prompts = [[1, 2, 3, 4, 5], [6, 7], [8, 9, 10]]
    kw = _kw(policy, num_traces=2, max_tokens=12, do_sample=False)
    assert SAMPLERS[sampler](policy.model, prompts, **kw) == SAMPLERS["cache"](policy.model, prompts, **kw)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_rows_are_drawn_from_the_tempered_policy(tiny_model_dir, sampler):
    """Three tokens carry the mass (logits 2, 1, 0 plus the model's own small ones); at T = 0.5 each row's first
    token follows softmax(logits / 0.5), with no top-k or penalty from the checkpoint's generation config."""
    policy = load_policy(str(tiny_model_dir))
    policy.model.generation_config.top_k = 1  # a checkpoint default that would make sampling greedy
    bias = torch.full((policy.model.config.vocab_size,), -1e4)
    bias[list(TOKENS)] = torch.tensor([2.0, 1.0, 0.0])
    policy.model.get_output_embeddings().register_forward_hook(lambda module, args, out: out + bias)
    with torch.no_grad():
        logits = policy.model(input_ids=torch.tensor([[5, 6]])).logits[0, -1, list(TOKENS)]
    expected = (logits / 0.5).softmax(-1)
    torch.manual_seed(0)
    traces = SAMPLERS[sampler](policy.model, [[5, 6]], **_kw(policy, num_traces=1500, max_tokens=1) | {
        "temperature": 0.5})
    counts = torch.bincount(torch.tensor([TOKENS.index(t.ids[0]) for t in traces]), minlength=3) / len(traces)
    torch.testing.assert_close(counts, expected, atol=0.04, rtol=0)  # binomial sd <= 0.013


def test_sampling_copy_refreshes_in_place(tiny_model_dir):
    policy = load_policy(str(tiny_model_dir))
    copy = SamplingCopy(policy.model, torch.bfloat16)
    pointers = [p.data_ptr() for p in copy.model.parameters()]
    with torch.no_grad():
        for p in policy.model.parameters():
            p.add_(0.5)
    refreshed = copy.refresh(policy.model)
    assert refreshed is copy.model and [p.data_ptr() for p in refreshed.parameters()] == pointers  # graphs stay valid
    for target, source in zip(refreshed.parameters(), policy.model.parameters(), strict=True):
        assert target.dtype == torch.bfloat16 and not target.requires_grad
        torch.testing.assert_close(target, source.to(torch.bfloat16))


def test_sampling_copy_freed_between_rollouts(tiny_model_dir):
    """sampling_copy: free holds the copy's storage only while a rollout samples from it."""
    policy = load_policy(str(tiny_model_dir))
    copy = SamplingCopy(policy.model, torch.float32, keep=False)
    def held() -> list[int]:
        return [p.untyped_storage().nbytes() for p in copy.model.parameters()]

    assert not any(held())
    with copy.holding(policy.model) as model:
        assert model is copy.model and all(held())
        for target, source in zip(model.parameters(), policy.model.parameters(), strict=True):
            assert torch.equal(target, source)
    assert not any(held())


@pytest.mark.parametrize(("overrides", "expected"), [
    ({}, None),  # a CPU samples from the policy itself
    ({"sharding": "fsdp"}, (torch.float32, True)),  # a sharded model: a full copy, in the dtype one CPU samples in
    ({"sharding": "fsdp", "sampling_copy": "free"}, (torch.float32, False)),
    ({"sharding": "fsdp", "trace": False, "num_traces": 1}, None),  # SFT samples nothing
])
def test_sampling_copy_per_setup(tiny_model_dir, overrides, expected):
    from nrt import load_config
    from nrt.trainer import build_sampling_copy

    policy = load_policy(str(tiny_model_dir))
    copy = build_sampling_copy(policy.model, load_config("nrt-ws", overrides), torch.device("cpu"))
    assert (copy and (copy.dtype, copy.keep)) == expected


def test_auto_sampler_per_device():
    assert resolve_sampler("auto", torch.device("cpu")) == "cache"
    assert resolve_sampler("auto", torch.device("cuda")) == "static"
    assert resolve_sampler("auto", torch.device("cuda"), low_precision=False) == "generate"  # fp32 under autocast
    assert resolve_sampler("generate", torch.device("cuda")) == "generate"


def test_micro_batches_from_a_token_budget():
    lengths = [5, 9, 3, 4, 7, 7, 2, 2]  # K = 2: groups' longest 9, 4, 7, 2
    # ascending 2, 4, 7, 9: (2 groups x 2 rows) x 4 = 16 fits 16; adding 7 would be 6 x 7 = 42
    assert micro_batch_groups(lengths, 2, 1, tokens_per_micro_batch=16) == [[[3, 1], [2], [0]]]
    assert micro_batch_groups(lengths, 2, 1, tokens_per_micro_batch=1) == [[[3], [1], [2], [0]]]  # one group at least
    assert micro_batch_groups(lengths, 2, 1, tokens_per_micro_batch=10_000) == [[[3, 1, 2, 0]]]


def test_micro_batches_split_to_the_count_every_process_runs():
    """A process that packed fewer micro-batches than another splits its own (largest first, order kept)."""
    assert split_micro_batches([[3, 1, 2, 0]], 1) == [[3, 1, 2, 0]]
    assert split_micro_batches([[3, 1, 2, 0]], 2) == [[3, 1], [2, 0]]
    assert split_micro_batches([[3, 1, 2], [0]], 3) == [[3], [1, 2], [0]]
    assert split_micro_batches([[3, 1, 2], [0]], 4) == [[3], [1], [2], [0]]
    with pytest.raises(ValueError, match="4 groups in 2 micro-batches cannot make 5"):
        split_micro_batches([[3, 1, 2], [0]], 5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_static_sampler_on_cuda_from_a_bf16_copy(tiny_model_dir):
    policy = load_policy(str(tiny_model_dir))
    policy.model.to("cuda")
    copy = SamplingCopy(policy.model, torch.bfloat16)
    prompts = [[1, 2, 3, 4, 5], [6, 7]]
    kw = _kw(policy, num_traces=4, max_tokens=16, do_sample=False)
    model = copy.refresh(policy.model)
    assert SAMPLERS["static"](model, prompts, **kw) == SAMPLERS["cache"](model, prompts, **kw)
