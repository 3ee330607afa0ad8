"""Check an ``Engine.generate`` image request before it reaches the engine.

SGLang 0.5.17 applies some of these rules itself (one preprocessed dict per
modality), reports others late or cryptically (an embedding with the wrong
number of rows fails deep inside the scheduler), and some not at all (a
Llama 4 ``precomputed_embedding`` dict kills the scheduler). The checks here
run in microseconds and say what to change.

Example:
    >>> validate_image_data(["photo.png"], prompt="<|image|>What is it?")
    >>> validate_image_data([{"format": "processor_output"}], prompt="hi")
    Traceback (most recent call last):
    ...
    vlm_tutorial.errors.RequestFormatError: a 'processor_output' dict needs input_ids=..., not prompt=...: ...
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from .errors import EmbeddingShapeError, RequestFormatError, UnsupportedImageSourceError
from .families import FAMILIES, LLAMA4, QWEN2_5_VL, ModelFamily

PROCESSOR_OUTPUT = "processor_output"
PRECOMPUTED_EMBEDDING = "precomputed_embedding"
PREPROCESSED_FORMATS = (PROCESSOR_OUTPUT, PRECOMPUTED_EMBEDDING)

#: Qwen2.5-VL merges 2x2 patches into one image token.
QWEN_SPATIAL_MERGE = 2

#: Keys that carry pixels; a lean precomputed request has none of them.
PIXEL_KEYS = ("pixel_values", "pixel_values_videos")


def dict_format(item: Any) -> str | None:
    """``"processor_output"``, ``"precomputed_embedding"`` or None for a raw image.

    Example:
        >>> dict_format({"format": "processor_output"})
        'processor_output'
    """
    if not isinstance(item, dict):
        return None
    fmt = item.get("format")
    fmt = getattr(fmt, "name", fmt)  # SGLang's MultimodalInputFormat enum
    if isinstance(fmt, str) and fmt.lower() in PREPROCESSED_FORMATS:
        return fmt.lower()
    raise RequestFormatError(
        f"an image_data dict needs format='processor_output' or format='precomputed_embedding', "
        f"got format={item.get('format')!r} (keys: {sorted(map(str, item))}); build it with "
        "processor_output_request() or precomputed_embedding_request()"
    )


def _is_raw_image(item: Any) -> bool:
    if isinstance(item, (str, bytes, bytearray, os.PathLike)):
        return True
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
    return isinstance(item, Image.Image)


def _as_id_list(input_ids: Any) -> list[int]:
    if hasattr(input_ids, "tolist"):
        input_ids = input_ids.tolist()
    if input_ids and isinstance(input_ids[0], list):
        if len(input_ids) != 1:
            raise RequestFormatError(
                f"input_ids holds {len(input_ids)} sequences; send one request's ids as a flat "
                "list of ints (e.g. processor_output['input_ids'][0].tolist())"
            )
        input_ids = input_ids[0]
    return [int(i) for i in input_ids]


def _shape(value: Any) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    return tuple(int(s) for s in shape) if shape is not None else None


def _family_of_request(item: dict[str, Any], ids: list[int] | None) -> ModelFamily | None:
    if ids:
        for family in FAMILIES.values():
            if family.embedding_token_id in ids:
                return family
    if "image_grid_thw" in item:
        return QWEN2_5_VL
    return None


def _count_prompt_images(prompt: str) -> dict[str, int]:
    return {
        QWEN2_5_VL.name: prompt.count("<|vision_start|>"),
        LLAMA4.name: prompt.count(LLAMA4.prompt_image_token),
    }


def _check_raw(images: list[Any], prompt: str | None) -> None:
    for i, item in enumerate(images):
        if not _is_raw_image(item):
            raise UnsupportedImageSourceError(
                f"image_data[{i}] is a {type(item).__name__}; raw images are PIL images, file "
                "paths, http(s) URLs, base64 strings, data URLs or bytes (got "
                f"{str(item)[:60]!r})"
            )
    if prompt is None:
        return
    counts = {k: v for k, v in _count_prompt_images(prompt).items() if v}
    if not counts:
        raise RequestFormatError(
            f"the prompt has no image placeholder but {len(images)} image(s) were given; build "
            "the prompt with build_prompt(processor, question, num_images=...)"
        )
    for family, n in counts.items():
        if n != len(images):
            raise RequestFormatError(
                f"the prompt has {n} image placeholder(s) ({FAMILIES[family].prompt_image_token}) "
                f"but image_data has {len(images)} image(s); pass one image per placeholder "
                f"(build_prompt(processor, question, num_images={len(images)}))"
            )


def _check_rows(rows: int, ids: list[int], family: ModelFamily, key: str) -> None:
    expected = ids.count(family.embedding_token_id)
    if rows != expected:
        raise EmbeddingShapeError(
            f"expected {expected} embedding rows, one per {family.embedding_token} token in "
            f"input_ids, got {rows} in {key!r}; compute input_ids and the embedding from the "
            "same processor output (precomputed_embedding_request does)"
        )


def _check_width(width: int, hidden_size: int | None, key: str) -> None:
    if hidden_size is not None and width != hidden_size:
        raise EmbeddingShapeError(
            f"the embedding in {key!r} is {width} wide but the language model's hidden size is "
            f"{hidden_size}; embed with the same checkpoint's vision encoder "
            "(load_vision_encoder(model_path))"
        )


def _check_embedding(
    item: dict[str, Any], key: str, ids: list[int], family: ModelFamily | None, hidden: int | None
) -> None:
    shape = _shape(item.get(key))
    if shape is None:
        raise RequestFormatError(
            f"{key!r} must be a tensor of shape (num_image_tokens, hidden_size), got "
            f"{type(item.get(key)).__name__}"
        )
    if len(shape) != 2:
        raise EmbeddingShapeError(
            f"{key!r} must be 2-D (num_image_tokens, hidden_size), got shape {shape}; "
            "flatten the leading dimensions, e.g. emb.reshape(-1, emb.shape[-1])"
        )
    if family is not None:
        _check_rows(shape[0], ids, family, key)
    _check_width(shape[1], hidden, key)


#: Llama 4's tokens around one image's tiles.
LLAMA4_IMAGE_START, LLAMA4_IMAGE_END = 200080, 200081


def llama4_tokens_per_image(ids: list[int]) -> list[int]:
    """Number of ``<|patch|>`` tokens of each image in Llama 4 ``input_ids``.

    Example:
        >>> llama4_tokens_per_image([1, 200080, 200092, 200092, 200081, 200080, 200092, 200081])
        [2, 1]
    """
    counts: list[int] = []
    inside = False
    for token in ids:
        if token == LLAMA4_IMAGE_START:
            counts.append(0)
            inside = True
        elif token == LLAMA4_IMAGE_END:
            inside = False
        elif inside and token == LLAMA4.embedding_token_id:
            counts[-1] += 1
    return counts


def _check_llama4_equal_images(ids: list[int]) -> None:
    counts = llama4_tokens_per_image(ids)
    if len(set(counts)) > 1:
        raise RequestFormatError(
            f"the images of this Llama 4 request have different numbers of image tokens {counts}: "
            "SGLang 0.5.17 places precomputed_embeddings of such a request wrongly (measured on "
            "an H100: the answer changes), while images of one size work. Send one request per "
            "image, resize the images to one size, or use format='processor_output' with pixels"
        )


def _check_preprocessed(
    item: dict[str, Any], fmt: str, ids: list[int], hidden_size: int | None
) -> None:
    family = _family_of_request(item, ids)
    if family is None:
        raise RequestFormatError(
            "input_ids contain no image token (<|image_pad|> for Qwen2.5-VL, <|patch|> for "
            "Llama 4): tokenize with the processor and the images together, e.g. "
            "processor(text=[prompt], images=images), and send its input_ids"
        )
    if fmt == PRECOMPUTED_EMBEDDING:
        if family is LLAMA4:
            raise RequestFormatError(
                "SGLang 0.5.17 runs Llama 4's vision tower on a 'precomputed_embedding' feature "
                "and the scheduler dies (IndexError in patch_embedding); send "
                "dict(format='processor_output', precomputed_embeddings=emb) without "
                "pixel_values instead (precomputed_embedding_request builds it)"
            )
        if "feature" not in item:
            raise RequestFormatError(
                "a 'precomputed_embedding' dict needs feature=<tensor (num_image_tokens, "
                "hidden_size)>"
            )
        if family is QWEN2_5_VL and item.get("image_grid_thw") is None:
            raise RequestFormatError(
                "a Qwen2.5-VL 'precomputed_embedding' dict needs image_grid_thw (the processor's "
                "(num_images, 3) grid): SGLang computes the multimodal rope positions from it"
            )
        _check_embedding(item, "feature", ids, family, hidden_size)
    else:
        has_pixels = item.get("pixel_values") is not None
        has_emb = item.get("precomputed_embeddings") is not None
        if not has_pixels and not has_emb:
            raise RequestFormatError(
                "a 'processor_output' dict needs pixel_values (the processor's output) or "
                "precomputed_embeddings; pass dict(processor(...), format='processor_output')"
            )
        if has_pixels and has_emb:
            raise RequestFormatError(
                "a 'processor_output' dict carries both pixel_values and precomputed_embeddings; "
                "SGLang splits the embedding by the pixel tiles and misplaces it: drop "
                "pixel_values"
            )
        if family is QWEN2_5_VL and has_pixels and item.get("image_grid_thw") is None:
            raise RequestFormatError(
                "a Qwen2.5-VL 'processor_output' dict needs image_grid_thw; pass the whole "
                "processor output"
            )
        if has_emb:
            _check_embedding(item, "precomputed_embeddings", ids, family, hidden_size)
            if family is LLAMA4:
                _check_llama4_equal_images(ids)
    grid = item.get("image_grid_thw")
    if family is QWEN2_5_VL and grid is not None:
        grid_rows = grid.tolist() if hasattr(grid, "tolist") else list(grid)
        if grid_rows and not isinstance(grid_rows[0], (list, tuple)):
            grid_rows = [grid_rows]
        tokens = sum(int(t) * int(h) * int(w) for t, h, w in grid_rows) // QWEN_SPATIAL_MERGE**2
        placeholders = ids.count(family.embedding_token_id)
        if tokens != placeholders:
            raise RequestFormatError(
                f"image_grid_thw {grid_rows} describes {tokens} image tokens but input_ids hold "
                f"{placeholders} {family.embedding_token} tokens; take both from the same "
                "processor output"
            )


def validate_image_data(
    image_data: Any,
    *,
    input_ids: Sequence[int] | Any | None = None,
    prompt: str | None = None,
    hidden_size: int | None = None,
) -> None:
    """Return quietly if one request's ``image_data`` is valid; raise a clear error otherwise.

    Rules: one format per request; at most one preprocessed dict, which
    carries all the images; a preprocessed dict goes with ``input_ids``, not
    a text ``prompt``; embedding rows equal the number of image placeholder
    tokens in ``input_ids`` and its width equals ``hidden_size`` (when
    given); Qwen2.5-VL needs ``image_grid_thw``; Llama 4 on SGLang 0.5.17
    takes embeddings only as ``processor_output`` with
    ``precomputed_embeddings``; raw images are matched against the prompt's
    placeholders.

    Raises:
        RequestFormatError: (a ``ValueError``) the request breaks a rule.
        EmbeddingShapeError: the embedding's shape does not fit.
        UnsupportedImageSourceError: (a ``TypeError``) an item is no image.

    Example:
        >>> validate_image_data(None, prompt="text only")
    """
    if image_data is None:
        return
    if isinstance(image_data, tuple):
        image_data = list(image_data)
    if not isinstance(image_data, list):
        image_data = [image_data]
    if not image_data:
        return
    if prompt is not None and not isinstance(prompt, str):
        raise RequestFormatError(
            f"prompt must be a str for one request, got {type(prompt).__name__}; validate each "
            "request of a batch on its own"
        )
    formats = [dict_format(item) for item in image_data]
    preprocessed = [i for i, f in enumerate(formats) if f is not None]
    if not preprocessed:
        _check_raw(image_data, prompt)
        return
    if len(preprocessed) != len(image_data):
        raise RequestFormatError(
            f"image_data mixes preprocessed dicts (at {preprocessed}) with raw images; use one "
            "format per request: either raw images with a prompt, or one dict with input_ids"
        )
    if len(image_data) > 1:
        raise RequestFormatError(
            f"image_data holds {len(image_data)} preprocessed dicts; SGLang takes exactly one, "
            "which carries all the images of the request: run the processor on all images "
            "at once (processor_output_request(processor, prompt, [img1, img2]))"
        )
    fmt = formats[0]
    if input_ids is None:
        where = "prompt=..." if prompt is not None else "no input_ids"
        raise RequestFormatError(
            f"a {fmt!r} dict needs input_ids=..., not {where}: with a preprocessed dict SGLang "
            "tokenizes a prompt without expanding its image tokens, so send the processor's "
            "input_ids (the request builders return them)"
        )
    if prompt is not None:
        raise RequestFormatError(
            "give either prompt= or input_ids=, not both; a preprocessed dict goes with input_ids"
        )
    _check_preprocessed(image_data[0], fmt, _as_id_list(input_ids), hidden_size)


def has_pixel_tensors(image_data: Any) -> bool:
    """True if any dict in ``image_data`` carries pixels (``pixel_values``...).

    Example:
        >>> has_pixel_tensors([{"format": "precomputed_embedding", "feature": None}])
        False
    """
    items = image_data if isinstance(image_data, list) else [image_data]
    return any(isinstance(d, dict) and any(k in d for k in PIXEL_KEYS) for d in items)


__all__ = [
    "PROCESSOR_OUTPUT",
    "PRECOMPUTED_EMBEDDING",
    "dict_format",
    "validate_image_data",
    "has_pixel_tensors",
    "llama4_tokens_per_image",
]
