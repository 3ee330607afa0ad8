"""Tests of vlm_bench.qwen_tower: the fast Qwen2.5-VL tower against transformers' own forward.

The fast tower runs on the weights of ``encoder.module`` (transformers' tower,
which the learner's encoder runs). On the CPU the eager fast tower must give
the very bits of transformers' tower; the compiled one agrees to rounding. The
GPU paths (varlen, compiled at bfloat16) are checked in
tests/gpu/test_fast_tower_on_gpu.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vlm_bench import qwen_tower
from vlm_bench.prep import client_encoder
from vlm_bench.qwen_tower import (
    QwenEncoder,
    QwenTower,
    SegmentPlan,
    VarlenSegments,
    check_attention,
)
from vlm_tutorial.offline.tiny import tiny_model_path
from vlm_tutorial.prompts import build_prompt
from vlm_tutorial.vision import load_vision_encoder


def noise_image(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def batch():
    """Two images of different sizes; the first has windows of several lengths."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_path("qwen2_5_vl"))
    prompt = build_prompt(processor, "Describe the images.", num_images=2)
    images = [noise_image(252, 168, 0), noise_image(112, 140, 1)]
    return processor(text=prompt, images=images, return_tensors="pt")


@pytest.fixture(scope="module")
def encoders():
    """The learner's encoder of the tiny checkpoint, in float32 and bfloat16."""
    path = tiny_model_path("qwen2_5_vl")
    return {
        dtype: load_vision_encoder(path, dtype=dtype) for dtype in (torch.float32, torch.bfloat16)
    }


@pytest.fixture(scope="module")
def towers(encoders):
    """transformers' tower: the encoder's module."""
    return {dtype: encoder.module for dtype, encoder in encoders.items()}


def reference(tower, batch) -> torch.Tensor:
    with torch.inference_mode():
        pixels = batch["pixel_values"].to(tower.dtype)
        return tower(pixels, grid_thw=batch["image_grid_thw"]).pooler_output


def fast(runner, batch, dtype) -> torch.Tensor:
    with torch.inference_mode():
        return runner(batch["pixel_values"].to(dtype), batch["image_grid_thw"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_eager_tower_is_bit_identical_to_transformers(towers, batch, dtype):
    tower = towers[dtype]
    expected = reference(tower, batch)
    got = fast(QwenTower(tower), batch, dtype)
    rows = int(batch["image_grid_thw"].prod(-1).sum()) // 4
    assert got.shape == (rows, tower.config.out_hidden_size)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fast_client_encoder_gives_the_learners_rows(encoders, batch, dtype):
    """The benchmark's fast encoder and the notebooks' encoder: the same rows, same bits."""
    encoder = encoders[dtype]
    fast = client_encoder(encoder, "fast")
    assert isinstance(fast, QwenEncoder) and fast.tower.tower is encoder.module  # shared weights
    assert fast.text_hidden_size == encoder.text_hidden_size
    assert torch.equal(fast(batch), encoder(batch))
    assert client_encoder(encoder, "transformers") is encoder


def test_images_in_one_call_equal_images_one_by_one(towers, batch):
    tower = towers[torch.float32]
    runner = QwenTower(tower)
    grid = batch["image_grid_thw"]
    patches = grid.prod(-1).tolist()
    rows = [p // 4 for p in patches]
    together = fast(runner, batch, torch.float32)
    first = {"pixel_values": batch["pixel_values"][: patches[0]], "image_grid_thw": grid[:1]}
    second = {"pixel_values": batch["pixel_values"][patches[0] :], "image_grid_thw": grid[1:]}
    torch.testing.assert_close(together[: rows[0]], fast(runner, first, torch.float32))
    torch.testing.assert_close(together[rows[0] :], fast(runner, second, torch.float32))


@pytest.mark.slow
def test_compiled_tower_agrees_to_rounding(towers, batch):
    """torch.compile (inductor on the CPU: tens of seconds) fuses the elementwise work."""
    fp32 = towers[torch.float32]
    truth = reference(fp32, batch)
    compiled = QwenTower(fp32, compile=True)
    torch.testing.assert_close(fast(compiled, batch, torch.float32), truth, atol=1e-4, rtol=1e-4)

    # bfloat16: no further from the float32 result than transformers' own bfloat16 tower.
    bf16 = towers[torch.bfloat16]
    eager_error = (reference(bf16, batch).float() - truth).abs().max()
    compiled_bf16 = QwenTower(bf16, compile=True)
    error = (fast(compiled_bf16, batch, torch.bfloat16).float() - truth).abs().max()
    assert eager_error > 0 and error <= 2 * eager_error

    # Another image size runs the same compiled graph (the token dimension is dynamic).
    one = {
        "pixel_values": batch["pixel_values"][:16],
        "image_grid_thw": torch.tensor([[1, 4, 4]]),
    }
    torch.testing.assert_close(fast(compiled, one, torch.float32), reference(fp32, one))


def test_segment_plan_equals_per_segment_attention():
    torch.manual_seed(0)
    cu = torch.tensor([0, 16, 32, 40, 56, 60, 60, 76], dtype=torch.int32)
    q, k, v = (torch.randn(76, 2, 8) for _ in range(3))
    plan = SegmentPlan(cu, torch.device("cpu"))
    assert sorted(length for length, _ in plan.groups) == [4, 8, 16]

    expected = torch.cat(
        [
            torch.nn.functional.scaled_dot_product_attention(
                *(t[s:e].transpose(0, 1) for t in (q, k, v))
            ).transpose(0, 1)
            for s, e in zip(cu[:-1].tolist(), cu[1:].tolist(), strict=True)
            if e > s
        ]
    )
    torch.testing.assert_close(plan.attend(q, k, v, scale=8**-0.5), expected)


def test_varlen_tower_passes_the_windows_and_images_to_varlen_attn(towers, batch, monkeypatch):
    """The varlen wiring on the CPU, with a per-segment stand-in for torch's CUDA-only kernel."""
    import torch.nn.attention.varlen as varlen

    seen = []

    def per_segment(q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None):
        assert cu_q is cu_k and cu_q.dtype == torch.int32 and max_q == max_k
        bounds = cu_q.tolist()
        assert max_q == max(b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True))
        assert v.is_contiguous()
        seen.append(len(bounds) - 1)
        return torch.cat(
            [
                torch.nn.functional.scaled_dot_product_attention(
                    *(t[a:b].transpose(0, 1) for t in (q, k, v)), scale=scale
                ).transpose(0, 1)
                for a, b in zip(bounds[:-1], bounds[1:], strict=True)
            ]
        )

    monkeypatch.setattr(varlen, "varlen_attn", per_segment)
    tower = towers[torch.float32]
    got = fast(QwenTower(tower, attention="varlen"), batch, torch.float32)
    torch.testing.assert_close(got, reference(tower, batch))
    # one call per block: the two images in the full-attention block, every window elsewhere
    assert len(seen) == len(tower.blocks)
    assert seen[tower.fullatt_block_indexes[0]] == 2
    assert max(seen) > 4


def test_varlen_segments_take_the_longest_segment_and_int32_bounds():
    plan = VarlenSegments(torch.tensor([0, 16, 32, 40, 96]), torch.device("cpu"))
    assert plan.max_length == 56
    assert plan.cu_seqlens.dtype == torch.int32
    assert plan.cu_seqlens.tolist() == [0, 16, 32, 40, 96]


@pytest.mark.parametrize(
    ("attention", "device", "dtype", "message"),
    [
        ("varlen", "cpu", torch.bfloat16, "CUDA only"),
        ("cudnn", "cpu", torch.float32, "CUDA only"),
        ("varlen", "cuda", torch.float32, "bfloat16 or float16"),
        ("flash", "cpu", None, "not one of"),
    ],
)
def test_check_attention_says_what_is_wrong(attention, device, dtype, message):
    with pytest.raises(ValueError, match=message):
        check_attention(attention, device, dtype)


def test_check_attention_accepts_what_runs():
    check_attention("sdpa", "cpu", torch.float32)
    check_attention("sdpa", "cuda", torch.float32)
    check_attention("varlen", "cuda", torch.bfloat16)
    check_attention("cudnn", "cuda", torch.float32)


def test_client_encoder_refuses_what_cannot_run_here(encoders):
    with pytest.raises(ValueError, match="CUDA only"):
        client_encoder(encoders[torch.float32], "varlen")
    with pytest.raises(ValueError, match="not one of"):
        client_encoder(encoders[torch.float32], "flash")
    llama4 = load_vision_encoder(tiny_model_path("llama4"), dtype=torch.float32)
    with pytest.raises(ValueError, match="fast Qwen2.5-VL tower"):
        client_encoder(llama4, "fast+compile")


def test_unknown_activation_is_refused(towers):
    tower = towers[torch.float32]
    saved = tower.config.hidden_act
    tower.config.hidden_act = "relu"
    try:
        with pytest.raises(ValueError, match="hidden_act='relu'"):
            QwenTower(tower)
    finally:
        tower.config.hidden_act = saved


def test_attention_argument_is_checked(towers):
    with pytest.raises(ValueError, match="attention='flash'"):
        QwenTower(towers[torch.float32], attention="flash")
    assert qwen_tower.ATTENTION_BACKENDS == ("sdpa", "cudnn", "varlen")
