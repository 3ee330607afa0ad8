"""The validators on hand-made requests: every rule has failing cases and valid twins.

Token ids here are the real ones (Qwen2.5-VL: ``<|vision_start|>`` 151652, ``<|image_pad|>``
151655, ``<|vision_end|>`` 151653; Llama 4: ``<|image_start|>`` 200080, ``<|image|>``
200090, ``<|patch|>`` 200092, ``<|image_end|>`` 200081). test_malformed_requests.py runs
the same rules on requests made by the real processors, through the reference engine too.
"""

from __future__ import annotations

import enum

import numpy as np
import pytest
import torch
from PIL import Image

from vlm_tutorial.errors import EmbeddingShapeError, RequestFormatError, UnsupportedImageSourceError
from vlm_tutorial.validation import (
    validate_image_data,
    validate_input_ids,
    validate_sampling_params,
)

HIDDEN = 32
QWEN_PROMPT = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Hi<|im_end|>\n"
LLAMA_PROMPT = "<|header_start|>user<|header_end|>\n\n<|image|>Hi<|eot|>"


def qwen_ids(*tokens_per_image: int) -> list[int]:
    """Expanded ids: ``<|vision_start|>``, that many ``<|image_pad|>``, ``<|vision_end|>`` each."""
    ids = [1, 2]
    for n in tokens_per_image:
        ids += [151652] + [151655] * n + [151653, 3]
    return ids


def llama_ids(*tokens_per_image: int) -> list[int]:
    ids = [200000]
    for n in tokens_per_image:
        ids += [200080, 200090] + [200092] * n + [200081, 5]
    return ids


def qwen_dict(rows=16, width=HIDDEN, grid=((1, 8, 8),), **extra) -> dict:
    """A Qwen2.5-VL embedding dict; 16 rows = one 8x8-patch image after the 2x2 merge."""
    return {
        "format": "precomputed_embedding",
        "feature": torch.zeros(rows, width),
        "image_grid_thw": torch.tensor(grid) if isinstance(grid, tuple) else grid,
        **extra,
    }


def llama_dict(rows=16, width=HIDDEN, **extra) -> dict:
    return {
        "format": "processor_output",
        "precomputed_embeddings": torch.zeros(rows, width),
        **extra,
    }


class Format(enum.Enum):
    """Like SGLang's MultimodalInputFormat: validators read the member's name."""

    PROCESSOR_OUTPUT = 1


PIXELS = torch.zeros(1, 3, 28, 28)

VALID = {
    "raw images of every kind": dict(
        image_data=[
            Image.new("RGB", (8, 8)),
            "cat.png",
            "https://e.x/a.jpg",
            "aGVsbG8=",
            b"\x89PNG",
        ],
        prompt=QWEN_PROMPT * 5,
    ),
    "one raw image, bare": dict(image_data="cat.png", prompt=LLAMA_PROMPT, family="llama4"),
    "text only": dict(image_data=None, prompt="hi"),
    "text only, empty list": dict(image_data=[], prompt="hi", family="qwen2_5_vl"),
    "text-only ids": dict(image_data=[], input_ids=[1, 2, 3], family="llama4"),
    "raw images with unexpanded ids": dict(
        image_data=["a.png"], input_ids=[1, 151652, 151655, 151653, 2], family="qwen2_5_vl"
    ),
    "qwen embedding": dict(image_data=[qwen_dict()], input_ids=qwen_ids(16), hidden_size=HIDDEN),
    "qwen embedding as a float64 numpy array": dict(
        image_data=[qwen_dict(feature=np.zeros((16, HIDDEN)))], input_ids=qwen_ids(16)
    ),
    "qwen embedding, bare dict, one-row tensor ids": dict(
        image_data=qwen_dict(feature=torch.randn(16, HIDDEN, dtype=torch.bfloat16)),
        input_ids=torch.tensor([qwen_ids(16)]),
    ),
    "qwen embedding, flat grid of one image": dict(
        image_data=[qwen_dict(grid=[1, 8, 8])], input_ids=qwen_ids(16)
    ),
    "qwen embedding of two images": dict(
        image_data=[qwen_dict(rows=32, grid=((1, 4, 8), (1, 8, 12)))], input_ids=qwen_ids(8, 24)
    ),
    "qwen embedding with the processor output kept": dict(
        image_data=[qwen_dict(pixel_values=torch.zeros(64, 1176))], input_ids=qwen_ids(16)
    ),
    "qwen processor output": dict(
        image_data=[
            {
                "format": Format.PROCESSOR_OUTPUT,
                "pixel_values": PIXELS,
                "image_grid_thw": [[1, 8, 8]],
            }
        ],
        input_ids=qwen_ids(16),
    ),
    "llama embedding": dict(
        image_data=[llama_dict()], input_ids=llama_ids(16), hidden_size=HIDDEN, family="llama4"
    ),
    # SGLang 0.5.17 places such rows in prompt order (docs/upstream/llama4-precomputed-embedding.md)
    "llama embedding of images with different token counts": dict(
        image_data=[llama_dict(rows=576)], input_ids=llama_ids(432, 144)
    ),
    "llama processor output": dict(
        image_data=[{"format": "PROCESSOR_OUTPUT", "pixel_values": PIXELS}], input_ids=llama_ids(16)
    ),
}


@pytest.mark.parametrize("name", VALID)
def test_valid_requests_pass(name):
    validate_image_data(**VALID[name])


def with_value(make, key, value):
    item = make()
    item[key] = value
    return item


BAD = {
    # raw images and placeholders
    "an int among raw images": (
        dict(image_data=["a.png", 42], prompt=QWEN_PROMPT * 2),
        UnsupportedImageSourceError,
        r"image_data\[1\] is a int \(42\)",
    ),
    "more images than placeholders": (
        dict(image_data=["a.png", "b.png"], prompt=QWEN_PROMPT),
        RequestFormatError,
        r"prompt has 1 image placeholder\(s\).*but image_data has 2 image\(s\)",
    ),
    "no placeholder": (
        dict(image_data=["a.png"], prompt="What is this?"),
        RequestFormatError,
        "prompt has no image placeholder.*build_prompt",
    ),
    "the other family's placeholder": (
        dict(image_data=["a.png"], prompt=LLAMA_PROMPT, family="qwen2_5_vl"),
        RequestFormatError,
        r"no image placeholder.*it holds <\|image\|>, the placeholder of llama4",
    ),
    "a placeholder but no image": (
        dict(image_data=None, prompt=LLAMA_PROMPT),
        RequestFormatError,
        r"prompt has 1 image placeholder\(s\).*image_data has 0 image",
    ),
    "prompt not a string": (
        dict(image_data=None, prompt=["hi", "there"]),
        RequestFormatError,
        "prompt must be a str for one request",
    ),
    "raw images with too few placeholders in the ids": (
        dict(image_data=["a.png", "b.png"], input_ids=[1, 200090, 2], family="llama4"),
        RequestFormatError,
        r"input_ids hold 1 image placeholder\(s\) \(<\|image\|>\) but image_data has 2",
    ),
    "raw images with expanded ids": (
        dict(image_data=["a.png"], input_ids=qwen_ids(16), family="qwen2_5_vl"),
        RequestFormatError,
        r"hold 16 <\|image_pad\|> token\(s\) where 1 raw image\(s\) need 1: expanded",
    ),
    "an image token in text-only ids": (
        dict(image_data=None, input_ids=[1, 200092, 2], family="llama4"),
        RequestFormatError,
        r"<\|patch\|> token\(s\) where 0 raw image\(s\) need 0",
    ),
    # one format, one dict, with input_ids
    "a dict beside a raw image": (
        dict(image_data=[qwen_dict(), "a.png"], input_ids=qwen_ids(16)),
        RequestFormatError,
        "image_data mixes preprocessed dicts with raw images",
    ),
    "two dicts": (
        dict(image_data=[qwen_dict(), qwen_dict()], input_ids=qwen_ids(16, 16)),
        RequestFormatError,
        "holds 2 preprocessed dicts; SGLang takes exactly one, which carries all the images",
    ),
    "a dict with a prompt": (
        dict(image_data=[qwen_dict()], prompt=QWEN_PROMPT),
        RequestFormatError,
        r"'precomputed_embedding' dict goes with input_ids=\.\.\., got prompt=",
    ),
    "a dict with a prompt and input_ids": (
        dict(image_data=[qwen_dict()], prompt=QWEN_PROMPT, input_ids=qwen_ids(16)),
        RequestFormatError,
        r"goes with input_ids=\.\.\., got prompt=",
    ),
    "a dict without input_ids": (
        dict(image_data=[llama_dict()]),
        RequestFormatError,
        r"goes with input_ids=\.\.\., got no input_ids",
    ),
    "a dict of no known format": (
        dict(image_data=[{"format": "embedding", "feature": 1}], input_ids=qwen_ids(16)),
        RequestFormatError,
        r"dict has format='embedding' \(keys \['feature', 'format'\]\); it needs format=",
    ),
    "a dict without a format": (
        dict(image_data=[{"url": "https://e.x/a.png"}], prompt=QWEN_PROMPT),
        RequestFormatError,
        r"dict has format=None",
    ),
    "ids without an image token": (
        dict(image_data=[llama_dict()], input_ids=[1, 2, 3]),
        RequestFormatError,
        r"input_ids contain no image token \(<\|image_pad\|> for qwen2_5_vl, <\|patch\|>",
    ),
    "ids of the other family": (
        dict(image_data=[llama_dict()], input_ids=llama_ids(16), family="qwen2_5_vl"),
        RequestFormatError,
        r"no image token \(<\|image_pad\|> for qwen2_5_vl\)",
    ),
    "ids with a float": (
        dict(image_data=[qwen_dict()], input_ids=[1.5, *qwen_ids(16)]),
        RequestFormatError,
        r"input_ids\[0\] is 1.5",
    ),
    "ids outside the vocabulary": (
        dict(image_data=[qwen_dict()], input_ids=qwen_ids(16), vocab_size=1000),
        RequestFormatError,
        r"input_ids\[2\] is 151652, outside the vocabulary \[0, 1000\)",
    ),
    # embeddings
    "too few embedding rows": (
        dict(image_data=[llama_dict(rows=15)], input_ids=llama_ids(16)),
        EmbeddingShapeError,
        r"expected 16 embedding rows in 'precomputed_embeddings', one per <\|patch\|>.*got 15",
    ),
    "rows of only one of two images": (
        dict(image_data=[llama_dict(rows=432)], input_ids=llama_ids(432, 144)),
        EmbeddingShapeError,
        "expected 576 embedding rows",
    ),
    "too wide an embedding": (
        dict(image_data=[qwen_dict(width=48)], input_ids=qwen_ids(16), hidden_size=HIDDEN),
        EmbeddingShapeError,
        "'feature' is 48 wide but the language model's hidden size is 32",
    ),
    "a 3-D embedding": (
        dict(image_data=[qwen_dict(feature=torch.zeros(1, 16, HIDDEN))], input_ids=qwen_ids(16)),
        EmbeddingShapeError,
        r"'feature' must be a 2-D tensor .*got shape \(1, 16, 32\); flatten",
    ),
    "an embedding as nested lists": (
        dict(image_data=[qwen_dict(feature=[[0.0] * HIDDEN] * 16)], input_ids=qwen_ids(16)),
        EmbeddingShapeError,
        "'feature' must be a 2-D tensor .*got list",
    ),
    "a precomputed_embedding dict without feature": (
        dict(image_data=[qwen_dict(feature=None)], input_ids=qwen_ids(16)),
        RequestFormatError,
        r"'precomputed_embedding' dict needs feature=<embedding",
    ),
    "a processor_output dict without pixels or embedding": (
        dict(image_data=[{"format": "processor_output"}], input_ids=llama_ids(16)),
        RequestFormatError,
        "needs pixel_values .* or precomputed_embeddings=",
    ),
    "llama4 precomputed_embedding format": (
        dict(
            image_data=[{"format": "precomputed_embedding", "feature": torch.zeros(16, HIDDEN)}],
            input_ids=llama_ids(16),
        ),
        RequestFormatError,
        r"send dict\(format='processor_output', precomputed_embeddings=emb\) without pixel_values",
    ),
    "llama4 pixels beside the embedding": (
        dict(image_data=[llama_dict(pixel_values=PIXELS)], input_ids=llama_ids(16)),
        RequestFormatError,
        "both pixel_values and precomputed_embeddings.*drop pixel_values",
    ),
    # image_grid_thw
    "no grid": (
        dict(image_data=[qwen_dict(grid=None)], input_ids=qwen_ids(16)),
        RequestFormatError,
        r"qwen2_5_vl 'precomputed_embedding' dict needs image_grid_thw",
    ),
    "a processor output without grid": (
        dict(
            image_data=[{"format": "processor_output", "pixel_values": PIXELS}],
            input_ids=qwen_ids(16),
        ),
        RequestFormatError,
        "'processor_output' dict needs image_grid_thw",
    ),
    "a grid of other images": (
        dict(image_data=[qwen_dict(grid=((1, 4, 4),))], input_ids=qwen_ids(16)),
        RequestFormatError,
        r"image_grid_thw \[\[1, 4, 4\]\] describes \[4\] image tokens per image but input_ids hold \[16\]",
    ),
    "grid rows swapped": (
        dict(
            image_data=[qwen_dict(rows=32, grid=((1, 8, 12), (1, 4, 8)))], input_ids=qwen_ids(8, 24)
        ),
        RequestFormatError,
        r"describes \[24, 8\] image tokens per image .* \[8, 24\]",
    ),
}

SHAPE = r"'image_grid_thw' must have shape \(num_images, 3\)"
BAD_GRIDS = {
    "3-D": (torch.tensor([[[1, 8, 8]]]), SHAPE),
    "2 columns": (torch.tensor([[1, 8]]), SHAPE),
    "a string": ("1x8x8", SHAPE),
    "empty": (torch.zeros(0, 3, dtype=torch.long), SHAPE),
    "floats": (torch.tensor([[1.0, 8.0, 8.0]]), SHAPE + " and hold integers"),
    "bools": (torch.tensor([[True, True, True]]), SHAPE + " and hold integers"),
    "t = 0": (
        torch.tensor([[0, 8, 8]]),
        r"image_grid_thw\[0\] is \[0, 8, 8\]: each size must be >= 1",
    ),
    "negative": (torch.tensor([[1, -8, -8]]), r"\[1, -8, -8\]: each size must be >= 1"),
    "odd h": (torch.tensor([[1, 7, 8]]), r"\[1, 7, 8\]: .*multiples of 2"),
}
for _name, (_grid, _message) in BAD_GRIDS.items():
    BAD[f"grid: {_name}"] = (
        dict(image_data=[qwen_dict(grid=_grid)], input_ids=qwen_ids(16)),
        RequestFormatError,
        _message,
    )

BAD_VALUES = {
    "nan": (torch.full((16, HIDDEN), float("nan")), "holds NaN or infinite values"),
    "-inf in bf16": (
        torch.full((16, HIDDEN), -float("inf"), dtype=torch.bfloat16),
        "holds NaN or infinite",
    ),
    "inf in numpy": (np.full((16, HIDDEN), np.inf), "holds NaN or infinite"),
    "int64": (torch.ones(16, HIDDEN, dtype=torch.int64), "has dtype torch.int64 on device cpu"),
    "bool": (torch.ones(16, HIDDEN, dtype=torch.bool), "has dtype torch.bool"),
    "numpy int": (np.ones((16, HIDDEN), dtype=np.int32), "has dtype int32"),
    "meta": (torch.empty(16, HIDDEN, device="meta"), "has dtype torch.float32 on device meta"),
}
for _name, (_value, _message) in BAD_VALUES.items():
    BAD[f"qwen embedding: {_name}"] = (
        dict(image_data=[qwen_dict(feature=_value)], input_ids=qwen_ids(16)),
        RequestFormatError,
        f"'feature' {_message}",
    )
    BAD[f"llama embedding: {_name}"] = (
        dict(image_data=[llama_dict(precomputed_embeddings=_value)], input_ids=llama_ids(16)),
        RequestFormatError,
        f"'precomputed_embeddings' {_message}",
    )


@pytest.mark.parametrize("name", BAD)
def test_bad_requests_are_refused_by_name(name):
    kwargs, error, message = BAD[name]
    with pytest.raises(error, match=message) as info:
        validate_image_data(**kwargs)
    # Learners are sent to the processor and to build_prompt, never to benchmark internals.
    assert "_request" not in str(info.value)


def test_refusals_are_the_builtin_exceptions_callers_catch():
    with pytest.raises(TypeError):
        validate_image_data([object()], prompt=QWEN_PROMPT)
    with pytest.raises(ValueError):
        validate_image_data([qwen_dict(rows=3)], input_ids=qwen_ids(16))


# --------------------------------------------------------------------------- input_ids
# Bad ids of every kind: test_malformed_requests.py (ids_not_a_list, id_of_a_bad_kind, ...).


def test_valid_input_ids_pass_in_every_form():
    for ids in ([1, 2], (1, 2), torch.tensor([1, 2]), torch.tensor([[1, 2]]), np.array([1, 2])):
        assert validate_input_ids(ids, vocab_size=50) == [1, 2]
    assert validate_input_ids([[7]]) == [7]
    assert type(validate_input_ids([np.int64(3)])[0]) is int


# --------------------------------------------------------------------------- sampling_params


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"max_new_tokens": 2.5}, r"'max_new_tokens'\] is 2.5 \(a float\); it must be an int >= 1"),
        ({"max_new_tokens": "8"}, r"'max_new_tokens'\] is '8' \(a str\)"),
        ({"max_new_tokens": True}, r"'max_new_tokens'\] is True \(a bool\)"),
        ({"max_new_tokens": 0}, "it must be an int >= 1"),
        ({"temperature": "hot"}, "it must be a finite number >= 0"),
        ({"temperature": -1}, "finite number >= 0"),
        ({"temperature": float("nan")}, "finite number >= 0"),
        ({"temperature": 1j}, "finite number >= 0"),
        ({"top_p": 1.5}, r"in \(0, 1\]"),
        ({"top_p": 0}, r"in \(0, 1\]"),
        ({"top_p": False}, r"in \(0, 1\]"),
        ({"top_k": 2.0}, "-1 .* or an int >= 1"),
        ({"top_k": 0}, "-1 .* or an int >= 1"),
        ({"min_p": 1.5}, r"in \[0, 1\]"),
        ({"sampling_seed": "3"}, "it must be an int"),
        ({"ignore_eos": 1}, "True or False"),
        ({"skip_special_tokens": "no"}, "True or False"),
        ({"stop_token_ids": [1, "2"]}, "a list of int token ids"),
        ({"stop_token_ids": 5}, "a list of int token ids"),
        ({"stop_token_ids": [True]}, "a list of int token ids"),
        ({"stop_token_ids": {"a": 1}}, "a list of int token ids"),
        ([("max_new_tokens", 8)], "sampling_params must be a dict"),
    ],
)
def test_bad_sampling_params_are_refused(params, message):
    with pytest.raises(RequestFormatError, match=message):
        validate_sampling_params(params)


def test_valid_sampling_params_pass():
    validate_sampling_params(
        {
            "max_new_tokens": 8,
            "temperature": 0,
            "top_p": 0.9,
            "top_k": -1,
            "min_p": 0.0,
            "ignore_eos": False,
            "stop_token_ids": [1, 2],
            "sampling_seed": 3,
            "frequency_penalty": 0.5,  # not checked here: SGLang's own
            "temperature_unused": None,
        }
    )
    validate_sampling_params({"max_new_tokens": None, "top_k": None})  # None: SGLang's default
    validate_sampling_params(None)
