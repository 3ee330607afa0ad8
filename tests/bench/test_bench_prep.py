"""Tests of vlm_bench.prep: a batch's requests prepared together equal one-by-one ones.

Together means the images decoded in a thread pool and one encoder call for
all of them; the requests must be what preparing each request on its own
gives (same ids, same embedding rows, same dict keys).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from vlm_bench.inputs import image_file
from vlm_bench.prep import (
    FORMATS,
    embedding_rows,
    merge_processor_outputs,
    prepare,
)
from vlm_tutorial.families import get_family
from vlm_tutorial.offline.tiny import tiny_model_path
from vlm_tutorial.prompts import build_prompt
from vlm_tutorial.vision import load_vision_encoder

FAMILIES = ["qwen2_5_vl", "llama4"]


class CountingEncoder:
    """The real encoder, counting its calls and the images it was given."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self.text_hidden_size = encoder.text_hidden_size
        self.calls: list[int] = []

    def __call__(self, inputs: Any) -> torch.Tensor:
        self.calls.append(len(inputs["pixel_values"]))
        return self.encoder(inputs)


@dataclass
class Ctx:
    family: Any
    processor: Any
    encoder: Any
    sync: Any = lambda: None
    processor_kwargs: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def contexts(processors):
    out = {}
    for name in FAMILIES:
        encoder = load_vision_encoder(tiny_model_path(name), dtype=torch.float32)
        out[name] = Ctx(get_family(name), processors[name], CountingEncoder(encoder))
    return out


def image_paths(tmp_path_factory, family: str, n: int) -> list[str]:
    folder = str(tmp_path_factory.mktemp(f"images-{family}"))
    side = 112 if family == "qwen2_5_vl" else 56
    return [image_file(side, i, folder) for i in range(n)]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("fmt", ["precomputed", "processor_output", "raw"])
def test_batch_prepared_together_equals_one_by_one(contexts, tmp_path_factory, family, fmt):
    ctx = contexts[family]
    prompt = build_prompt(ctx.processor, "What is in the image?", num_images=1)
    paths = image_paths(tmp_path_factory, family, 3)

    ctx.encoder.calls.clear()
    together, parts = prepare(ctx, fmt, paths, prompt)
    calls_together = list(ctx.encoder.calls)
    ctx.encoder.calls.clear()
    apart, _ = prepare(ctx, fmt, paths, prompt, together=False)

    assert set(parts) == {"decode_s", "processor_s", "encoder_s", "build_s"}
    assert len(together) == len(apart) == 3
    if fmt == "precomputed":
        assert len(calls_together) == 1  # one encoder call for the three images
        assert len(ctx.encoder.calls) == 3
        assert parts["encoder_s"] > 0
    else:
        assert calls_together == [] and parts["encoder_s"] == 0
    for a, b in zip(together, apart, strict=True):
        assert a.keys() == b.keys()
        if fmt == "raw":
            assert a == b
            continue
        assert a["input_ids"] == b["input_ids"]
        (item_a,), (item_b,) = a["image_data"], b["image_data"]
        assert item_a.keys() == item_b.keys()
        for key, value in item_a.items():
            if isinstance(value, torch.Tensor):
                torch.testing.assert_close(value, item_b[key], atol=1e-5, rtol=1e-5)
            else:
                assert value == item_b[key]


def test_precomputed_full_keeps_the_processor_output(contexts, tmp_path_factory):
    ctx = contexts["qwen2_5_vl"]
    prompt = build_prompt(ctx.processor, "What is in the image?", num_images=1)
    requests, _ = prepare(ctx, "precomputed_full", image_paths(tmp_path_factory, "q", 2), prompt)
    for request in requests:
        (item,) = request["image_data"]
        assert item["format"] == "precomputed_embedding"
        assert {"feature", "image_grid_thw", "pixel_values", "input_ids"} <= set(item)
        assert item["feature"].shape[0] == embedding_rows(ctx.family, request["input_ids"])


def test_prepare_refuses_unknown_formats_and_empty_batches(contexts):
    ctx = contexts["qwen2_5_vl"]
    with pytest.raises(ValueError, match="unknown format 'jpeg'"):
        prepare(ctx, "jpeg", ["x.png"], "prompt")
    with pytest.raises(ValueError, match="at least one image"):
        prepare(ctx, "raw", [], "prompt")
    assert FORMATS == ("raw", "processor_output", "precomputed", "precomputed_full")


def test_merge_processor_outputs_concatenates_what_the_encoder_reads():
    a = {"pixel_values": torch.ones(4, 3), "image_grid_thw": torch.tensor([[1, 2, 2]]), "x": 1}
    b = {"pixel_values": torch.zeros(8, 3), "image_grid_thw": torch.tensor([[1, 2, 4]])}
    merged = merge_processor_outputs([a, b])
    assert sorted(merged) == ["image_grid_thw", "pixel_values"]
    assert merged["pixel_values"].shape == (12, 3)
    assert merged["image_grid_thw"].tolist() == [[1, 2, 2], [1, 2, 4]]
    with pytest.raises(KeyError, match="image_grid_thw"):  # outputs of different models
        merge_processor_outputs([a, {"pixel_values": torch.zeros(1, 3)}])
    with pytest.raises(ValueError, match="at least one"):
        merge_processor_outputs([])
