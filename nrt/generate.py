"""Think, then answer: sample a trace up to the delimiter, then the answer after it.

If the model does not close its trace within the budget, the delimiter is appended (as in training) and
the answer is generated after it; ``emitted`` reports which happened. ``think=False`` answers right after
the delimiter, with no trace.
"""

from __future__ import annotations

from dataclasses import dataclass

from accelerate.utils import set_seed

from nrt.data import Example
from nrt.modeling import Policy
from nrt.prompts import chat_messages, encode_prompt
from nrt.rollout import sample_traces


@dataclass(frozen=True)
class Generation:
    trace: str
    answer: str
    emitted: bool
    trace_tokens: int


def think_then_answer(policy: Policy, messages: list[dict[str, str]], *, think: bool = True,
                      max_trace_tokens: int = 256, max_answer_tokens: int = 256, temperature: float = 1.0,
                      top_p: float = 1.0, greedy: bool = True) -> Generation:
    """Generate a trace and an answer for one chat context."""
    prompt = encode_prompt(policy.tokenizer, messages)
    common = dict(num_traces=1, temperature=temperature, top_p=top_p, delimiter_id=policy.delimiter_id,
                  end_id=policy.end_id, pad_id=policy.pad_id, do_sample=not greedy)
    trace = sample_traces(policy.model, [prompt], max_tokens=max_trace_tokens, **common)[0] if think else None
    trace_ids = trace.ids if trace else []
    answer = sample_traces(policy.model, [prompt + trace_ids + [policy.delimiter_id]],
                           max_tokens=max_answer_tokens, **common)[0]
    decode = policy.tokenizer.decode
    return Generation(decode(trace_ids), decode(answer.ids, skip_special_tokens=True).strip(),
                      bool(trace and trace.emitted), len(trace_ids))


def generate(policy: Policy, question: str, *, system_prompt: str | None = None, seed: int = 0,
             **kwargs: object) -> Generation:
    """``think_then_answer`` for a single question string."""
    set_seed(seed)
    example = Example([{"role": "user", "content": question}], "", "<command line>")
    return think_then_answer(policy, chat_messages(example, system_prompt), **kwargs)  # type: ignore[arg-type]
