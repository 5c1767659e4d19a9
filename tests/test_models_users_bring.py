"""What a user's own model needs: several end-of-turn ids, BOS, LoRA that trains the delimiter, sampling that
keeps to the policy, and the estimator's details (temperature, the stop token, mini-batches, eval-mode scoring,
per-process seeds). Tokenizers and models are built here from the SmolLM2 tokenizer; nothing is downloaded."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from conftest import make_tiny_model, smollm2_tokenizer, tiny_overrides
from transformers import AutoModelForCausalLM, AutoTokenizer

from nrt import load_config, load_policy, train
from nrt.config import ConfigError
from nrt.data import Example
from nrt.prompts import encode_example, encode_prompt
from nrt.rollout import SAMPLERS, Trace
from nrt.sequences import Sample, assemble, score

EOT = "<|eot_id|>"


@pytest.fixture(scope="module")
def two_end_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Llama-3-like tiny model: the tokenizer's EOS plus a second end-of-turn id in its generation config."""
    tok = smollm2_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": [EOT]})
    tok_dir = tmp_path_factory.mktemp("tok-eot")
    tok.save_pretrained(tok_dir)
    target = make_tiny_model(tok_dir, tmp_path_factory.mktemp("tiny-eot"))
    model = AutoModelForCausalLM.from_pretrained(target)
    model.generation_config.eos_token_id = [tok.eos_token_id, tok.convert_tokens_to_ids(EOT)]
    model.generation_config.save_pretrained(target)
    return target


def _always(model: torch.nn.Module, token: int) -> None:
    """Make ``token`` the model's choice at every position (a bias on the output logits)."""
    bias = torch.zeros(model.config.vocab_size)
    bias[token] = 1e4
    model.get_output_embeddings().register_forward_hook(lambda module, args, out: out + bias)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_every_end_of_turn_id_stops_a_trace(two_end_model_dir, sampler):
    policy = load_policy(str(two_end_model_dir))
    eot = policy.tokenizer.convert_tokens_to_ids(EOT)
    assert policy.end_ids == (policy.tokenizer.eos_token_id, eot) and policy.end_id == policy.tokenizer.eos_token_id
    _always(policy.model, eot)
    traces = SAMPLERS[sampler](policy.model, [[5, 6, 7]], num_traces=2, max_tokens=6, temperature=1.0, top_p=1.0,
                               delimiter_id=policy.delimiter_id, end_ids=policy.end_ids, pad_id=policy.pad_id)
    assert traces == [Trace([], False, eot)] * 2  # stopped at once, not run on to the budget


def test_think_then_answer_stops_the_answer_at_any_end_id(two_end_model_dir):
    from nrt.generate import think_then_answer

    policy = load_policy(str(two_end_model_dir))
    _always(policy.model, policy.tokenizer.convert_tokens_to_ids(EOT))
    (out,) = think_then_answer(policy, [[{"role": "user", "content": "Hi"}]], max_trace_tokens=5, max_answer_tokens=5)
    assert out.trace_tokens == 0 and out.answer == ""


LLAMA3_TEMPLATE = ("{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] }}"
                   "<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant"
                   "<|end_header_id|>\n\n{% endif %}")


@pytest.mark.parametrize(("eos", "template", "closer"), [
    ("<|endoftext|>", None, "<|im_end|>"),  # Qwen2.5 base: ChatML turns, EOS the end of text
    ("<|end_of_text|>", LLAMA3_TEMPLATE, EOT),  # Llama-3.1 base
])
def test_a_base_model_stops_at_its_chat_templates_end_of_turn(tmp_path, eos, template, closer):
    """A base model whose tokenizer and generation config name only the end of text as EOS still stops its
    traces at the token its chat template closes turns with."""
    tok = smollm2_tokenizer()  # ChatML, closing turns with <|im_end|>
    tok.add_special_tokens({"additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", EOT]})
    tok.add_special_tokens({"eos_token": eos})
    if template is not None:
        tok.chat_template = template
    tok.save_pretrained(tmp_path / "tok")
    policy = load_policy(str(make_tiny_model(tmp_path / "tok", tmp_path / "model")))
    end = policy.tokenizer.convert_tokens_to_ids(closer)
    assert policy.end_id == policy.tokenizer.convert_tokens_to_ids(eos) and end in policy.end_ids
    _always(policy.model, end)
    traces = SAMPLERS["cache"](policy.model, [[5, 6, 7]], num_traces=2, max_tokens=6, temperature=1.0, top_p=1.0,
                               delimiter_id=policy.delimiter_id, end_ids=policy.end_ids, pad_id=policy.pad_id)
    assert traces == [Trace([], False, end)] * 2


def test_a_plain_template_adds_no_end_of_turn(tiny_model_dir):
    from nrt.modeling import PLAIN_CHAT_TEMPLATE, template_end_of_turn

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert template_end_of_turn(tok) == tok.eos_token_id  # SmolLM2's ChatML closes turns with its EOS
    tok.chat_template = PLAIN_CHAT_TEMPLATE
    assert template_end_of_turn(tok) is None
    tok.chat_template = "{{ raise_exception('user and assistant must alternate') }}"
    assert template_end_of_turn(tok) is None


def _bos_tokenizer_dir(tmp_path: Path, template: str | None) -> Path:
    """A Llama/Mistral-like tokenizer: it puts BOS before what it encodes; with ``template`` or none."""
    tok = smollm2_tokenizer()
    tok.add_special_tokens({"bos_token": "<s_bos>"})
    tok.add_bos_token = True
    tok.chat_template = template
    tok.save_pretrained(tmp_path)
    if template is None:
        (tmp_path / "chat_template.jinja").unlink(missing_ok=True)
        config = json.loads((tmp_path / "tokenizer_config.json").read_text())
        config.pop("chat_template", None)
        (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    return tmp_path


@pytest.mark.parametrize("template", [None, "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}"])
def test_a_model_that_expects_bos_gets_it_exactly_once(tmp_path, template):
    folder = make_tiny_model(_bos_tokenizer_dir(tmp_path / "tok", template), tmp_path / "model")
    policy = load_policy(str(folder))
    bos = policy.tokenizer.bos_token_id
    ids = encode_prompt(policy.tokenizer, [{"role": "user", "content": "What is 2 + 2?"}])
    assert ids[0] == bos and ids.count(bos) == 1
    # a tokenizer that does not add BOS (SmolLM2's ChatML) is left as its template writes it
    plain = smollm2_tokenizer()
    assert encode_prompt(plain, [{"role": "user", "content": "Hi"}]) == plain(plain.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False), add_special_tokens=False
    ).input_ids


def test_generate_sampler_ignores_the_checkpoints_generation_defaults(tiny_model_dir):
    policy = load_policy(str(tiny_model_dir))
    kw = dict(num_traces=1, max_tokens=10, temperature=1.0, top_p=1.0, delimiter_id=policy.delimiter_id,
              end_ids=policy.end_ids, pad_id=policy.pad_id, do_sample=False)
    prompts = [[1, 2, 3], [4, 5]]
    policy_choice = SAMPLERS["cache"](policy.model, prompts, **kw)
    assert any(len(set(t.ids)) < len(t.ids) for t in policy_choice)  # the tiny model repeats tokens greedily
    policy.model.generation_config.no_repeat_ngram_size = 1  # as a generation_config.json may say
    policy.model.generation_config.repetition_penalty = 50.0
    assert SAMPLERS["generate"](policy.model, prompts, **kw) == policy_choice
    assert policy.model.generation_config.repetition_penalty == 50.0  # given back as it was


def test_trace_tokens_are_scored_at_the_sampling_temperature(tiny_model_dir):
    policy = load_policy(str(tiny_model_dir))
    d, e = policy.delimiter_id, policy.end_id
    batch = assemble([Sample([4], [12, 13], True, [22])], d, e, policy.pad_id)
    scored = score(policy.model, batch, temperature=0.5)
    ids = torch.tensor([[4, 12, 13, d, 22, e]])
    logits = policy.model(input_ids=ids).logits[0, :-1]
    cold = (logits / 0.5).log_softmax(-1).gather(-1, ids[0, 1:, None]).squeeze(-1)
    warm = logits.log_softmax(-1).gather(-1, ids[0, 1:, None]).squeeze(-1)
    torch.testing.assert_close(scored.logp[0, :3], cold[:3], rtol=1e-4, atol=1e-4)  # trace tokens + delimiter
    torch.testing.assert_close(scored.logp[0, 3:5], warm[3:5], rtol=1e-4, atol=1e-4)  # answer and end at T=1
    torch.testing.assert_close(scored.delim_logp[0], warm[2], rtol=1e-4, atol=1e-4)  # the format term at T=1


def test_top_p_below_one_is_refused_in_training():
    with pytest.raises(ConfigError, match="top_p"):
        load_config("nrt-ws", {"top_p": 0.9})


def test_the_trace_term_reads_the_end_token_that_stopped_a_trace(tiny_model_dir):
    policy = load_policy(str(tiny_model_dir))
    d, e = policy.delimiter_id, policy.end_id
    samples = [Sample([4], [12], False, [22], ended_with=e), Sample([4], [12], False, [22])]  # ended / out of budget
    batch = assemble(samples, d, e, policy.pad_id)
    assert batch.input_ids[0].tolist() == batch.input_ids[1].tolist() == [4, 12, d, 22, e]  # the sequence goes on
    assert batch.trace_mask.tolist() == [[True, True, False, False]] * 2  # trace and delimiter index, always
    assert batch.target_ids[:, 1].tolist() == [e, d] and batch.delim_forced.tolist() == [True, True]
    scored = score(policy.model, batch)
    logits = policy.model(input_ids=batch.input_ids[:1]).logits[0].log_softmax(-1)
    torch.testing.assert_close(scored.logp[0, 1], logits[1, e])  # what the policy did: end the turn
    torch.testing.assert_close(scored.logp[1, 1], logits[1, d])
    torch.testing.assert_close(scored.delim_logp, logits[1, d].expand(2))  # the format term teaches the delimiter


def test_scoring_without_gradients_runs_in_eval_mode(tiny_model_dir, tmp_path):
    from nrt.step import empty_trace_logp

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attention_dropout=0.5)
    model.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path)
    policy = load_policy(str(tmp_path))
    policy.model.train()
    enc = [encode_example(policy.tokenizer, Example([{"role": "user", "content": "1 + 1?"}], "2", "t"),
                          system_prompt=None, max_answer_tokens=4)]
    first = empty_trace_logp(policy.model, policy, enc, 2, per_sample=False)
    assert torch.equal(first, empty_trace_logp(policy.model, policy, enc, 2, per_sample=False))  # no dropout noise
    assert policy.model.training


def test_external_reward_with_the_empty_trace_baseline_is_refused(tiny_model_dir, qa_file, tmp_path):
    cfg = load_config("nrt-ws", tiny_overrides(tiny_model_dir, qa_file, tmp_path, empty_trace_baseline=True))
    with pytest.raises(ConfigError, match="empty_trace_baseline"):
        train(cfg, reward_fn=lambda samples, tokenizer: torch.ones(len(samples)))


def _fixed_traces(model, prompts, *, num_traces, max_tokens, **kwargs):
    """Deterministic traces: the same for a prompt whichever batch it is sampled in."""
    return [Trace([100 + (sum(p) * (k + 3)) % 900 for _ in range(1 + (k + len(p)) % max_tokens)], k % 2 == 0)
            for p in prompts for k in range(num_traces)]


class Recorder(torch.optim.SGD):
    """SGD that keeps a copy of the gradients of every update."""

    def __init__(self, params, lr: float):
        super().__init__(params, lr=lr)
        self.grads: list[list[torch.Tensor]] = []

    def step(self, closure=None):
        self.grads.append([p.grad.clone() for g in self.param_groups for p in g["params"] if p.grad is not None])
        return super().step(closure)


def _step(policy, encoded, cfg, lr=0.0):
    from nrt.step import nrt_step

    model = copy.deepcopy(policy.model)
    optimizer = Recorder(model.parameters(), lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    out = nrt_step(model, policy, Accelerator(cpu=True), optimizer, scheduler, encoded, cfg)
    return out, optimizer, scheduler


def _encoded(policy, n):
    return [encode_example(policy.tokenizer, Example([{"role": "user", "content": f"{i} + {i}?"}], str(2 * i), "t"),
                           system_prompt=None, max_answer_tokens=4) for i in range(n)]


def test_mini_batches_are_disjoint_updates_each_used_once(tiny_model_dir, qa_file, tmp_path, monkeypatch):
    monkeypatch.setitem(SAMPLERS, "cache", _fixed_traces)
    policy = load_policy(str(tiny_model_dir))
    encoded = _encoded(policy, 4)
    over = tiny_overrides(tiny_model_dir, qa_file, tmp_path, prompts_per_step=4)
    out, optimizer, scheduler = _step(policy, encoded, load_config("nrt-ws", {**over, "mini_batches_per_step": 2}))
    assert len(optimizer.grads) == 2 and scheduler.last_epoch == 2  # two updates, one per mini-batch
    for m, part in enumerate((encoded[:2], encoded[2:])):  # each is the update of its own prompts alone
        (alone,) = _step(policy, part, load_config("nrt-ws", {**over, "prompts_per_step": 2}))[1].grads
        for a, b in zip(optimizer.grads[m], alone, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # with a real update in between, the second mini-batch's rewards are still the rollout policy's
    moved, _, _ = _step(policy, encoded, load_config("nrt-ws", {**over, "mini_batches_per_step": 2}), lr=1.0)
    assert moved.metrics["reward_raw_mean"] == pytest.approx(out.metrics["reward_raw_mean"], rel=1e-5)


def test_clip_fraction_is_a_fraction_of_the_steps_trace_tokens(tiny_model_dir, qa_file, tmp_path, monkeypatch):
    import nrt.step

    monkeypatch.setitem(SAMPLERS, "cache", _fixed_traces)
    real_loss, expected = nrt.step.nrt_loss, {"dropped": 0.0, "tokens": 0.0}

    def recording_loss(**kw):
        ratio = (kw["trace_logp"].detach() - kw["old_trace_logp"]).exp()
        adv, w = kw["advantages"][:, None], kw["weights"]
        dropped = ((adv > 0) & (ratio > w.clip_high)) | ((adv < 0) & (ratio < w.clip_low))
        expected["dropped"] += float((dropped & kw["trace_mask"]).sum())
        expected["tokens"] += float(kw["trace_mask"].sum())
        return real_loss(**kw)

    monkeypatch.setattr(nrt.step, "nrt_loss", recording_loss)
    policy = load_policy(str(tiny_model_dir))
    cfg = load_config("nrt-ws", tiny_overrides(tiny_model_dir, qa_file, tmp_path, prompts_per_step=4,
                                               updates_per_step=3, clip_low=1.0, clip_high=1.0))
    out, _, _ = _step(policy, _encoded(policy, 4), cfg, lr=1.0)
    assert expected["dropped"] > 0
    assert out.metrics["clip_fraction"] == pytest.approx(expected["dropped"] / expected["tokens"])


@pytest.mark.parametrize("tied", [True, False])
def test_lora_trains_the_delimiter_rows_and_checkpoints_keep_them(tiny_model_dir, qa_file, tmp_path, tied):
    from peft import PeftModel

    base_dir = tmp_path / "base"
    AutoModelForCausalLM.from_pretrained(tiny_model_dir, tie_word_embeddings=tied).save_pretrained(base_dir)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(base_dir)
    cfg = load_config("nrt-ws", tiny_overrides(base_dir, qa_file, tmp_path / "run", lora=True, lr=1e-2, steps=3))
    result = train(cfg)

    def rows_differ(model) -> bool:
        tok = AutoTokenizer.from_pretrained(result.checkpoint / "model")
        d, e = tok.convert_tokens_to_ids("<|response_start|>"), tok.eos_token_id
        emb, out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
        return not torch.equal(emb[d], emb[e]) and not torch.equal(out[d], out[e])

    merged = AutoModelForCausalLM.from_pretrained(result.checkpoint / "model")
    assert rows_differ(merged)
    base = load_policy(str(base_dir)).model  # the user's model with the delimiter added, as nrt prepares it
    adapted = PeftModel.from_pretrained(base, result.checkpoint / "adapter").merge_and_unload()
    assert rows_differ(adapted)
    for name, value in merged.state_dict().items():
        torch.testing.assert_close(adapted.state_dict()[name], value)


@pytest.mark.parametrize("tied", [True, False])
def test_lora_checkpoint_merges_a_cpu_copy_and_leaves_the_policy_as_it_was(tiny_model_dir, tmp_path, tied):
    """The merged weights are peft's ``merge_and_unload``; the live model keeps its unmerged adapters and
    every value (a copy that shared its tensors would have had the adapters added into them)."""
    from nrt.checkpoint import write_checkpoint
    from nrt.modeling import apply_lora

    AutoModelForCausalLM.from_pretrained(tiny_model_dir, tie_word_embeddings=tied).save_pretrained(tmp_path / "b")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "b")
    policy = load_policy(str(tmp_path / "b"))
    model = apply_lora(policy.model, 4, 8, 0.0, ["q_proj", "v_proj"], [policy.delimiter_id])
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:  # lora_B starts at 0 and the delimiter's rows at EOS's: make the merge matter
                p.normal_(std=0.1)
    live = {name: value.clone() for name, value in model.state_dict().items()}
    write_checkpoint(tmp_path / "ckpt", model, policy.tokenizer, {}, lora=True)
    assert all(torch.equal(value, live[name]) for name, value in model.state_dict().items())
    assert not any(getattr(m, "merged", False) for m in model.modules())
    expected = copy.deepcopy(model).merge_and_unload().state_dict()
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt" / "model").state_dict()
    assert saved.keys() == expected.keys()
    assert not torch.equal(saved["model.layers.0.self_attn.q_proj.weight"],
                           live["base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"])
    for name, value in expected.items():
        assert torch.equal(saved[name], value), name


def test_a_training_step_prints_no_deprecation_warning_per_forward(tiny_model_dir, qa_file, tmp_path):
    import warnings

    cfg = load_config("nrt-ws", tiny_overrides(tiny_model_dir, qa_file, tmp_path, steps=1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(cfg)
    assert not [w for w in caught if "past_key_values" in str(w.message)]


def test_chunked_logits_through_a_peft_head(tiny_model_dir, tmp_path):
    """LoRA with an untied head: the head is peft's wrapper (it adds the delimiter's trained row); the chunked
    pass applies it as the plain pass does."""
    from nrt.modeling import apply_lora

    AutoModelForCausalLM.from_pretrained(tiny_model_dir, tie_word_embeddings=False).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path)
    policy = load_policy(str(tmp_path))
    model = apply_lora(policy.model, 4, 8, 0.0, ["q_proj"], [policy.delimiter_id])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "trainable_tokens_delta" in name:
                p.normal_()
    batch = assemble([Sample([1, 2, 3], [10, 11], True, [20, 21])], policy.delimiter_id, policy.end_id, policy.pad_id)
    plain, chunked = (score(model, batch, chunked=c) for c in (False, True))
    torch.testing.assert_close(chunked.logp, plain.logp, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(chunked.delim_logp, plain.delim_logp, rtol=1e-5, atol=1e-5)


def test_chunked_logits_keep_the_soft_cap_of_a_composite_models_text_config():
    """Gemma 4 (text and vision) soft-caps its logits by a setting of its text config; the chunked pass, which
    runs the head itself, must not skip it (the model runs unchunked)."""
    gemma4 = pytest.importorskip("transformers.models.gemma4", reason="needs a transformers with Gemma 4")
    text = gemma4.Gemma4TextConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                    num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                    max_position_embeddings=64, layer_types=["full_attention"],
                                    final_logit_softcapping=0.5)
    torch.manual_seed(0)
    model = gemma4.Gemma4ForConditionalGeneration(gemma4.Gemma4Config(text_config=text, vision_config=None,
                                                                      audio_config=None))
    batch = assemble([Sample([1, 2, 3], [10, 11], True, [20, 21])], 5, 6, 0)
    plain, chunked = (score(model, batch, chunked=c) for c in (False, True))
    assert plain.logp.min() > -math.log(64) - 1.0  # logits capped at 0.5: log p >= -log 64 - 1
    torch.testing.assert_close(chunked.logp, plain.logp)


def _padded_policy(tiny_model_dir):
    """The tiny policy with its 49,153 rows padded to 49,216, the padded rows' logits far above every real one."""
    from nrt.modeling import pad_vocabulary

    policy = load_policy(str(tiny_model_dir))
    pad_vocabulary(policy.model, 64)
    with torch.no_grad():
        policy.model.get_output_embeddings().weight[policy.vocab_size:] = 10.0
    return policy


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_padded_ids_are_never_sampled(tiny_model_dir, sampler):
    policy = _padded_policy(tiny_model_dir)
    assert policy.vocab_size == 49153 and policy.model.config.vocab_size == 49216
    traces = SAMPLERS[sampler](policy.model, [[5, 6, 7], [8, 9]], num_traces=2, max_tokens=6, temperature=1.0,
                               top_p=1.0, delimiter_id=policy.delimiter_id, end_ids=policy.end_ids,
                               pad_id=policy.pad_id, vocab_size=policy.vocab_size)
    drawn = [i for t in traces for i in t.ids]
    assert drawn and max(drawn) < policy.vocab_size


@pytest.mark.parametrize("chunked", [False, True])
def test_padded_ids_are_never_scored(tiny_model_dir, chunked):
    """Log-probs, the delimiter's and the entropy are those of the model without the padded rows."""
    plain = load_policy(str(tiny_model_dir))
    padded = _padded_policy(tiny_model_dir)
    batch = assemble([Sample([1, 2, 3], [10, 11], True, [20, 21]), Sample([4], [12], False, [22])],
                     plain.delimiter_id, plain.end_id, plain.pad_id)
    want = score(plain.model, batch, chunked=chunked, temperature=0.7)
    got = score(padded.model, batch, chunked=chunked, temperature=0.7, vocab_size=padded.vocab_size)
    for name in ("logp", "delim_logp", "trace_entropy"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name), msg=name)


def test_training_with_a_padded_vocabulary(tiny_model_dir, qa_file, tmp_path):
    cfg = load_config("nrt-ws", tiny_overrides(tiny_model_dir, qa_file, tmp_path / "run", steps=1,
                                               pad_vocab_to_multiple_of=64))
    result = train(cfg)
    assert all(math.isfinite(v) for v in result.metrics[0].values())
    policy = load_policy(str(result.checkpoint / "model"))
    assert policy.model.get_input_embeddings().weight.shape[0] == 49216 and policy.vocab_size == 49153


def test_the_cli_keeps_matplotlibs_font_cache_messages_off_the_console(capsys):
    import logging

    from nrt.cli import main

    main(["presets"])
    assert logging.getLogger("matplotlib").level == logging.WARNING  # whatever level the root logger gets
