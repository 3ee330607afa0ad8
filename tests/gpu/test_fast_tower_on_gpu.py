"""The fast Qwen2.5-VL tower on the GPU, in the forms the benchmark times, against transformers'.

Qwen2.5-VL-3B's real vision tower (32 blocks of width 1280, 16 heads of 80)
with random weights, in bfloat16: every variant of
:class:`vlm_bench.qwen_tower.QwenTower` (batched SDPA or one varlen call
per block; SDPA's default or cuDNN backend; eager or compiled) must be no further from transformers' float32
tower than transformers' own bfloat16 tower is, on two images of different
sizes in one call (edge windows of several lengths). Whether a variant gives
the very bits of transformers' bfloat16 tower is recorded, not asserted.
The tiny checkpoint then checks the benchmark's encoder end to end
(:class:`vlm_bench.qwen_tower.QwenEncoder` around ``load_vision_encoder``).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

pytestmark = pytest.mark.gpu

#: (attention, compile) pairs of QwenTower; the benchmark times one of them.
VARIANTS = [(a, c) for a in ("sdpa", "cudnn", "varlen") for c in (False, True)]

#: Image grids in patches (t, h, w): 32 x 32 patches (256 tokens) and 46 x 34
#: (391 tokens, windows cut at the right and bottom edges).
GRIDS = [[1, 32, 32], [1, 46, 34]]


@pytest.fixture(scope="module")
def towers() -> dict[str, Any]:
    """The real-size tower with random weights: float32, and a bfloat16 copy of the same weights."""
    import torch
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
        Qwen2_5_VisionTransformerPretrainedModel,
    )

    from vlm_bench.realscale import real_config

    torch.manual_seed(0)
    config = real_config("qwen2_5_vl").vision_config
    with torch.device("cuda"):
        fp32 = Qwen2_5_VisionTransformerPretrainedModel._from_config(config, dtype=torch.float32)
    fp32.eval()
    bf16 = copy.deepcopy(fp32).to(torch.bfloat16)
    return {"fp32": fp32, "bf16": bf16}


@pytest.fixture(scope="module")
def inputs() -> dict[str, Any]:
    import torch

    grid = torch.tensor(GRIDS)
    patches = int(grid.prod(-1).sum())
    generator = torch.Generator().manual_seed(1)
    pixels = torch.randn(patches, 3 * 2 * 14 * 14, generator=generator)
    return {"pixel_values": pixels.cuda(), "image_grid_thw": grid}


def run_reference(tower: Any, inputs: dict[str, Any]) -> Any:
    import torch

    with torch.inference_mode():
        pixels = inputs["pixel_values"].to(tower.dtype)
        return tower(pixels, grid_thw=inputs["image_grid_thw"].cuda()).pooler_output.float()


@pytest.fixture(scope="module")
def references(towers: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    return {name: run_reference(tower, inputs) for name, tower in towers.items()}


@pytest.mark.parametrize(("attention", "compiled"), VARIANTS)
def test_fast_tower_within_bfloat16_rounding_of_transformers(
    attention: str,
    compiled: bool,
    towers: dict[str, Any],
    inputs: dict[str, Any],
    references: dict[str, Any],
    gpu_record: dict[str, Any],
) -> None:
    import torch

    from vlm_bench.qwen_tower import QwenTower

    truth, bf16_reference = references["fp32"], references["bf16"]
    runner = QwenTower(towers["bf16"], attention=attention, compile=compiled)
    with torch.inference_mode():
        got = runner(inputs["pixel_values"].to(torch.bfloat16), inputs["image_grid_thw"]).float()

    assert got.shape == truth.shape == (sum(t * h * w for t, h, w in GRIDS) // 4, 2048)
    assert torch.isfinite(got).all()
    reference_error = (bf16_reference - truth).abs()
    error = (got - truth).abs()
    gpu_record.setdefault("qwen_tower", {})[f"{attention}{'+compile' if compiled else ''}"] = {
        "max_abs_error": float(error.max()),
        "mean_abs_error": float(error.mean()),
        "transformers_bf16_max_abs_error": float(reference_error.max()),
        "transformers_bf16_mean_abs_error": float(reference_error.mean()),
        "bit_identical_to_transformers_bf16": bool(torch.equal(got, bf16_reference)),
    }
    assert float(reference_error.max()) > 0
    assert float(error.max()) <= 2 * float(reference_error.max())
    assert float(error.mean()) <= 2 * float(reference_error.mean())


@pytest.mark.parametrize(("attention", "compiled"), VARIANTS)
def test_fast_encoder_on_the_tiny_checkpoint(attention: str, compiled: bool) -> None:
    """The benchmark's fast encoder, around the learner's encoder, within its bf16 rounding."""
    import torch
    from transformers import AutoProcessor

    from vlm_bench.qwen_tower import QwenEncoder
    from vlm_tutorial.images import example_image
    from vlm_tutorial.offline.tiny import tiny_model_path
    from vlm_tutorial.prompts import build_prompt
    from vlm_tutorial.vision import load_vision_encoder

    path = tiny_model_path("qwen2_5_vl")
    processor = AutoProcessor.from_pretrained(path)
    prompt = build_prompt(processor, "Describe the images.", num_images=2)
    images = [example_image(size=(252, 168)), example_image(size=(112, 140))]
    batch = processor(text=prompt, images=images, return_tensors="pt", device="cuda")
    rounded_encoder = load_vision_encoder(path, device="cuda", dtype=torch.bfloat16)
    fast = QwenEncoder(rounded_encoder, attention=attention, compile=compiled)
    truth = load_vision_encoder(path, device="cuda", dtype=torch.float32)

    got, expected, rounded = (e(batch).float() for e in (fast, truth, rounded_encoder))
    assert (fast.tower.attention, fast.tower.compile) == (attention, compiled)
    assert got.shape == expected.shape
    assert float((got - expected).abs().max()) <= 2 * float((rounded - expected).abs().max())
