"""An example reward function to train with: a verifier that checks the trace's final words.

    nrt train data=my_qa.jsonl reward_fn=examples/rewards.py:exact_match

The signature and what ``samples`` hold are in ``nrt/reward_fn.py``. The answer term of the loss still
trains the reference answer's likelihood; this reward only decides which traces the trace term reinforces.
"""

from __future__ import annotations

import torch


def _words(text: str) -> list[str]:
    """Lower-cased words without the punctuation around them: "The answer is 12." -> [the, answer, is, 12]."""
    return [w for w in (word.strip(".,;:!?\"'()").lower() for word in text.split()) if w]


def exact_match(samples: list, tokenizer) -> torch.Tensor:
    """1.0 for a trace whose last words are exactly the reference answer's words ("... so it is 12." for the
    answer "12"), ignoring case and punctuation around words; else 0.0."""
    rewards = []
    for sample in samples:
        answer = _words(tokenizer.decode(sample.answer_ids, skip_special_tokens=True))
        trace = _words(tokenizer.decode(sample.trace_ids, skip_special_tokens=True))
        rewards.append(float(bool(answer) and trace[-len(answer):] == answer))
    return torch.tensor(rewards, dtype=torch.float32)
