"""Examples to token ids: the tokenizer's chat template builds the prompt, the answer is tokenised alone.

The prompt ends with the template's generation prompt (e.g. ``<|im_start|>assistant\\n``), so the trace is
the first thing the assistant writes. Earlier chat turns are kept as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from nrt.data import Example


@dataclass(frozen=True)
class Encoded:
    prompt_ids: list[int]
    answer_ids: list[int]


def chat_messages(example: Example, system_prompt: str | None) -> list[dict[str, str]]:
    """The example's context, with the configured system prompt first unless the chat has its own."""
    if system_prompt and example.messages[0]["role"] != "system":
        return [{"role": "system", "content": system_prompt}, *example.messages]
    return list(example.messages)


def encode_prompt(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> list[int]:
    """Prompt ids from the chat template (special tokens come from the template text itself)."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False).input_ids


def encode_example(tokenizer: PreTrainedTokenizerBase, example: Example, *, system_prompt: str | None,
                   max_answer_tokens: int) -> Encoded:
    """Prompt ids and (truncated) answer ids of one example."""
    answer = tokenizer(example.answer, add_special_tokens=False).input_ids[:max_answer_tokens]
    return Encoded(encode_prompt(tokenizer, chat_messages(example, system_prompt)), answer)
