"""The three request builders, with the tiny checkpoints' real processors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vlm_bench.requests import (
    describe_request,
    precomputed_embedding_request,
    processor_output_request,
    raw_request,
    run_processor,
)
from vlm_tutorial.errors import EmbeddingShapeError, RequestFormatError
from vlm_tutorial.families import LLAMA4, QWEN2_5_VL, get_family
from vlm_tutorial.prompts import build_prompt
from vlm_tutorial.vision import load_vision_encoder

FAMILIES = ("qwen2_5_vl", "llama4")


def has_pixel_tensors(image_data) -> bool:
    """Whether any dict of ``image_data`` carries ``pixel_values``."""
    return any(isinstance(item, dict) and "pixel_values" in item for item in image_data)


@pytest.fixture(scope="module")
def encoders(tiny_paths):
    return {
        name: load_vision_encoder(path, device="cpu", dtype=torch.float32)
        for name, path in tiny_paths.items()
    }


@pytest.fixture(scope="module")
def prompts(processors):
    return {name: build_prompt(p, "What's shown here: <image>?") for name, p in processors.items()}


# --- format 1 ---------------------------------------------------------------------------------


def test_raw_request_passes_images_through(prompts, image):
    req = raw_request(prompts["qwen2_5_vl"], image)
    assert req == {"prompt": prompts["qwen2_5_vl"], "image_data": [image]}


def test_raw_request_turns_paths_into_str(prompts, image, tmp_path):
    image.save(tmp_path / "cat.png")
    req = raw_request(prompts["llama4"], [Path(tmp_path / "cat.png")])
    assert req["image_data"] == [str(tmp_path / "cat.png")]


def test_raw_request_rejects_bad_input(prompts, image):
    with pytest.raises(RequestFormatError, match="prompt must be a str"):
        raw_request(None, [image])
    with pytest.raises(RequestFormatError, match="images is empty"):
        raw_request(prompts["llama4"], [])
    with pytest.raises(RequestFormatError, match="1 image placeholder"):
        raw_request(prompts["llama4"], [image, image])


# --- format 2 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_processor_output_request_carries_the_processor_output(processors, prompts, image, family):
    proc = processors[family]
    req = processor_output_request(proc, prompts[family], [image])
    (item,) = req["image_data"]
    assert item["format"] == "processor_output"
    expected = proc(
        text=[prompts[family]],
        images=[image],
        return_tensors="pt",
        add_special_tokens=family != "llama4",
    )
    assert req["input_ids"] == expected["input_ids"][0].tolist()
    torch.testing.assert_close(item["pixel_values"], expected["pixel_values"])
    assert req["input_ids"].count(get_family(family).embedding_token_id) > 0


def test_llama4_input_ids_have_one_begin_of_text(processors, prompts, image):
    req = processor_output_request(processors["llama4"], prompts["llama4"], [image])
    assert req["input_ids"][0] == 200000
    assert req["input_ids"].count(200000) == 1


def test_custom_preprocessing_changes_the_image_token_count(processors, prompts, image):
    proc = processors["qwen2_5_vl"]
    default = run_processor(proc, prompts["qwen2_5_vl"], [image])
    pixels = int(default["image_grid_thw"].prod()) * 14 * 14
    budget = {"shortest_edge": 28 * 28, "longest_edge": pixels // 4}  # min_pixels, max_pixels
    small = run_processor(proc, prompts["qwen2_5_vl"], [image], size=budget)
    pad = QWEN2_5_VL.embedding_token_id
    n_default = default["input_ids"][0].tolist().count(pad)
    n_small = small["input_ids"][0].tolist().count(pad)
    assert n_small < n_default
    assert n_small == int(small["image_grid_thw"].prod()) // 4


def test_llama4_max_patches_changes_the_tile_count(processors, prompts, image):
    proc = processors["llama4"]
    default = run_processor(proc, prompts["llama4"], [image])
    one = run_processor(proc, prompts["llama4"], [image], max_patches=1)
    assert one["pixel_values"].shape[0] == 1 < default["pixel_values"].shape[0]


# --- format 3 ---------------------------------------------------------------------------------


def test_qwen_precomputed_request_is_lean(processors, prompts, image, encoders):
    req = precomputed_embedding_request(
        processors["qwen2_5_vl"], prompts["qwen2_5_vl"], [image], encoders["qwen2_5_vl"]
    )
    (item,) = req["image_data"]
    assert set(item) == {"format", "feature", "image_grid_thw"}
    assert item["format"] == "precomputed_embedding"
    assert not has_pixel_tensors(req["image_data"])
    rows = req["input_ids"].count(QWEN2_5_VL.embedding_token_id)
    assert tuple(item["feature"].shape) == (rows, encoders["qwen2_5_vl"].text_hidden_size)


def test_llama4_precomputed_request_uses_the_form_sglang_0_5_17_accepts(
    processors, prompts, image, encoders
):
    req = precomputed_embedding_request(
        processors["llama4"], prompts["llama4"], [image], encoders["llama4"]
    )
    (item,) = req["image_data"]
    # No input_ids in the dict: SGLang takes generate(input_ids=...)'s (base_processor.py, 0.5.17).
    assert set(item) == {"format", "precomputed_embeddings"}
    assert item["format"] == "processor_output"
    assert not has_pixel_tensors(req["image_data"])
    rows = req["input_ids"].count(LLAMA4.embedding_token_id)
    assert item["precomputed_embeddings"].shape[0] == rows


def test_full_processor_output_kept_only_on_request(processors, prompts, image, encoders):
    req = precomputed_embedding_request(
        processors["qwen2_5_vl"],
        prompts["qwen2_5_vl"],
        [image],
        encoders["qwen2_5_vl"],
        keep_processor_output=True,
    )
    assert has_pixel_tensors(req["image_data"])
    assert req["image_data"][0]["format"] == "precomputed_embedding"
    with pytest.raises(RequestFormatError, match="not possible for llama4"):
        precomputed_embedding_request(
            processors["llama4"],
            prompts["llama4"],
            [image],
            encoders["llama4"],
            keep_processor_output=True,
        )


def test_a_precomputed_tensor_can_be_reused(processors, prompts, image, encoders):
    proc, enc = processors["qwen2_5_vl"], encoders["qwen2_5_vl"]
    first = precomputed_embedding_request(proc, prompts["qwen2_5_vl"], [image], enc)
    emb = first["image_data"][0]["feature"]
    other = build_prompt(proc, "Describe <image> in one word.")
    again = precomputed_embedding_request(proc, other, [image], emb)
    assert again["image_data"][0]["feature"] is emb
    with pytest.raises(EmbeddingShapeError, match="expected .* embedding rows"):
        precomputed_embedding_request(proc, other, [image], emb[:-2])


@pytest.mark.parametrize("family", FAMILIES)
def test_two_images_travel_in_one_dict(processors, image, encoders, family):
    proc = processors[family]
    prompt = build_prompt(proc, "Compare <image> with <image>.", num_images=2)
    proc_req = processor_output_request(proc, prompt, [image, image])
    emb_req = precomputed_embedding_request(proc, prompt, [image, image], encoders[family])
    assert len(proc_req["image_data"]) == len(emb_req["image_data"]) == 1
    one = precomputed_embedding_request(
        proc, build_prompt(proc, "<image>"), [image], encoders[family]
    )
    key = "feature" if family == "qwen2_5_vl" else "precomputed_embeddings"
    assert emb_req["image_data"][0][key].shape[0] == 2 * one["image_data"][0][key].shape[0]
    if family == "qwen2_5_vl":
        assert emb_req["image_data"][0]["image_grid_thw"].shape == (2, 3)


def test_describe_request_counts_tensor_bytes(processors, prompts, image, encoders):
    req = precomputed_embedding_request(
        processors["qwen2_5_vl"], prompts["qwen2_5_vl"], [image], encoders["qwen2_5_vl"]
    )
    info = describe_request(req)
    item = req["image_data"][0]
    expected = item["feature"].numel() * 4 + item["image_grid_thw"].numel() * 8
    assert info["tensor_bytes"] == expected
    assert info["input_ids_len"] == len(req["input_ids"])
    assert info["image_data"][0]["feature"] == tuple(item["feature"].shape)


def test_raw_request_makes_existing_relative_paths_absolute(prompts, tmp_path, monkeypatch, image):
    image.save(tmp_path / "pic.png")
    monkeypatch.chdir(tmp_path)
    req = raw_request(prompts["qwen2_5_vl"], ["pic.png"])
    assert req["image_data"] == [str(tmp_path / "pic.png")]
    # a URL passes as given, for the engine to download once
    req = raw_request(prompts["qwen2_5_vl"], ["http://127.0.0.1:9/pic.png"])
    assert req["image_data"] == ["http://127.0.0.1:9/pic.png"]


@pytest.mark.parametrize(
    ("source", "error", "message"),
    [
        ("missing.png", "ImageLoadError", "file not found: missing.png"),
        ("aGVsbG8gd29ybGQ=", "ImageDecodeError", "not an image PIL can read"),
        ("data:image/png;base64,@@@", "ImageDecodeError", "invalid base64"),
        (b"not an image", "ImageDecodeError", "not an image PIL can read"),
    ],
)
def test_raw_request_refuses_sources_the_engine_could_not_read(prompts, source, error, message):
    import vlm_tutorial.errors as errors

    with pytest.raises(getattr(errors, error), match=message):
        raw_request(prompts["qwen2_5_vl"], [source])
