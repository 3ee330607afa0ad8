"""The three image input formats of ``sglang.Engine.generate``, one builder each.

Each builder returns the keyword arguments of one request, so that
``engine.generate(**request, sampling_params=...)`` works:

1. :func:`raw_request`: ``{"prompt": str, "image_data": [image, ...]}``.
   SGLang loads, preprocesses and encodes the images itself.
2. :func:`processor_output_request`: ``{"input_ids": [...], "image_data":
   [dict(processor_output, format="processor_output")]}``. The client runs
   the Hugging Face processor (and may customise it); SGLang runs the
   vision tower.
3. :func:`precomputed_embedding_request`: ``{"input_ids": [...],
   "image_data": [lean dict]}``. The client runs the vision tower too;
   SGLang only places the embedding rows at the image tokens.

With formats 2 and 3, one dict carries all the images of the request.

Example:
    >>> request = raw_request(prompt, [example_image()])               # doctest: +SKIP
    >>> engine.generate(**request, sampling_params={"max_new_tokens": 16})  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from vlm_tutorial.errors import RequestFormatError
from vlm_tutorial.families import (
    PRECOMPUTED_EMBEDDING,
    ModelFamily,
    detect_family,
    family_of_processor,
)
from vlm_tutorial.images import load_image
from vlm_tutorial.validation import validate_image_data

Request = dict[str, Any]

_URL = re.compile(r"^https?://", re.IGNORECASE)


def _as_list(images: Any) -> list[Any]:
    if images is None:
        raise RequestFormatError("images is None; pass one image or a list of images")
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    if not items:
        raise RequestFormatError("images is empty; pass at least one image")
    return items


def _absolute_if_file(item: Any) -> Any:
    if isinstance(item, os.PathLike):
        item = os.fspath(item)
    if isinstance(item, str) and len(item) < 4096 and not os.path.isabs(item):
        try:
            if os.path.isfile(item):
                return os.path.abspath(item)
        except (OSError, ValueError):
            pass
    return item


def raw_request(prompt: str, images: Any) -> Request:
    """Format 1: a text prompt and raw images, which SGLang loads itself.

    ``images`` is one image or a list: PIL images, file paths (``str`` or
    ``Path``), ``http(s)`` URLs, base64 strings, ``data:`` URLs or bytes.
    They pass through as given, except paths: SGLang 0.5.17 reads a file only
    from an absolute path (a relative one is taken for base64), so a path to
    an existing file becomes an absolute ``str``. Every source but a URL is
    decoded once here, so a missing file or junk base64 fails now rather than
    inside the engine (a URL is left to the engine, to download it once). The
    prompt must hold one image placeholder per image (use
    :func:`~vlm_tutorial.build_prompt`).

    Example:
        >>> from vlm_tutorial.images import example_image
        >>> request = raw_request("<|image|>What is it?", example_image())
        >>> sorted(request), len(request["image_data"])
        (['image_data', 'prompt'], 1)
    """
    if not isinstance(prompt, str):
        raise RequestFormatError(
            f"prompt must be a str, got {type(prompt).__name__}; build it with build_prompt()"
        )
    items = [_absolute_if_file(i) for i in _as_list(images)]
    validate_image_data(items, prompt=prompt)
    for item in items:
        if not (isinstance(item, str) and _URL.match(item)):
            load_image(item)
    return {"prompt": prompt, "image_data": items}


def run_processor(processor: Any, prompt: str, images: Any, **processor_kwargs: Any) -> Any:
    """Load ``images`` and run the Hugging Face ``processor`` on them with ``prompt``.

    Extra keyword arguments go to the processor call, e.g.
    ``size={"shortest_edge": min_pixels, "longest_edge": max_pixels}`` for
    Qwen2.5-VL's pixel budget (a ``max_pixels=`` keyword, which transformers
    5 ignores, is refused with that fix). As SGLang does, a prompt
    that already starts with the tokenizer's BOS token (Llama 4's chat
    template writes ``<|begin_of_text|>``) is tokenized without adding a
    second one.

    Example:
        >>> inputs = run_processor(processor, prompt, [example_image()])  # doctest: +SKIP
        >>> inputs["input_ids"].shape                                     # doctest: +SKIP
        torch.Size([1, 95])
    """
    if not isinstance(prompt, str):
        raise RequestFormatError(
            f"prompt must be a str, got {type(prompt).__name__}; build it with build_prompt()"
        )
    family = family_of_processor(processor)
    if family is not None:
        family.check_processor_kwargs(processor_kwargs)
    loaded = [load_image(i) for i in _as_list(images)]
    validate_image_data(loaded, prompt=prompt)
    bos = getattr(getattr(processor, "tokenizer", processor), "bos_token", None)
    if bos and prompt.startswith(bos):
        processor_kwargs.setdefault("add_special_tokens", False)
    return processor(text=[prompt], images=loaded, return_tensors="pt", **processor_kwargs)


def _ids(processor_output: Any) -> list[int]:
    return processor_output["input_ids"][0].tolist()


def embedding_item(family: ModelFamily, processor_output: Any, embedding: Any) -> dict[str, Any]:
    """The ``image_data`` dict that carries a precomputed ``embedding`` to SGLang 0.5.17.

    Only what SGLang reads travels (no pixels): the family's
    ``embedding_format`` and ``embedding_key``, and its ``embedding_extra_keys``
    of the processor output (Qwen2.5-VL: ``image_grid_thw``, for the rope positions).

    Example:
        >>> from vlm_tutorial.families import LLAMA4
        >>> sorted(embedding_item(LLAMA4, {"pixel_values": None}, "EMB"))
        ['format', 'precomputed_embeddings']
    """
    item = {"format": family.embedding_format, family.embedding_key: embedding}
    return item | {key: processor_output[key] for key in family.embedding_extra_keys}


def processor_output_request(
    processor: Any, prompt: str, images: Any, **processor_kwargs: Any
) -> Request:
    """Format 2: ``input_ids`` plus ``dict(processor_output, format="processor_output")``.

    The client runs the processor (with any ``processor_kwargs``, e.g. a
    smaller pixel budget), so SGLang skips its own preprocessing and runs the
    vision tower on the given ``pixel_values``.

    Example:
        >>> req = processor_output_request(processor, prompt, [img])  # doctest: +SKIP
        >>> req["image_data"][0]["format"]                              # doctest: +SKIP
        'processor_output'
    """
    inputs = run_processor(processor, prompt, images, **processor_kwargs)
    request = {"input_ids": _ids(inputs), "image_data": [dict(inputs, format="processor_output")]}
    validate_image_data(request["image_data"], input_ids=request["input_ids"])
    return request


def precomputed_embedding_request(
    processor: Any,
    prompt: str,
    images: Any,
    encoder: Callable[[Any], Any] | Any,
    *,
    keep_processor_output: bool = False,
    **processor_kwargs: Any,
) -> Request:
    """Format 3: ``input_ids`` plus one lean dict with the precomputed vision embedding.

    ``encoder`` maps the processor output to the embedding tensor
    ``(num_image_tokens, text_hidden)``, e.g. the result of
    :func:`~vlm_tutorial.load_vision_encoder`; it may also be such a tensor,
    computed earlier for the same images (reuse). The dict carries only what
    the model reads (:func:`embedding_item`):
    no pixel tensors travel. ``keep_processor_output=True`` (Qwen2.5-VL only,
    for teaching) adds every key of the processor output, pixels included, as
    the original SGLang docs did: SGLang ships each key between its processes.

    Example:
        >>> encoder = load_vision_encoder(model_path)                              # doctest: +SKIP
        >>> req = precomputed_embedding_request(processor, prompt, [img], encoder)  # doctest: +SKIP
        >>> req["image_data"][0]["feature"].shape                                  # doctest: +SKIP
        torch.Size([64, 2048])
    """
    family = detect_family(processor)
    if keep_processor_output and family.embedding_format != PRECOMPUTED_EMBEDDING:
        raise RequestFormatError(
            f"keep_processor_output=True is not possible for {family.name}: SGLang 0.5.17 takes "
            f"its embedding as {family.embedding_format!r} with {family.embedding_key}, and with "
            "pixel_values in that dict its scheduler cuts the embedding into one row per tile and fails"
        )
    inputs = run_processor(processor, prompt, images, **processor_kwargs)
    embeddings = encoder(inputs) if callable(encoder) else encoder
    item = embedding_item(family, inputs, embeddings)
    if keep_processor_output:
        item = {**inputs, **item}
    request = {"input_ids": _ids(inputs), "image_data": [item]}
    hidden = getattr(encoder, "text_hidden_size", None)
    validate_image_data(request["image_data"], input_ids=request["input_ids"], hidden_size=hidden)
    return request


def describe_request(request: Request) -> dict[str, Any]:
    """Shapes and sizes of a request, for printing in a notebook.

    ``tensor_bytes`` adds up the tensors in ``image_data``: what SGLang
    ships between its processes besides the token ids.

    Example:
        >>> describe_request({"prompt": "<|image|>hi", "image_data": ["a.png"]})
        {'prompt_chars': 11, 'image_data': ['str'], 'tensor_bytes': 0}
    """
    info: dict[str, Any] = {}
    if "prompt" in request:
        info["prompt_chars"] = len(request["prompt"])
    if "input_ids" in request:
        info["input_ids_len"] = len(request["input_ids"])
    items: list[Any] = []
    nbytes = 0
    for item in request.get("image_data", []):
        if not isinstance(item, dict):
            items.append(type(item).__name__)
            continue
        shown = {}
        for key, value in item.items():
            if hasattr(value, "shape"):
                nbytes += value.numel() * value.element_size() if hasattr(value, "numel") else 0
            if key in ("input_ids", "attention_mask"):
                continue
            shown[key] = tuple(value.shape) if hasattr(value, "shape") else value
        items.append(shown)
    info["image_data"] = items
    info["tensor_bytes"] = nbytes
    return info


__all__ = [
    "embedding_item",
    "raw_request",
    "run_processor",
    "processor_output_request",
    "precomputed_embedding_request",
    "describe_request",
]
