"""Check an ``Engine.generate`` request before it reaches the engine.

SGLang 0.5.17 applies some of these rules itself (one preprocessed dict per
modality), reports others late or cryptically (an embedding with the wrong
number of rows fails deep inside the scheduler), and some not at all (a
Llama 4 ``precomputed_embedding`` dict kills the scheduler; a non-finite
embedding answers with token 0). The checks here run in microseconds and say
which field is wrong and what to change.

Example:
    >>> validate_image_data(["photo.png"], prompt="<|image|>What is it?")
    >>> validate_image_data([{"format": "processor_output"}], prompt="hi")
    Traceback (most recent call last):
    ...
    vlm_tutorial.errors.RequestFormatError: a 'processor_output' dict needs input_ids=..., not prompt=...: ...
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import EmbeddingShapeError, RequestFormatError, UnsupportedImageSourceError
from .families import FAMILIES, PRECOMPUTED_EMBEDDING, PROCESSOR_OUTPUT, ModelFamily, get_family

PREPROCESSED_FORMATS = (PROCESSOR_OUTPUT, PRECOMPUTED_EMBEDDING)

#: Keys that carry pixels; a lean precomputed request has none of them.
PIXEL_KEYS = ("pixel_values", "pixel_values_videos")

#: ``sampling_params`` keys and the kind of value each takes (SGLang's ``SamplingParams``).
SAMPLING_TYPES: dict[str, str] = {
    "max_new_tokens": "int",
    "temperature": "number",
    "top_p": "number",
    "top_k": "int",
    "min_p": "number",
    "sampling_seed": "int",
    "ignore_eos": "bool",
    "skip_special_tokens": "bool",
    "stop_token_ids": "ids",
}


def dict_format(item: Any) -> str | None:
    """``"processor_output"``, ``"precomputed_embedding"`` or None for a raw image.

    Example:
        >>> dict_format({"format": "processor_output"})
        'processor_output'
    """
    if not isinstance(item, Mapping):
        return None
    fmt = item.get("format")
    fmt = getattr(fmt, "name", fmt)  # SGLang's MultimodalInputFormat enum
    if isinstance(fmt, str) and fmt.lower() in PREPROCESSED_FORMATS:
        return fmt.lower()
    raise RequestFormatError(
        f"image_data dict has format={item.get('format')!r}; it needs "
        f"format='processor_output' or format='precomputed_embedding' "
        f"(keys: {sorted(map(str, item))}); see processor_output_request() and "
        "precomputed_embedding_request()"
    )


def _is_raw_image(item: Any) -> bool:
    if isinstance(item, (str, bytes, bytearray, memoryview, os.PathLike)):
        return True
    from PIL import Image

    return isinstance(item, Image.Image)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validate_input_ids(input_ids: Any, *, vocab_size: int | None = None) -> list[int]:
    """Check one request's ``input_ids``; return them as a flat list of ints.

    They must be a non-empty flat sequence (or a 1-row tensor) of integers,
    each in ``[0, vocab_size)`` when ``vocab_size`` is given.

    Example:
        >>> validate_input_ids([1, 2, 3], vocab_size=10)
        [1, 2, 3]
        >>> validate_input_ids([1, 2.5])
        Traceback (most recent call last):
        ...
        vlm_tutorial.errors.RequestFormatError: input_ids[1] is 2.5 (a float); token ids are ints: ...
    """
    if hasattr(input_ids, "dtype") and hasattr(input_ids, "tolist"):
        kind = str(input_ids.dtype)
        if "int" not in kind:
            raise RequestFormatError(
                f"input_ids is a tensor of {kind}; token ids are integers: send "
                "processor_output['input_ids'][0].tolist()"
            )
        input_ids = input_ids.tolist()
    if isinstance(input_ids, (str, bytes)) or not isinstance(input_ids, Sequence):
        raise RequestFormatError(
            f"input_ids must be a list of ints, got {type(input_ids).__name__}; tokenize with the "
            "processor and send processor_output['input_ids'][0].tolist()"
        )
    ids = list(input_ids)
    if ids and all(isinstance(row, (list, tuple)) for row in ids):
        if len(ids) != 1:
            raise RequestFormatError(
                f"input_ids holds {len(ids)} sequences; send one request's ids as a flat list "
                "of ints (e.g. processor_output['input_ids'][0].tolist())"
            )
        ids = list(ids[0])
    if not ids:
        raise RequestFormatError("input_ids is empty; a request needs at least one token")
    for i, token in enumerate(ids):
        if not _is_int(token):
            raise RequestFormatError(
                f"input_ids[{i}] is {_short(token)} (a {type(token).__name__}); token ids are "
                "ints: send the processor's input_ids unchanged"
            )
        if token < 0 or (vocab_size is not None and token >= vocab_size):
            raise RequestFormatError(
                f"input_ids[{i}] is {token}, outside the vocabulary [0, {vocab_size}); were these "
                "ids made by this model's tokenizer?"
            )
    return [int(t) for t in ids]


def validate_sampling_params(params: Any) -> None:
    """Check the values of one request's ``sampling_params`` (types and ranges).

    Example:
        >>> validate_sampling_params({"temperature": 0, "max_new_tokens": 8})
        >>> validate_sampling_params({"max_new_tokens": "8"})
        Traceback (most recent call last):
        ...
        vlm_tutorial.errors.RequestFormatError: sampling_params['max_new_tokens'] is '8' (a str); it must be an int >= 1, e.g. 16
    """
    if params is None:
        return
    if not isinstance(params, Mapping):
        raise RequestFormatError(
            f"sampling_params must be a dict (or a list of dicts for a batch), got "
            f"{type(params).__name__}; e.g. {{'temperature': 0, 'max_new_tokens': 16}}"
        )
    for key, value in params.items():
        kind = SAMPLING_TYPES.get(key)
        if kind is None or value is None:
            continue
        shown = f"sampling_params[{key!r}] is {_short(value)} (a {type(value).__name__})"
        if kind == "bool":
            if not isinstance(value, bool):
                raise RequestFormatError(f"{shown}; it must be True or False")
        elif kind == "int":
            if not _is_int(value):
                raise RequestFormatError(f"{shown}; it must be an int" + _int_hint(key))
            if key == "max_new_tokens" and value < 1:
                raise RequestFormatError(f"{shown}; it must be an int >= 1, e.g. 16")
            if key == "top_k" and value != -1 and value < 1:
                raise RequestFormatError(f"{shown}; it must be -1 (top-k off) or an int >= 1")
        elif kind == "number":
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise RequestFormatError(f"{shown}; it must be a number")
            number = float(value)
            if not math.isfinite(number) or number < 0:
                raise RequestFormatError(f"{shown}; it must be a finite number >= 0")
            if key == "top_p" and not 0 < number <= 1:
                raise RequestFormatError(f"{shown}; it must be in (0, 1]")
            if key == "min_p" and number > 1:
                raise RequestFormatError(f"{shown}; it must be in [0, 1]")
        elif kind == "ids":
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
                raise RequestFormatError(f"{shown}; it must be a list of token ids")
            bad = [t for t in value if not _is_int(t)]
            if bad:
                raise RequestFormatError(f"{shown}; every entry must be an int, not {bad[0]!r}")


def _int_hint(key: str) -> str:
    return " >= 1, e.g. 16" if key == "max_new_tokens" else ", e.g. -1 for top_k off"


def _shape(value: Any) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    return tuple(int(s) for s in shape) if shape is not None else None


def _family_of_request(
    item: Mapping[str, Any], ids: list[int], known: ModelFamily | None
) -> ModelFamily | None:
    if known is not None:
        return known if known.embedding_token_id in ids else None
    for family in FAMILIES.values():
        if family.embedding_token_id in ids:
            return family
    for family in FAMILIES.values():
        if family.grid_key is not None and family.grid_key in item:
            return family
    return None


def _families(known: ModelFamily | None) -> list[ModelFamily]:
    return [known] if known is not None else list(FAMILIES.values())


def _check_raw(
    images: list[Any],
    prompt: str | None,
    input_ids: Any,
    family: ModelFamily | None,
    vocab_size: int | None,
) -> None:
    for i, item in enumerate(images):
        if not _is_raw_image(item):
            raise UnsupportedImageSourceError(
                f"image_data[{i}] is a {type(item).__name__}; raw images are PIL images, file "
                "paths, http(s) URLs, base64 strings, data URLs or bytes (got "
                f"{str(item)[:60]!r})"
            )
    if prompt is None:
        if input_ids is not None and family is not None:
            ids = validate_input_ids(input_ids, vocab_size=vocab_size)
            _check_raw_ids(len(images), ids, family)
        return
    counts = {f: f.prompt_images(prompt) for f in _families(family) if f.prompt_images(prompt)}
    if not counts:
        hint = ""
        if family is not None:
            others = [f for f in FAMILIES.values() if f is not family and f.prompt_images(prompt)]
            hint = "".join(
                f" (it holds {f.prompt_image_token}, the placeholder of {f.name}: this engine "
                f"runs {family.name}, whose placeholder is {family.prompt_image_token})"
                for f in others
            )
        raise RequestFormatError(
            f"the prompt has no image placeholder but {len(images)} image(s) were given{hint}; "
            "build the prompt with build_prompt(processor, question, num_images=...)"
        )
    for fam, n in counts.items():
        if n != len(images):
            raise RequestFormatError(
                f"the prompt has {n} image placeholder(s) ({fam.prompt_image_token}) "
                f"but image_data has {len(images)} image(s); pass one image per placeholder "
                f"(build_prompt(processor, question, num_images={len(images)}))"
            )


def _check_raw_ids(n_images: int, ids: list[int], family: ModelFamily) -> None:
    """``input_ids`` sent with raw images: the unexpanded prompt's, one placeholder per image."""
    marker = family.prompt_image_marker
    n = ids.count(family.token_id(marker))
    if n != n_images:
        raise RequestFormatError(
            f"input_ids hold {n} image placeholder(s) ({marker}) but image_data has {n_images} "
            "image(s); with raw images send the ids of a prompt with one placeholder per image "
            f"(build_prompt(processor, question, num_images={n_images}))"
        )
    per_image = family.prompt_image_token.count(family.embedding_token)
    found = ids.count(family.embedding_token_id)
    if found != per_image * n_images:
        raise RequestFormatError(
            f"input_ids hold {found} {family.embedding_token} tokens for {n_images} raw image(s), "
            f"so they are already expanded (a processor output); with raw images send the "
            f"unexpanded prompt's ids ({per_image} per image), or send the processor output as a "
            "'processor_output' dict (processor_output_request builds it)"
        )


def _check_no_images(
    prompt: str | None, input_ids: Any, family: ModelFamily | None, vocab_size: int | None
) -> None:
    """A request without images must not ask for any."""
    if prompt is not None:
        for fam in _families(family):
            n = fam.prompt_images(prompt)
            if n:
                raise RequestFormatError(
                    f"the prompt has {n} image placeholder(s) ({fam.prompt_image_token}) but "
                    "image_data is empty; pass one image per placeholder, or build a text-only "
                    "prompt (build_prompt(processor, question, num_images=0))"
                )
    if input_ids is not None and family is not None:
        ids = validate_input_ids(input_ids, vocab_size=vocab_size)
        image_ids = {family.embedding_token_id, family.token_id(family.prompt_image_marker)}
        found = [t for t in ids if t in image_ids]
        if found:
            names = sorted({family.embedding_token, family.prompt_image_marker})
            raise RequestFormatError(
                f"input_ids hold {len(found)} image token(s) ({', '.join(names)}) but image_data "
                "is empty; send the image(s) in image_data (the request builders return both), "
                "or tokenize a text-only prompt"
            )


def _check_embedding(
    item: Mapping[str, Any], key: str, ids: list[int], family: ModelFamily, hidden: int | None
) -> None:
    value = item.get(key)
    shape = _shape(value)
    if shape is None:
        raise RequestFormatError(
            f"{key!r} must be a tensor of shape (num_image_tokens, hidden_size), got "
            f"{type(value).__name__}"
        )
    if len(shape) != 2:
        raise EmbeddingShapeError(
            f"{key!r} must be 2-D (num_image_tokens, hidden_size), got shape {shape}; "
            "flatten the leading dimensions, e.g. emb.reshape(-1, emb.shape[-1])"
        )
    expected = ids.count(family.embedding_token_id)
    if shape[0] != expected:
        raise EmbeddingShapeError(
            f"expected {expected} embedding rows in {key!r}, one per {family.embedding_token} "
            f"token in input_ids, got {shape[0]}; compute input_ids and the embedding from the "
            "same processor output (precomputed_embedding_request does)"
        )
    if hidden is not None and shape[1] != hidden:
        raise EmbeddingShapeError(
            f"the embedding in {key!r} is {shape[1]} wide but the language model's hidden size is "
            f"{hidden}; embed with the same checkpoint's vision encoder "
            "(load_vision_encoder(model_path))"
        )
    _check_embedding_values(value, key)


def _check_embedding_values(value: Any, key: str) -> None:
    """Floating point, finite, and on a real device."""
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        if value.device.type == "meta":
            raise RequestFormatError(
                f"{key!r} is on the meta device (a tensor with no data); compute the embedding "
                "with weights loaded on 'cpu' or 'cuda'"
            )
        if not value.is_floating_point():
            raise RequestFormatError(
                f"{key!r} has dtype {value.dtype}; an embedding is floating point (the vision "
                "encoder's output, e.g. torch.bfloat16 or torch.float32), not cast ids or pixels"
            )
        finite = bool(torch.isfinite(value).all())
    else:
        array = np.asarray(value)
        if not np.issubdtype(array.dtype, np.floating):
            raise RequestFormatError(
                f"{key!r} has dtype {array.dtype}; an embedding is floating point"
            )
        finite = bool(np.isfinite(array).all())
    if not finite:
        raise RequestFormatError(
            f"{key!r} holds NaN or infinite values; the model would answer nonsense. Check the "
            "vision encoder's dtype (float16 overflows easily: use bfloat16 or float32)"
        )


def _grid_rows(grid: Any, key: str) -> list[list[int]]:
    rows = grid.tolist() if hasattr(grid, "tolist") else grid
    if isinstance(rows, (list, tuple)) and rows and _is_int(rows[0]):
        rows = [rows]  # one image given as a flat (t, h, w)
    if (
        not isinstance(rows, (list, tuple))
        or not rows
        or not all(isinstance(r, (list, tuple)) and len(r) == 3 for r in rows)
    ):
        raise RequestFormatError(
            f"{key!r} must have shape (num_images, 3), one (t, h, w) row per image, got "
            f"{_shape(grid) or grid!r}; pass the processor's {key} unchanged"
        )
    if not all(_is_int(v) for r in rows for v in r):
        raise RequestFormatError(f"{key!r} must hold integers, got {rows!r}")
    return [[int(v) for v in r] for r in rows]


def _check_grid(item: Mapping[str, Any], family: ModelFamily, ids: list[int]) -> None:
    key = family.grid_key
    assert key is not None and family.spatial_merge_size is not None
    rows = _grid_rows(item[key], key)
    merge = family.spatial_merge_size
    for i, (t, h, w) in enumerate(rows):
        if min(t, h, w) < 1:
            raise RequestFormatError(
                f"{key}[{i}] is {[t, h, w]}: every size must be >= 1 patch; pass the "
                f"processor's {key} unchanged"
            )
        if h % merge or w % merge:
            raise RequestFormatError(
                f"{key}[{i}] is {[t, h, w]}: h and w must be multiples of {merge}, since "
                f"{merge}x{merge} patches merge into one image token"
            )
    tokens = [t * h * w // merge**2 for t, h, w in rows]
    per_image = family.tokens_per_image(ids)
    if sum(tokens) != ids.count(family.embedding_token_id) or (
        len(per_image) == len(tokens) and per_image != tokens
    ):
        raise RequestFormatError(
            f"{key} {rows} describes {tokens} image tokens per image but input_ids hold "
            f"{per_image} {family.embedding_token} tokens; take both from the same processor output"
        )


def _check_preprocessed(
    item: Mapping[str, Any],
    fmt: str,
    ids: list[int],
    hidden_size: int | None,
    known: ModelFamily | None = None,
) -> None:
    family = _family_of_request(item, ids, known)
    if family is None:
        raise RequestFormatError(
            "input_ids contain no image token ("
            + ", ".join(f"{f.embedding_token} for {f.name}" for f in _families(known))
            + "): tokenize with the processor and the images together, e.g. "
            "processor(text=[prompt], images=images), and send its input_ids"
        )
    has_pixels = item.get("pixel_values") is not None
    emb_key = "feature" if fmt == PRECOMPUTED_EMBEDDING else "precomputed_embeddings"
    has_emb = item.get(emb_key) is not None
    if fmt == PRECOMPUTED_EMBEDDING and family.embedding_format != PRECOMPUTED_EMBEDDING:
        raise RequestFormatError(
            f"SGLang 0.5.17 runs {family.name}'s vision tower on a 'precomputed_embedding' "
            "feature and the scheduler dies (IndexError in patch_embedding); send "
            f"dict(format={family.embedding_format!r}, {family.embedding_key}=emb) without "
            "pixel_values instead (precomputed_embedding_request builds it)"
        )
    if fmt == PRECOMPUTED_EMBEDDING and not has_emb:
        raise RequestFormatError(
            "a 'precomputed_embedding' dict needs feature=<tensor (num_image_tokens, hidden_size)>"
        )
    if fmt == PROCESSOR_OUTPUT:
        if not has_pixels and not has_emb:
            raise RequestFormatError(
                "a 'processor_output' dict needs pixel_values (the processor's output) or "
                "precomputed_embeddings; pass dict(processor(...), format='processor_output')"
            )
        if has_pixels and has_emb:
            raise RequestFormatError(
                "a 'processor_output' dict carries both pixel_values and precomputed_embeddings; "
                "SGLang 0.5.17 then cuts the embedding into one row per pixel tile and its "
                "scheduler fails (Insufficient multimodal embedding length): drop pixel_values"
            )
    grid_key = family.grid_key
    if grid_key is not None:
        if item.get(grid_key) is None:
            raise RequestFormatError(
                f"a {family.name} {fmt!r} dict needs {grid_key} (the processor's (num_images, 3) "
                "grid): SGLang computes the multimodal rope positions from it; pass it from the "
                "same processor output"
            )
        _check_grid(item, family, ids)
    if has_emb:
        _check_embedding(item, emb_key, ids, family, hidden_size)


def validate_image_data(
    image_data: Any,
    *,
    input_ids: Sequence[int] | Any | None = None,
    prompt: str | None = None,
    hidden_size: int | None = None,
    vocab_size: int | None = None,
    family: ModelFamily | str | None = None,
) -> None:
    """Return quietly if one request's ``image_data`` is valid; raise a clear error otherwise.

    Rules: one format per request; at most one preprocessed dict, which
    carries all the images; a preprocessed dict goes with ``input_ids``, not
    a text ``prompt``; embedding rows equal the number of image placeholder
    tokens in ``input_ids``, its width equals ``hidden_size`` (when given) and
    its values are finite floats on a real device; a grid (Qwen2.5-VL's
    ``image_grid_thw``) is present, has one positive ``(t, h, w)`` row per image
    that the 2x2 merge can take and matches the image tokens; Llama 4 on SGLang
    0.5.17 takes embeddings only as ``processor_output`` with
    ``precomputed_embeddings``; raw images are matched against the prompt's
    placeholders. A request without images must not ask for any: no image
    placeholder in the prompt.

    ``family`` (the engine's model family, when known) makes the checks
    exact: only its placeholders and image tokens count, ``input_ids`` with
    raw images must be the unexpanded prompt's (one placeholder per image),
    and text-only ``input_ids`` must hold no image token.

    Raises:
        RequestFormatError: (a ``ValueError``) the request breaks a rule.
        EmbeddingShapeError: the embedding's shape does not fit.
        UnsupportedImageSourceError: (a ``TypeError``) an item is no image.

    Example:
        >>> validate_image_data(None, prompt="text only")
    """
    known = get_family(family) if family is not None else None
    if prompt is not None and not isinstance(prompt, str):
        raise RequestFormatError(
            f"prompt must be a str for one request, got {type(prompt).__name__}; validate each "
            "request of a batch on its own"
        )
    if isinstance(image_data, tuple):
        image_data = list(image_data)
    if image_data is not None and not isinstance(image_data, list):
        image_data = [image_data]
    if not image_data:
        _check_no_images(prompt, input_ids, known, vocab_size)
        return
    formats = [dict_format(item) for item in image_data]
    preprocessed = [i for i, f in enumerate(formats) if f is not None]
    if not preprocessed:
        _check_raw(image_data, prompt, input_ids, known, vocab_size)
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
            "at once (processor(text=[prompt], images=[img1, img2]))"
        )
    fmt = formats[0]
    assert fmt is not None
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
    ids = validate_input_ids(input_ids, vocab_size=vocab_size)
    _check_preprocessed(image_data[0], fmt, ids, hidden_size, known)


def has_pixel_tensors(image_data: Any) -> bool:
    """True if any dict in ``image_data`` carries pixels (``pixel_values``...).

    Example:
        >>> has_pixel_tensors([{"format": "precomputed_embedding", "feature": None}])
        False
    """
    items = image_data if isinstance(image_data, list) else [image_data]
    return any(isinstance(d, Mapping) and any(k in d for k in PIXEL_KEYS) for d in items)


__all__ = [
    "PREPROCESSED_FORMATS",
    "PIXEL_KEYS",
    "SAMPLING_TYPES",
    "dict_format",
    "validate_input_ids",
    "validate_sampling_params",
    "validate_image_data",
    "has_pixel_tensors",
]
