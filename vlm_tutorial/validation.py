"""Check an ``Engine.generate`` request before it reaches the engine.

SGLang 0.5.17 reports some mistakes late or cryptically, and some not at all (a Llama 4
``precomputed_embedding`` dict kills its scheduler); these checks name the wrong value and the fix.

>>> validate_image_data(["photo.png"], prompt="<|image|>What is it?")
>>> validate_image_data([{"format": "processor_output"}], prompt="hi")
Traceback (most recent call last):
vlm_tutorial.errors.RequestFormatError: a 'processor_output' dict goes with input_ids=...
"""

import math
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import EmbeddingShapeError, RequestFormatError, UnsupportedImageSourceError
from .families import FAMILIES, PRECOMPUTED_EMBEDDING, PROCESSOR_OUTPUT, ModelFamily, get_family


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def validate_input_ids(input_ids: Any, *, vocab_size: int | None = None) -> list[int]:
    """Check one request's ``input_ids`` (each in ``[0, vocab_size)``); return them as a list."""
    ids = input_ids.tolist() if hasattr(input_ids, "tolist") else input_ids
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
        raise RequestFormatError(
            f"input_ids must be a list of ints, got {type(input_ids).__name__}; tokenize with the "
            "processor and send its input_ids[0].tolist()"
        )
    ids = list(ids[0]) if len(ids) == 1 and isinstance(ids[0], (list, tuple)) else list(ids)
    if not ids:
        raise RequestFormatError("input_ids is empty; a request needs at least one token")
    for i, token in enumerate(ids):
        if not _is_int(token):
            raise RequestFormatError(
                f"input_ids[{i}] is {_short(token)} (a {type(token).__name__}); token ids are "
                "ints: send one request's ids as a flat list, the processor's input_ids[0]"
            )
        if token < 0 or (vocab_size is not None and token >= vocab_size):
            raise RequestFormatError(
                f"input_ids[{i}] is {token}, outside the vocabulary [0, {vocab_size}); were these "
                "ids made by this model's tokenizer?"
            )
    return [int(t) for t in ids]


_BOOL: tuple[Callable[[Any], bool], str] = (lambda v: isinstance(v, bool), "True or False")
#: What each ``sampling_params`` value must be (SGLang's ``SamplingParams``); None is the default.
_SAMPLING_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "max_new_tokens": (lambda v: _is_int(v) and v >= 1, "an int >= 1, e.g. 16"),
    "temperature": (lambda v: _is_number(v) and v >= 0, "a finite number >= 0"),
    "top_p": (lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1]"),
    "top_k": (lambda v: _is_int(v) and (v == -1 or v >= 1), "-1 (top-k off) or an int >= 1"),
    "min_p": (lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "sampling_seed": (_is_int, "an int"),
    "ignore_eos": _BOOL,
    "skip_special_tokens": _BOOL,
    "stop_token_ids": (
        lambda v: isinstance(v, (list, tuple)) and all(map(_is_int, v)),
        "a list of int token ids",
    ),
}


def validate_sampling_params(params: Any) -> None:
    """Check the types and ranges of one request's ``sampling_params`` (SGLang's rules)."""
    if params is not None and not isinstance(params, Mapping):
        raise RequestFormatError(
            f"sampling_params must be a dict (a list of dicts for a batch), got "
            f"{type(params).__name__}; e.g. {{'temperature': 0, 'max_new_tokens': 16}}"
        )
    for key, value in (params or {}).items():
        check, wanted = _SAMPLING_RULES.get(key, (lambda v: True, ""))
        if value is not None and not check(value):
            raise RequestFormatError(
                f"sampling_params[{key!r}] is {_short(value)} (a {type(value).__name__}); it "
                f"must be {wanted}"
            )


def _families(known: ModelFamily | None) -> list[ModelFamily]:
    return [known] if known is not None else list(FAMILIES.values())


def _check_raw(
    items: list[Any], prompt: str | None, ids: list[int] | None, family: ModelFamily | None
) -> None:
    """Raw images (none for text only): one per placeholder of the prompt or of its ids."""
    from PIL import Image

    for i, item in enumerate(items):
        if not isinstance(item, (str, bytes, bytearray, memoryview, os.PathLike, Image.Image)):
            raise UnsupportedImageSourceError(
                f"image_data[{i}] is a {type(item).__name__} ({_short(item)}); raw images are "
                "PIL images, file paths, http(s) URLs, base64 strings, data URLs or bytes"
            )
    n, build = len(items), f"build_prompt(processor, question, num_images={len(items)})"
    if prompt is not None:
        count = sum(prompt.count(f.prompt_image_marker) for f in _families(family))
        if count != n:
            tokens = " or ".join(f.prompt_image_token for f in _families(family))
            hint = "".join(
                f"; it holds {f.prompt_image_token}, the placeholder of {f.name}"
                for f in FAMILIES.values()
                if f not in _families(family) and f.prompt_image_marker in prompt
            )
            raise RequestFormatError(
                f"the prompt has {count or 'no'} image placeholder(s) ({tokens}) but image_data "
                f"has {n} image(s){hint}; pass one image per placeholder ({build})"
            )
    elif ids is not None and family is not None:
        marker, row = family.prompt_image_marker, family.embedding_token
        if (found := ids.count(family.token_id(marker))) != n:
            raise RequestFormatError(
                f"input_ids hold {found} image placeholder(s) ({marker}) but image_data has {n} "
                f"image(s); send the ids of a prompt with one placeholder per image ({build})"
            )
        per_image = family.prompt_image_token.count(row)
        if (rows := ids.count(family.token_id(row))) != per_image * n:
            raise RequestFormatError(
                f"input_ids hold {rows} {row} token(s) where {n} raw image(s) need "
                f"{per_image * n}: expanded ids are a processor output; send the unexpanded "
                "prompt's ids with raw images, or the processor output as a 'processor_output' dict"
            )


def _check_grid(grid: Any, key: str, family: ModelFamily, ids: list[int]) -> None:
    merge = family.spatial_merge_size or 1
    rows = grid.tolist() if hasattr(grid, "tolist") else grid
    if isinstance(rows, (list, tuple)) and rows and _is_int(rows[0]):
        rows = [rows]  # one image given as a flat (t, h, w)
    rows = rows if isinstance(rows, (list, tuple)) else []
    if not rows or not all(
        isinstance(r, (list, tuple)) and len(r) == 3 and all(map(_is_int, r)) for r in rows
    ):
        raise RequestFormatError(
            f"{key!r} must have shape (num_images, 3) and hold integers, one (t, h, w) row per "
            f"image, got {_short(grid)}; pass the processor's {key} unchanged"
        )
    for i, (t, h, w) in enumerate(rows):
        if min(t, h, w) < 1 or h % merge or w % merge:
            raise RequestFormatError(
                f"{key}[{i}] is {[t, h, w]}: each size must be >= 1 patch, and h and w multiples "
                f"of {merge} ({merge}x{merge} patches merge into one image token); pass the "
                f"processor's {key} unchanged"
            )
    tokens = [t * h * w // merge**2 for t, h, w in rows]
    per_image, total = family.tokens_per_image(ids), ids.count(family.embedding_token_id)
    if sum(tokens) != total or (len(per_image) == len(tokens) and per_image != tokens):
        raise RequestFormatError(
            f"{key} {[list(r) for r in rows]} describes {tokens} image tokens per image but "
            f"input_ids hold {per_image} {family.embedding_token} tokens; take both from the "
            "same processor output"
        )


def _check_embedding(
    value: Any, key: str, ids: list[int], family: ModelFamily, hidden: int | None
) -> None:
    import torch

    if not hasattr(value, "shape") or len(value.shape) != 2:
        got = f"shape {tuple(value.shape)}" if hasattr(value, "shape") else type(value).__name__
        raise EmbeddingShapeError(
            f"{key!r} must be a 2-D tensor (num_image_tokens, hidden_size), got {got}; flatten "
            "the leading dimensions (emb.reshape(-1, emb.shape[-1]))"
        )
    shape = tuple(int(s) for s in value.shape)
    if shape[0] != (expected := ids.count(family.embedding_token_id)):
        raise EmbeddingShapeError(
            f"expected {expected} embedding rows in {key!r}, one per {family.embedding_token} "
            f"token in input_ids, got {shape[0]}; compute input_ids and the embedding from the "
            "same processor output"
        )
    if hidden is not None and shape[1] != hidden:
        raise EmbeddingShapeError(
            f"the embedding in {key!r} is {shape[1]} wide but the language model's hidden size "
            f"is {hidden}; embed with the same checkpoint's vision encoder"
        )
    tensor = torch.as_tensor(value)
    if tensor.device.type == "meta" or not tensor.is_floating_point():
        raise RequestFormatError(
            f"{key!r} has dtype {value.dtype} on device {tensor.device.type}; an embedding is the "
            "vision encoder's floating-point output (e.g. bfloat16) on 'cpu' or 'cuda'"
        )
    if not bool(torch.isfinite(tensor).all()):
        raise RequestFormatError(
            f"{key!r} holds NaN or infinite values, and the model would answer nonsense; check "
            "the vision encoder's dtype (float16 overflows easily: use bfloat16 or float32)"
        )


def _format(item: Mapping[str, Any]) -> str:
    fmt = item.get("format")
    fmt = getattr(fmt, "name", fmt)  # SGLang's MultimodalInputFormat enum
    if isinstance(fmt, str) and fmt.lower() in (PROCESSOR_OUTPUT, PRECOMPUTED_EMBEDDING):
        return fmt.lower()
    raise RequestFormatError(
        f"image_data dict has format={_short(item.get('format'))} (keys {sorted(map(str, item))}); "
        "it needs format='processor_output' (the processor's output) or "
        "format='precomputed_embedding' (an embedding)"
    )


def _check_preprocessed(
    item: Mapping[str, Any], fmt: str, ids: list[int], hidden: int | None, known: ModelFamily | None
) -> None:
    family = next((f for f in _families(known) if f.embedding_token_id in ids), None)
    if family is None:
        tokens = ", ".join(f"{f.embedding_token} for {f.name}" for f in _families(known))
        raise RequestFormatError(
            f"input_ids contain no image token ({tokens}): tokenize the prompt and the images "
            "together, processor(text=[prompt], images=images), and send its input_ids"
        )
    emb_key = "feature" if fmt == PRECOMPUTED_EMBEDDING else "precomputed_embeddings"
    has_pixels, has_emb = item.get("pixel_values") is not None, item.get(emb_key) is not None
    if fmt == PRECOMPUTED_EMBEDDING and family.embedding_format != PRECOMPUTED_EMBEDDING:
        raise RequestFormatError(
            f"SGLang 0.5.17 runs {family.name}'s vision tower on a 'precomputed_embedding' dict "
            f"and dies; send dict(format={family.embedding_format!r}, {family.embedding_key}=emb)"
            " without pixel_values instead"
        )
    if not has_emb and (fmt == PRECOMPUTED_EMBEDDING or not has_pixels):
        need = "pixel_values (the processor's output) or " if fmt == PROCESSOR_OUTPUT else ""
        raise RequestFormatError(
            f"a {fmt!r} dict needs {need}{emb_key}=<embedding (num_image_tokens, hidden_size)>"
        )
    if fmt == PROCESSOR_OUTPUT and has_pixels and has_emb:
        raise RequestFormatError(
            "a 'processor_output' dict carries both pixel_values and precomputed_embeddings; "
            "SGLang 0.5.17 then cuts the embedding into one row per pixel tile and its "
            "scheduler fails (Insufficient multimodal embedding length): drop pixel_values"
        )
    if (grid_key := family.grid_key) is not None:
        if item.get(grid_key) is None:
            raise RequestFormatError(
                f"a {family.name} {fmt!r} dict needs {grid_key} (the processor's (num_images, 3) "
                "grid, for SGLang's rope positions); pass it from the same processor output"
            )
        _check_grid(item[grid_key], grid_key, family, ids)
    if has_emb:
        _check_embedding(item[emb_key], emb_key, ids, family, hidden)


def validate_image_data(
    image_data: Any,
    *,
    input_ids: Any = None,
    prompt: str | None = None,
    hidden_size: int | None = None,
    family: ModelFamily | str | None = None,
    vocab_size: int | None = None,
) -> None:
    """Return quietly if one request's ``image_data`` is valid; raise a clear error otherwise.

    Raw images need one placeholder each; one dict needs ``input_ids``; ``family`` makes it exact.
    """
    known = get_family(family) if family is not None else None
    if prompt is not None and not isinstance(prompt, str):
        raise RequestFormatError(
            f"prompt must be a str for one request, got {type(prompt).__name__}; validate each "
            "request of a batch on its own"
        )
    items = list(image_data) if isinstance(image_data, (list, tuple)) else [image_data]
    items = [] if image_data is None else items
    ids = None if input_ids is None else validate_input_ids(input_ids, vocab_size=vocab_size)
    if not any(isinstance(item, Mapping) for item in items):
        return _check_raw(items, prompt, ids, known)
    formats = [_format(item) for item in items if isinstance(item, Mapping)]
    if len(formats) != len(items):
        raise RequestFormatError(
            "image_data mixes preprocessed dicts with raw images; use one format per request: "
            "raw images with a prompt, or one dict with input_ids"
        )
    if len(items) > 1:
        raise RequestFormatError(
            f"image_data holds {len(items)} preprocessed dicts; SGLang takes exactly one, which "
            "carries all the images of the request: run the processor on all of them at once"
        )
    if ids is None or prompt is not None:
        got = "prompt=..." if prompt is not None else "no input_ids"
        raise RequestFormatError(
            f"a {formats[0]!r} dict goes with input_ids=..., got {got}: SGLang would tokenize a "
            "prompt without expanding its image tokens, so send the processor's input_ids alone"
        )
    _check_preprocessed(items[0], formats[0], ids, hidden_size, known)
