"""On CUDA (skipped without it): training as a user runs it there (static-cache sampler, bf16 sampling copy,
chunked logits, bf16 autocast), and sharded with FSDP2 over one process (NCCL)."""

import json

import pytest
import torch
from conftest import tiny_overrides
from safetensors.torch import load_file

from nrt import load_config, train
from nrt.cli import main
from nrt.modeling import inference_device, inference_dtype, load_policy

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize(("sharding", "pad_vocab"), [("none", 0), ("fsdp", 0), ("none", 64)])
def test_training_steps_on_cuda(tiny_model_dir, qa_file, tmp_path, sharding, pad_vocab):
    cfg = load_config("nrt-ws", tiny_overrides(tiny_model_dir, qa_file, tmp_path, dtype="auto", sharding=sharding,
                                               pad_vocab_to_multiple_of=pad_vocab))
    result = train(cfg)
    assert len(result.metrics) == 2 and all(m["skipped_updates"] == 0 for m in result.metrics)
    trained = load_file(result.checkpoint / "model" / "model.safetensors")
    start = load_file(tiny_model_dir / "model.safetensors")
    assert any(not torch.equal(trained[name], start[name]) for name in start if ".layers." in name)


def test_eval_runs_on_cuda_in_bf16_with_the_compiled_sampler(tiny_model_dir, qa_file, tmp_path):
    device = inference_device()
    policy = load_policy(str(tiny_model_dir), device=device, dtype=inference_dtype("auto", device))
    weight = next(policy.model.parameters())
    assert weight.is_cuda and weight.dtype == torch.bfloat16
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", str(tiny_model_dir), "--tasks", str(qa_file), "--limit", "3",
                 "--max-trace-tokens", "6", "--max-answer-tokens", "3", "--output", str(out)]) == 0
    samples = json.loads(out.read_text())["tasks"][0]["samples"]
    assert len(samples) == 3 and all(s["trace_tokens"] <= 6 for s in samples)


def test_lora_checkpoint_is_merged_without_a_second_copy_on_the_gpu(tiny_model_dir, tmp_path):
    from nrt.checkpoint import write_checkpoint
    from nrt.modeling import apply_lora

    policy = load_policy(str(tiny_model_dir), device="cuda")
    model = apply_lora(policy.model, 4, 8, 0.0, ["q_proj", "v_proj"], [policy.delimiter_id])
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    held = torch.cuda.memory_allocated()
    write_checkpoint(tmp_path, model, policy.tokenizer, {}, lora=True)
    assert torch.cuda.max_memory_allocated() - held < weights / 10  # a deep copy on the GPU held all of them again
    assert next(model.parameters()).is_cuda
