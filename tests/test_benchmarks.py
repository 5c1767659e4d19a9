"""The benchmark's arithmetic: update FLOPs with and without gradient checkpointing's recompute."""

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("benchmark_gpu", Path(__file__).parent.parent / "benchmarks" / "gpu.py")
gpu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu)


@pytest.mark.parametrize(("lora", "recompute", "model_flops", "hardware_flops"), [
    (False, False, 6e12, 6e12),
    (False, True, 6e12, 8e12),  # backward runs the forward again: 2 x params x tokens more
    (True, False, 4e12, 4e12),  # no weight gradients for LoRA's frozen matrices
    (True, True, 4e12, 6e12),
])
def test_update_rates_count_the_recompute_in_hfu_only(lora, recompute, model_flops, hardware_flops):
    rates = gpu.update_rates(1_000_000, 1_000_000, 2.0, lora=lora, recompute=recompute)  # 1e12 params x tokens
    assert rates["update TFLOP/s"] == pytest.approx(model_flops / 2 / 1e12)
    assert rates["MFU %"] == pytest.approx(100 * model_flops / 2 / 1e12 / gpu.H100_BF16_TFLOPS)
    assert rates["HFU %"] == pytest.approx(100 * hardware_flops / 2 / 1e12 / gpu.H100_BF16_TFLOPS)
