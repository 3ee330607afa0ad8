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
from vlm_tutorial.validation import (
    dict_format,
    has_pixel_tensors,
    validate_image_data,
    validate_input_ids,
    validate_sampling_params,
)

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
        "image_grid_thw": grid if isinstance(grid, (str, torch.Tensor)) else torch.tensor(grid),
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
    with pytest.raises(EmbeddingShapeError, match=f"expected 16 embedding rows in '{key}'.*got 15"):
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
    with pytest.raises(RequestFormatError, match=r"describes \[4\] image tokens per image but input_ids hold \[16\]"):
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


def test_llama4_embeddings_of_images_with_different_token_counts_accepted():
    # SGLang 0.5.17 places such rows in prompt order (docs/upstream/llama4-precomputed-embedding.md,
    # scripts/diagnose_llama4_mixed.py): 3 tiles + 1 tile at 336 px, 432 and 144 rows.
    mixed = _two_llama_images(432, 144)
    assert LLAMA4.tokens_per_image(mixed) == [432, 144]
    validate_image_data([llama_embedding_dict(rows=576)], input_ids=mixed)
    # the row count is still checked against all the images' <|patch|> tokens together
    with pytest.raises(RequestFormatError, match="576"):
        validate_image_data([llama_embedding_dict(rows=432)], input_ids=mixed)
    # pixels and an embedding in one dict stay refused: SGLang cuts the embedding into one
    # row per tile and its scheduler raises "Insufficient multimodal embedding length"
    both = dict(llama_embedding_dict(rows=576), pixel_values=torch.zeros(4, 3, 4, 4))
    with pytest.raises(RequestFormatError, match="both pixel_values and precomputed_embeddings"):
        validate_image_data([both], input_ids=mixed)


# --- embedding values -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "ids", "key"),
    [(qwen_embedding_dict, qwen_ids, "feature"), (llama_embedding_dict, llama_ids, "precomputed_embeddings")],
)
@pytest.mark.parametrize(
    ("value", "message"),
    [
        (torch.full((16, HIDDEN), float("nan")), "NaN or infinite"),
        (torch.full((16, HIDDEN), float("inf")), "NaN or infinite"),
        (torch.ones(16, HIDDEN, dtype=torch.int64), "dtype torch.int64; an embedding is floating point"),
        (torch.empty(16, HIDDEN, device="meta"), "meta device"),
    ],
    ids=["nan", "inf", "int64", "meta"],
)
def test_embedding_values_must_be_finite_floats_on_a_real_device(make, ids, key, value, message):
    bad = make()
    bad[key] = value
    with pytest.raises(RequestFormatError, match=f"'{key}'.*{message}|{message}.*"):
        validate_image_data([bad], input_ids=ids(16))
    ok = make()
    ok[key] = torch.randn(16, HIDDEN, dtype=torch.bfloat16)
    validate_image_data([ok], input_ids=ids(16))


# --- image_grid_thw ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        (torch.tensor([[[1, 8, 8]]]), r"shape \(num_images, 3\)"),
        (torch.tensor([[1, 8]]), r"shape \(num_images, 3\)"),
        ("1x8x8", r"shape \(num_images, 3\)"),
        (torch.tensor([[0, 8, 8]]), "must be >= 1 patch"),
        (torch.tensor([[1, -8, -8]]), "must be >= 1 patch"),
        (torch.tensor([[1, 7, 8]]), "multiples of 2"),
        (torch.tensor([[1.0, 8.0, 8.0]]), "must hold integers"),
    ],
)
def test_bad_grids_are_refused(grid, message):
    with pytest.raises(RequestFormatError, match=message):
        validate_image_data([qwen_embedding_dict(grid=grid)], input_ids=qwen_ids(16))


def test_a_flat_grid_of_one_image_is_accepted():
    validate_image_data([qwen_embedding_dict(grid=(1, 8, 8))], input_ids=qwen_ids(16))


def test_grid_rows_must_match_each_image():
    two = [1] + qwen_ids(8)[1:-1] + qwen_ids(24)[2:]
    good = {"format": "precomputed_embedding", "feature": torch.zeros(32, HIDDEN),
            "image_grid_thw": torch.tensor([[1, 4, 8], [1, 8, 12]])}
    validate_image_data([good], input_ids=two)
    swapped = dict(good, image_grid_thw=torch.tensor([[1, 8, 12], [1, 4, 8]]))
    with pytest.raises(RequestFormatError, match=r"\[24, 8\] image tokens per image .* \[8, 24\]"):
        validate_image_data([swapped], input_ids=two)


# --- input_ids and sampling_params ------------------------------------------------------------


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ([], "input_ids is empty"),
        ([1, 2.0, 3], r"input_ids\[1\] is 2.0 \(a float\)"),
        ([1, "2"], r"input_ids\[1\] is '2' \(a str\)"),
        ([1, True], r"input_ids\[1\] is True \(a bool\)"),
        ([1, 99], r"input_ids\[1\] is 99, outside the vocabulary \[0, 50\)"),
        ([-1], r"input_ids\[0\] is -1, outside the vocabulary"),
        ("hello", "must be a list of ints, got str"),
        (torch.tensor([[1.0, 2.0]]), "tensor of torch.float32"),
        ([[1, 2], [3, 4]], "holds 2 sequences"),
    ],
)
def test_bad_input_ids_are_refused(ids, message):
    with pytest.raises(RequestFormatError, match=message):
        validate_input_ids(ids, vocab_size=50)


def test_valid_input_ids_pass_in_every_form():
    assert validate_input_ids([1, 2], vocab_size=50) == [1, 2]
    assert validate_input_ids(torch.tensor([[1, 2]]), vocab_size=50) == [1, 2]
    assert validate_input_ids((1, 2)) == [1, 2]


def test_image_requests_check_their_input_ids_too():
    ids = qwen_ids(16)
    ids[0] = 1.5
    with pytest.raises(RequestFormatError, match=r"input_ids\[0\] is 1.5"):
        validate_image_data([qwen_embedding_dict()], input_ids=ids)
    with pytest.raises(RequestFormatError, match="outside the vocabulary"):
        validate_image_data([qwen_embedding_dict()], input_ids=qwen_ids(16), vocab_size=1000)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"max_new_tokens": 2.5}, r"'max_new_tokens'\] is 2.5 \(a float\); it must be an int >= 1"),
        ({"max_new_tokens": "8"}, r"'max_new_tokens'\] is '8' \(a str\)"),
        ({"max_new_tokens": True}, r"'max_new_tokens'\] is True \(a bool\)"),
        ({"max_new_tokens": 0}, "it must be an int >= 1"),
        ({"temperature": "hot"}, "it must be a number"),
        ({"temperature": -1}, "finite number >= 0"),
        ({"temperature": float("nan")}, "finite number >= 0"),
        ({"top_p": 1.5}, r"in \(0, 1\]"),
        ({"top_k": 2.0}, "it must be an int"),
        ({"ignore_eos": 1}, "True or False"),
        ({"stop_token_ids": [1, "2"]}, "every entry must be an int"),
        ([("max_new_tokens", 8)], "must be a dict"),
    ],
)
def test_bad_sampling_params_are_refused(params, message):
    with pytest.raises(RequestFormatError, match=message):
        validate_sampling_params(params)


def test_valid_sampling_params_pass():
    validate_sampling_params({"max_new_tokens": 8, "temperature": 0, "top_p": 0.9, "top_k": -1,
                              "ignore_eos": False, "stop_token_ids": [1, 2], "sampling_seed": 3})
    validate_sampling_params(None)
