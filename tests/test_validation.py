"""validate_image_data: every rule has a failing case and a valid twin."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from vlm_tutorial.errors import (
    EmbeddingShapeError,
    RequestFormatError,
    UnsupportedImageSourceError,
)
from vlm_tutorial.families import LLAMA4, QWEN2_5_VL
from vlm_tutorial.validation import dict_format, has_pixel_tensors, validate_image_data

QWEN_PAD = QWEN2_5_VL.embedding_token_id
LLAMA_PATCH = LLAMA4.embedding_token_id
HIDDEN = 32


def qwen_ids(n_tokens: int) -> list[int]:
    return [1, 2, 151652] + [QWEN_PAD] * n_tokens + [151653, 3]


def llama_ids(n_tokens: int) -> list[int]:
    return [200000, 200080] + [LLAMA_PATCH] * n_tokens + [200081, 5]


def qwen_embedding_dict(rows: int = 16, width: int = HIDDEN, grid=((1, 8, 8),)) -> dict:
    return {
        "format": "precomputed_embedding",
        "feature": torch.zeros(rows, width),
        "image_grid_thw": torch.tensor(grid),
    }


def llama_embedding_dict(rows: int = 16, width: int = HIDDEN) -> dict:
    return {
        "format": "processor_output",
        "input_ids": torch.tensor([llama_ids(16)]),
        "precomputed_embeddings": torch.zeros(rows, width),
    }


QWEN_PROMPT = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Hi<|im_end|>\n"
LLAMA_PROMPT = "<|header_start|>user<|header_end|>\n\n<|image|>Hi<|eot|>"


# --- raw images ---------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", [QWEN_PROMPT, LLAMA_PROMPT])
def test_raw_images_of_every_kind_pass(prompt):
    img = Image.new("RGB", (8, 8))
    for item in (img, "cat.png", "https://example.com/a.jpg", "aGVsbG8=", b"\x89PNG"):
        validate_image_data([item], prompt=prompt)


def test_raw_image_count_must_match_placeholders():
    with pytest.raises(RequestFormatError, match="1 image placeholder.*2 image"):
        validate_image_data(["a.png", "b.png"], prompt=QWEN_PROMPT)
    validate_image_data(["a.png", "b.png"], prompt=QWEN_PROMPT + QWEN_PROMPT)


def test_raw_images_need_a_placeholder():
    with pytest.raises(RequestFormatError, match="no image placeholder.*build_prompt"):
        validate_image_data(["a.png"], prompt="What is this?")
    validate_image_data(["a.png"], prompt=LLAMA_PROMPT)


def test_unsupported_item_is_a_type_error():
    with pytest.raises(UnsupportedImageSourceError, match=r"image_data\[1\] is a int") as info:
        validate_image_data(["a.png", 42], prompt=QWEN_PROMPT + QWEN_PROMPT)
    assert isinstance(info.value, TypeError)


def test_none_and_empty_are_text_only():
    validate_image_data(None, prompt="hi")
    validate_image_data([], prompt="hi")


# --- the one-format rules -------------------------------------------------------------------


def test_mixed_formats_rejected():
    emb = qwen_embedding_dict()
    with pytest.raises(RequestFormatError, match="mixes preprocessed dicts"):
        validate_image_data([emb, "a.png"], input_ids=qwen_ids(16))
    validate_image_data([emb], input_ids=qwen_ids(16))


def test_more_than_one_dict_rejected():
    with pytest.raises(RequestFormatError, match="exactly one, which carries all the images"):
        validate_image_data([qwen_embedding_dict(), qwen_embedding_dict()], input_ids=qwen_ids(32))
    validate_image_data(
        [qwen_embedding_dict(rows=32, grid=((1, 8, 8), (1, 8, 8)))], input_ids=qwen_ids(32)
    )


def test_dict_with_prompt_instead_of_input_ids_rejected():
    with pytest.raises(RequestFormatError, match="needs input_ids=..., not prompt="):
        validate_image_data([qwen_embedding_dict()], prompt=QWEN_PROMPT)
    with pytest.raises(RequestFormatError, match="either prompt= or input_ids="):
        validate_image_data([qwen_embedding_dict()], prompt=QWEN_PROMPT, input_ids=qwen_ids(16))
    validate_image_data([qwen_embedding_dict()], input_ids=qwen_ids(16))


def test_dict_without_known_format_rejected():
    with pytest.raises(RequestFormatError, match="format='processor_output' or"):
        validate_image_data([{"feature": torch.zeros(2, 2)}], input_ids=qwen_ids(16))
    assert dict_format({"format": "PRECOMPUTED_EMBEDDING"}) == "precomputed_embedding"
    assert dict_format("a.png") is None


def test_input_ids_without_image_tokens_rejected():
    with pytest.raises(RequestFormatError, match="contain no image token"):
        validate_image_data([llama_embedding_dict()], input_ids=[1, 2, 3])
    validate_image_data([llama_embedding_dict()], input_ids=llama_ids(16))


def test_batched_input_ids_rejected_single_row_accepted():
    with pytest.raises(RequestFormatError, match="holds 2 sequences"):
        validate_image_data([qwen_embedding_dict()], input_ids=[qwen_ids(16), qwen_ids(16)])
    validate_image_data([qwen_embedding_dict()], input_ids=torch.tensor([qwen_ids(16)]))


# --- embeddings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "ids", "key"),
    [
        (qwen_embedding_dict, qwen_ids, "feature"),
        (llama_embedding_dict, llama_ids, "precomputed_embeddings"),
    ],
)
def test_embedding_rows_must_match_placeholders(make, ids, key):
    with pytest.raises(EmbeddingShapeError, match=f"expected 16 embedding rows.*got 15 in '{key}'"):
        validate_image_data([make(rows=15)], input_ids=ids(16))
    validate_image_data([make(rows=16)], input_ids=ids(16))


@pytest.mark.parametrize(
    ("make", "ids"), [(qwen_embedding_dict, qwen_ids), (llama_embedding_dict, llama_ids)]
)
def test_embedding_width_must_match_hidden_size(make, ids):
    with pytest.raises(EmbeddingShapeError, match="is 48 wide but the language model's hidden size is 32"):
        validate_image_data([make(width=48)], input_ids=ids(16), hidden_size=HIDDEN)
    validate_image_data([make(width=HIDDEN)], input_ids=ids(16), hidden_size=HIDDEN)


def test_embedding_must_be_2d():
    bad = qwen_embedding_dict()
    bad["feature"] = torch.zeros(1, 16, HIDDEN)
    with pytest.raises(EmbeddingShapeError, match="must be 2-D"):
        validate_image_data([bad], input_ids=qwen_ids(16))


def test_embedding_must_be_a_tensor():
    bad = qwen_embedding_dict()
    bad["feature"] = [[0.0] * HIDDEN] * 16
    with pytest.raises(RequestFormatError, match="must be a tensor"):
        validate_image_data([bad], input_ids=qwen_ids(16))


def test_qwen_embedding_needs_grid():
    bad = qwen_embedding_dict()
    del bad["image_grid_thw"]
    with pytest.raises(RequestFormatError, match="needs image_grid_thw"):
        validate_image_data([bad], input_ids=qwen_ids(16))


def test_qwen_grid_must_match_placeholders():
    with pytest.raises(RequestFormatError, match="describes 4 image tokens but input_ids hold 16"):
        validate_image_data([qwen_embedding_dict(grid=((1, 4, 4),))], input_ids=qwen_ids(16))


def test_llama_precomputed_embedding_format_rejected_with_the_working_form():
    bad = {"format": "precomputed_embedding", "feature": torch.zeros(16, HIDDEN)}
    with pytest.raises(RequestFormatError, match="precomputed_embeddings=emb.*without pixel_values"):
        validate_image_data([bad], input_ids=llama_ids(16))
    validate_image_data([llama_embedding_dict()], input_ids=llama_ids(16))


def test_pixels_and_embeddings_together_rejected():
    bad = llama_embedding_dict()
    bad["pixel_values"] = torch.zeros(1, 3, 28, 28)
    with pytest.raises(RequestFormatError, match="drop pixel_values"):
        validate_image_data([bad], input_ids=llama_ids(16))


# --- processor output ---------------------------------------------------------------------------


def test_processor_output_needs_pixels():
    with pytest.raises(RequestFormatError, match="needs pixel_values"):
        validate_image_data([{"format": "processor_output"}], input_ids=llama_ids(16))
    ok = {"format": "processor_output", "pixel_values": torch.zeros(1, 3, 28, 28)}
    validate_image_data([ok], input_ids=llama_ids(16))


def test_qwen_processor_output_needs_grid():
    bad = {"format": "processor_output", "pixel_values": torch.zeros(64, 1176)}
    with pytest.raises(RequestFormatError, match="needs image_grid_thw"):
        validate_image_data([bad], input_ids=qwen_ids(16))
    validate_image_data([dict(bad, image_grid_thw=torch.tensor([[1, 8, 8]]))], input_ids=qwen_ids(16))


def test_has_pixel_tensors():
    assert not has_pixel_tensors([qwen_embedding_dict()])
    assert has_pixel_tensors([dict(qwen_embedding_dict(), pixel_values=torch.zeros(1))])


def _two_llama_images(first: int, second: int) -> list[int]:
    return [200000] + llama_ids(first)[1:-1] + [7] + llama_ids(second)[1:-1] + [5]


def test_llama4_embeddings_of_images_with_different_token_counts_rejected():
    from vlm_tutorial.validation import llama4_tokens_per_image

    mixed = _two_llama_images(20, 12)
    assert llama4_tokens_per_image(mixed) == [20, 12]
    bad = dict(llama_embedding_dict(rows=32), input_ids=torch.tensor([mixed]))
    with pytest.raises(RequestFormatError, match=r"different numbers of image tokens \[20, 12\]"):
        validate_image_data([bad], input_ids=mixed)
    same = _two_llama_images(16, 16)
    validate_image_data([dict(llama_embedding_dict(rows=32), input_ids=torch.tensor([same]))],
                        input_ids=same)
    # pixels (format 2) of mixed sizes are fine: SGLang splits them by tile
    validate_image_data([{"format": "processor_output", "pixel_values": torch.zeros(8, 3, 4, 4)}],
                        input_ids=mixed)
