"""Think, then answer: sample a trace up to the delimiter, then the answer after it.

If the model does not close its trace within the budget, the delimiter is appended (as in training) and
the answer is generated after it; ``emitted`` reports which happened. ``think=False`` answers right after
the delimiter, with no trace. The sampler is chosen as in training (``nrt.rollout.resolve_sampler``): nrt's
KV-cache loop on a CPU, transformers' compiled static-cache ``generate`` for bf16 weights on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from accelerate.utils import set_seed

from nrt.data import Example
from nrt.modeling import Policy
from nrt.prompts import chat_messages, encode_prompt
from nrt.rollout import SAMPLERS, Trace, resolve_sampler


@dataclass(frozen=True)
class Generation:
    trace: str
    answer: str
    emitted: bool
    trace_tokens: int


def think_then_answer(policy: Policy, chats: list[list[dict[str, str]]], *, think: bool = True,
                      max_trace_tokens: int = 256, max_answer_tokens: int = 256, temperature: float = 1.0,
                      top_p: float = 1.0, greedy: bool = True, sampler: str = "auto") -> list[Generation]:
    """Generate a trace and then an answer for each chat context (batched)."""
    weight = next(policy.model.parameters())
    sample_traces = SAMPLERS[resolve_sampler(sampler, weight.device, weight.dtype != torch.float32)]
    prompts = [encode_prompt(policy.tokenizer, messages) for messages in chats]
    common = dict(num_traces=1, temperature=temperature, top_p=top_p, delimiter_id=policy.delimiter_id,
                  end_ids=policy.end_ids, pad_id=policy.pad_id, do_sample=not greedy, vocab_size=policy.vocab_size)
    traces = (sample_traces(policy.model, prompts, max_tokens=max_trace_tokens, **common) if think
              else [Trace([], False) for _ in prompts])
    answers = sample_traces(policy.model, [p + t.ids + [policy.delimiter_id] for p, t in zip(prompts, traces,
                                                                                           strict=True)],
                            max_tokens=max_answer_tokens, **common)
    decode = policy.tokenizer.decode
    return [Generation(decode(t.ids), decode(a.ids, skip_special_tokens=True).strip(), t.emitted, len(t.ids))
            for t, a in zip(traces, answers, strict=True)]


def generate(policy: Policy, question: str, *, system_prompt: str | None = None, seed: int = 0,
             **kwargs: object) -> Generation:
    """``think_then_answer`` for a single question string."""
    set_seed(seed)
    example = Example([{"role": "user", "content": question}], "", "<command line>")
    return think_then_answer(policy, [chat_messages(example, system_prompt)], **kwargs)[0]  # type: ignore[arg-type]
