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


def expects_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """The tokenizer puts BOS before a text it encodes (Llama, Mistral, Gemma): its model was trained with it."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("x").input_ids[:1] == [bos]


def encode_prompt(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> list[int]:
    """Prompt ids from the chat template, with BOS exactly once where the tokenizer expects it.

    Special tokens come from the template text (encoded without the tokenizer's own), so a template that
    writes BOS (Llama-3's) gets it once; a model that expects BOS under a template that does not write it
    (a base model under the plain template) gets it prepended.
    """
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(text, add_special_tokens=False).input_ids
    if expects_bos(tokenizer) and ids[:1] != [tokenizer.bos_token_id]:
        ids = [tokenizer.bos_token_id, *ids]
    return ids


def encode_example(tokenizer: PreTrainedTokenizerBase, example: Example, *, system_prompt: str | None,
                   max_answer_tokens: int) -> Encoded:
    """Prompt ids and (truncated) answer ids of one example."""
    answer = tokenizer(example.answer, add_special_tokens=False).input_ids[:max_answer_tokens]
    return Encoded(encode_prompt(tokenizer, chat_messages(example, system_prompt)), answer)
