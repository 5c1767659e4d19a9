"""Token-level assembly and masks, trace splitting, the delimiter token, and scoring positions."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from nrt.modeling import add_delimiter, load_policy
from nrt.prompts import encode_example
from nrt.rollout import Trace, generate_traces, left_pad, split_trace
from nrt.sequences import Sample, assemble, score

D, E, P = 90, 91, 0  # delimiter, end, pad ids


def test_assemble_layout_and_masks():
    samples = [
        Sample(prompt_ids=[1, 2, 3], trace_ids=[10, 11], emitted=True, answer_ids=[20]),
        Sample(prompt_ids=[4], trace_ids=[], emitted=False, answer_ids=[21, 22, 23]),
    ]  # bodies trace+delim+answer+end have equal length 5, so no right padding
    b = assemble(samples, D, E, P)
    assert b.input_ids.tolist() == [
        [1, 2, 3, 10, 11, D, 20, E],
        [P, P, 4, D, 21, 22, 23, E],
    ]
    assert b.attention_mask.tolist() == [[1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1, 1]]
    assert b.position_ids[1, 2:8].tolist() == [0, 1, 2, 3, 4, 5]  # positions restart after left padding
    assert b.target_ids.tolist() == [[10, 11, D, 20, E], [D, 21, 22, 23, E]]
    # the trace term covers the trace and the delimiter's index, emitted or appended (NRT.md: z and rs)
    assert b.trace_mask.tolist() == [[True, True, True, False, False], [True, False, False, False, False]]
    assert b.delim_index.tolist() == [2, 0] and b.delim_forced.tolist() == [False, True]
    assert b.answer_index.tolist() == [[3, 0, 0], [1, 2, 3]]
    assert b.answer_mask.tolist() == [[True, False, False], [True, True, True]]
    assert b.end_index.tolist() == [4, 4]
    # every index points at the token it claims
    for row in range(2):
        assert b.target_ids[row, b.delim_index[row]] == D
        assert b.target_ids[row, b.end_index[row]] == E
        got = b.target_ids[row, b.answer_index[row]][b.answer_mask[row]].tolist()
        assert got == samples[row].answer_ids


def test_split_trace_stops_at_delimiter_or_any_end():
    assert split_trace([5, 6, D, 7], D, [E]) == Trace([5, 6], True)
    assert split_trace([5, E, D], D, [E]) == Trace([5], False, E)
    assert split_trace([5, 93, D], D, [E, 93]) == Trace([5], False, 93)  # a second end-of-turn id
    assert split_trace([5, 6, 7], D, [E]) == Trace([5, 6, 7], False)  # budget exhausted


def test_left_pad():
    ids, mask = left_pad([[1, 2], [3]], P)
    assert ids.tolist() == [[1, 2], [P, 3]] and mask.tolist() == [[1, 1], [0, 1]]
    ids, mask = left_pad([[1, 2], [3]], P, multiple=4)
    assert ids.tolist() == [[P, P, 1, 2], [P, P, P, 3]] and mask.tolist() == [[0, 0, 1, 1], [0, 0, 0, 1]]


def test_score_matches_a_plain_forward(tiny_model_dir):
    policy = load_policy(str(tiny_model_dir))
    samples = [Sample([1, 2, 3], [10, 11], True, [20, 21]), Sample([4], [12], False, [22])]
    b = assemble(samples, policy.delimiter_id, policy.end_id, policy.pad_id)
    scored = score(policy.model, b)
    # reference: score the second (left-padded) sample alone, unpadded
    ids = torch.tensor([[4, 12, policy.delimiter_id, 22, policy.end_id]])
    logits = policy.model(input_ids=ids).logits[0, :-1].log_softmax(-1)
    ref = logits.gather(-1, ids[0, 1:, None]).squeeze(-1)  # log p of 12, delim, 22, end
    torch.testing.assert_close(scored.logp[1, :4], ref, rtol=1e-4, atol=1e-4)
    assert scored.answer_logp[1, 0].item() == scored.logp[1, 2].item()
    assert scored.answer_logp[1, 1].item() == 0.0  # padding
    assert scored.delim_logp[1].item() == pytest.approx(scored.logp[1, 1].item(), rel=1e-6)
    # the second sample's trace is one token (12); its delimiter was forced, so not part of the trace
    expected = torch.distributions.Categorical(logits=logits[:1]).entropy().mean()
    torch.testing.assert_close(scored.trace_entropy[1], expected, rtol=1e-4, atol=1e-4)
    assert scored.trace_entropy[0] > 0
    # gradients flow to every row through the per-row log-probs
    (scored.logp[0].sum() + scored.logp[1, :4].sum()).backward()
    assert policy.model.get_input_embeddings().weight.grad[4].abs().sum() > 0



def _grads(model: torch.nn.Module) -> list[torch.Tensor]:
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=False)
    return grads


def test_grouped_prompt_pass_gives_the_same_values_and_gradients(tiny_model_dir):
    """Each prompt run once for its group (cache repeated) == every row run whole; left and right padding."""
    model = load_policy(str(tiny_model_dir)).model
    prompts = [[5, 6, 7, 8, 9], [11, 12]]
    traces = [[30], [31, 32, 33], [], [34, 35], [36], [37, 38, 39, 40]]
    samples = [Sample(prompts[i // 3], t, i % 2 == 0, [50 + i] * (1 + i % 3)) for i, t in enumerate(traces)]
    b = assemble(samples, D, E, P)
    weights = torch.randn(b.target_ids.shape, generator=torch.Generator().manual_seed(0))
    results = []
    for group_size in (1, 3):
        scored = score(model, b, group_size=group_size)
        (scored.logp * weights).sum().backward()
        results.append((scored, _grads(model)))
    (flat, flat_grads), (grouped, grouped_grads) = results
    torch.testing.assert_close(grouped.logp, flat.logp, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grouped.trace_entropy, flat.trace_entropy, rtol=1e-5, atol=1e-5)
    for a, c in zip(grouped_grads, flat_grads, strict=True):
        torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in grouped_grads)
    with pytest.raises(ValueError, match="do not share their prompt"):
        score(model, b, group_size=2)
    with pytest.raises(ValueError, match="groups of 4"):
        score(model, b, group_size=4)

def test_delimiter_is_a_special_token_initialised_from_eos(tiny_model_dir):
    policy = load_policy(str(tiny_model_dir))
    tok, model = policy.tokenizer, policy.model
    assert tok.convert_ids_to_tokens(policy.delimiter_id) == "<|response_start|>"
    assert tok("a<|response_start|>b", add_special_tokens=False).input_ids.count(policy.delimiter_id) == 1
    emb = model.get_input_embeddings().weight
    torch.testing.assert_close(emb[policy.delimiter_id], emb[tok.eos_token_id])
    assert add_delimiter(model, tok, "<|response_start|>") == policy.delimiter_id  # idempotent


def test_untied_output_row_is_copied_too(tiny_model_dir, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, tie_word_embeddings=False)
    model.save_pretrained(tmp_path)
    policy = load_policy(str(tiny_model_dir))  # tokenizer only
    policy.tokenizer.save_pretrained(tmp_path)
    untied = load_policy(str(tmp_path), delimiter="<|think_end|>")
    out = untied.model.get_output_embeddings().weight
    assert out is not untied.model.get_input_embeddings().weight
    torch.testing.assert_close(out[untied.delimiter_id], out[untied.end_id])


def test_prompt_uses_chat_template_and_keeps_turns(tiny_model_dir):
    from nrt.data import Example

    policy = load_policy(str(tiny_model_dir))
    ex = Example([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                  {"role": "user", "content": "2+2?"}], "4", "test")
    enc = encode_example(policy.tokenizer, ex, system_prompt="Think.", max_answer_tokens=8)
    text = policy.tokenizer.decode(enc.prompt_ids)
    assert text.startswith("<|im_start|>system\nThink.<|im_end|>")
    assert "Hello<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")
    assert policy.tokenizer.decode(enc.answer_ids) == "4"


def test_base_model_without_template_gets_a_plain_one(tiny_model_dir, tmp_path):
    import shutil

    shutil.copytree(tiny_model_dir, tmp_path, dirs_exist_ok=True)
    for name in ("tokenizer_config.json", "chat_template.jinja"):
        path = tmp_path / name
        if path.name.endswith(".json"):
            import json

            config = json.loads(path.read_text())
            config.pop("chat_template", None)
            path.write_text(json.dumps(config))
        else:
            path.unlink(missing_ok=True)
    policy = load_policy(str(tmp_path))
    text = policy.tokenizer.apply_chat_template([{"role": "user", "content": "Q?"}], add_generation_prompt=True,
                                                tokenize=False)
    assert text == "User: Q?\n\nAssistant: "


def test_kv_cache_sampler_greedy_equals_generate(tiny_model_dir):
    from transformers import GenerationConfig

    from nrt.rollout import sample_traces

    policy = load_policy(str(tiny_model_dir))
    prompts = [[1, 2, 3, 4, 5], [6, 7], [8, 9, 10]]
    ours = sample_traces(policy.model, prompts, num_traces=2, max_tokens=12, temperature=1.0, top_p=1.0,
                         delimiter_id=policy.delimiter_id, end_ids=policy.end_ids, pad_id=policy.pad_id,
                         do_sample=False)
    ids, mask = left_pad(prompts, policy.pad_id)
    out = policy.model.generate(input_ids=ids, attention_mask=mask, generation_config=GenerationConfig(
        max_new_tokens=12, do_sample=False, eos_token_id=[policy.delimiter_id, *policy.end_ids],
        pad_token_id=policy.pad_id))
    reference = [split_trace(row, policy.delimiter_id, policy.end_ids) for row in out[:, ids.shape[1]:].tolist()]
    assert [t.ids for t in ours] == [t.ids for p in reference for t in (p, p)]  # K copies of each prompt
    assert all(len(t.ids) == 12 for t in ours)
    # the `generate` sampler backend: same contract, same traces
    plain = generate_traces(policy.model, prompts, num_traces=2, max_tokens=12, temperature=1.0, top_p=1.0,
                            delimiter_id=policy.delimiter_id, end_ids=policy.end_ids, pad_id=policy.pad_id,
                            do_sample=False)
    assert plain == ours


def test_generate_sampler_stops_at_the_delimiter_and_pads_finished_rows(tiny_model_dir):
    """Sampling through ``model.generate``: a row that emits the delimiter keeps only what came before it."""
    policy = load_policy(str(tiny_model_dir))
    with torch.no_grad():  # make the delimiter the likeliest token after token 7 only
        policy.model.get_output_embeddings().weight[policy.delimiter_id] = \
            policy.model.get_input_embeddings().weight[7] * 50
    traces = generate_traces(policy.model, [[1, 2, 3], [7]], num_traces=3, max_tokens=6, temperature=1e-3,
                             top_p=1.0, delimiter_id=policy.delimiter_id, end_ids=policy.end_ids,
                             pad_id=policy.pad_id)
    assert traces[3:] == [Trace([], True)] * 3  # prompt [7] closes at once; its rows pad while the others go on
    assert all(t.emitted and 0 < len(t.ids) < 6 and policy.delimiter_id not in t.ids for t in traces[:3])


def test_kv_cache_sampler_drops_finished_rows(tiny_model_dir, monkeypatch):
    """Rows that stop early leave the batch; the others continue with the right cache rows."""
    import nrt.rollout

    policy = load_policy(str(tiny_model_dir))
    real = nrt.rollout._next_tokens
    calls = []

    def stop_row_zero_at_step_two(logits, *args):
        token = real(logits, 1.0, 1.0, False)
        calls.append(len(token))
        if len(calls) == 2:
            token[0] = policy.delimiter_id
        return token

    monkeypatch.setattr(nrt.rollout, "_next_tokens", stop_row_zero_at_step_two)
    traces = nrt.rollout.sample_traces(policy.model, [[1, 2, 3], [4, 5]], num_traces=1, max_tokens=5,
                                       temperature=1.0, top_p=1.0, delimiter_id=policy.delimiter_id,
                                       end_ids=policy.end_ids, pad_id=policy.pad_id, do_sample=False)
    assert calls == [2, 2, 1, 1, 1]
    assert len(traces[0].ids) == 1 and traces[0].emitted and len(traces[1].ids) == 5
    monkeypatch.setattr(nrt.rollout, "_next_tokens", real)
    alone = nrt.rollout.sample_traces(policy.model, [[4, 5]], num_traces=1, max_tokens=5, temperature=1.0,
                                      top_p=1.0, delimiter_id=policy.delimiter_id, end_ids=policy.end_ids,
                                      pad_id=policy.pad_id, do_sample=False)
    assert alone[0].ids == traces[1].ids


def test_top_p_keeps_only_the_nucleus():
    from nrt.rollout import _next_tokens

    torch.manual_seed(0)
    logits = torch.log(torch.tensor([[0.1, 0.6, 0.3]])).expand(2000, 3)
    assert set(_next_tokens(logits, 1.0, 0.5, True).tolist()) == {1}
    assert set(_next_tokens(logits, 1.0, 0.8, True).tolist()) == {1, 2}
    counts = torch.bincount(_next_tokens(logits, 1.0, 1.0, True), minlength=3) / 2000
    torch.testing.assert_close(counts, torch.tensor([0.1, 0.6, 0.3]), atol=0.04, rtol=0)


def test_freed_memory_stays_in_the_heap():
    """After ``retain_freed_memory`` a 64 MiB tensor comes from the heap and its memory stays there when freed.

    Asserted on glibc's own accounting (``mallinfo2``), not on page faults: a kernel with automatic NUMA
    balancing counts its sampling faults as minor faults, thousands per 64 MiB on some CI machines.
    """
    import ctypes

    from nrt.host_memory import retain_freed_memory

    if not retain_freed_memory():
        pytest.skip("not glibc on Linux")
    names = ["arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"]

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in names]

    libc = ctypes.CDLL("libc.so.6")
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("glibc older than 2.33 has no mallinfo2")
    libc.mallinfo2.restype = MallInfo2
    size = 64 * 2**20
    before = libc.mallinfo2()
    tensor = torch.ones(size // 4)
    held = libc.mallinfo2()
    del tensor
    freed = libc.mallinfo2()
    assert held.hblkhd - before.hblkhd < size  # not a separate mmap'd block, which free would unmap
    assert freed.arena >= held.arena  # the heap was not trimmed
    assert freed.fordblks - held.fordblks >= size  # the tensor's memory is free inside the heap, ready for reuse


@pytest.mark.parametrize(("tied", "group_size"), [(True, 1), (False, 2)])
def test_chunked_logits_give_the_same_values_and_gradients(tiny_model_dir, tmp_path, tied, group_size):
    """The head run one sequence at a time and recomputed in backward: the plain pass's values and gradients."""
    from transformers import AutoTokenizer

    AutoModelForCausalLM.from_pretrained(tiny_model_dir, tie_word_embeddings=tied).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path)
    policy = load_policy(str(tmp_path))
    model = policy.model
    samples = [Sample([1, 2, 3], [10, 11, 12], True, [20, 21]), Sample([1, 2, 3], [13], False, [22], ended_with=2)]
    batch = assemble(samples, policy.delimiter_id, policy.end_id, policy.pad_id)
    results = []
    for chunked in (False, True):
        model.zero_grad()
        scored = score(model, batch, group_size=group_size, temperature=0.7, chunked=chunked)
        (scored.logp.sum() + scored.delim_logp.sum()).backward()
        results.append((scored, [p.grad.clone() for p in model.parameters()]))
    (plain, plain_grads), (chunk, chunk_grads) = results
    for field in ("logp", "answer_logp", "delim_logp", "end_logp", "trace_entropy"):
        torch.testing.assert_close(getattr(chunk, field), getattr(plain, field), rtol=1e-5, atol=1e-5)
    for a, b in zip(chunk_grads, plain_grads, strict=True):  # summed in another order (per row vs one matmul)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert max(g.abs().max() for g in plain_grads) > 0.1  # the tolerance is small against the gradients
    assert model.get_output_embeddings()(torch.ones(1, 64)).shape[-1] == model.config.vocab_size  # head restored
