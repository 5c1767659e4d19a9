"""On CUDA (skipped without it): training as a user runs it there (static-cache sampler, bf16 sampling copy,
chunked logits, bf16 autocast), and sharded with FSDP2 over one process (NCCL)."""

import pytest
import torch
from conftest import tiny_overrides
from safetensors.torch import load_file

from nrt import load_config, train

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("sharding", ["none", "fsdp"])
def test_training_steps_on_cuda(tiny_model_dir, qa_file, tmp_path, sharding):
    cfg = load_config("nrt-ws", tiny_overrides(tiny_model_dir, qa_file, tmp_path, dtype="auto", sharding=sharding))
    result = train(cfg)
    assert len(result.metrics) == 2 and all(m["skipped_updates"] == 0 for m in result.metrics)
    trained = load_file(result.checkpoint / "model" / "model.safetensors")
    start = load_file(tiny_model_dir / "model.safetensors")
    assert any(not torch.equal(trained[name], start[name]) for name in start if ".layers." in name)
