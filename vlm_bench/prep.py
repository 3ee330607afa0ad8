"""The client's side of one ``generate`` call: image decode, processor, encoder, requests; timed.

:func:`prepare` builds the requests of one call (one request, or a batch) in
one format and times four phases on the wall clock:

* ``decode_s``: image files to pixels. The images of a batch are decoded at
  once in a thread pool (PIL's decoders release the GIL).
* ``processor_s``: the Hugging Face processor, one call per request (each
  request has its own ``input_ids``). ``processor_kwargs={"device": "cuda"}``
  runs transformers' fast image processor on the GPU, as SGLang does for raw
  images.
* ``encoder_s``: the vision encoder, once for every image of the call (their
  processor outputs concatenated), synchronised with the GPU.
* ``build_s``: the request dicts and their validation.

``together=False`` prepares the requests of a batch one after another instead,
each with its own decode, processor and encoder call.

Example:
    >>> requests, parts = prepare(ctx, "precomputed", [image_file(448, i) for i in range(8)], prompt)  # doctest: +SKIP
    >>> len(requests), sorted(parts)  # doctest: +SKIP
    (8, ['build_s', 'decode_s', 'encoder_s', 'processor_s'])
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from vlm_tutorial.families import QWEN2_5_VL, ModelFamily
from vlm_tutorial.images import load_image
from vlm_tutorial.validation import validate_image_data

from .requests import embedding_item, raw_request, run_processor

#: Request formats :func:`prepare` builds, in table order.
FORMATS = ("raw", "processor_output", "precomputed", "precomputed_full")

#: The processor output keys the vision encoder reads; concatenated over images.
ENCODER_INPUTS = ("pixel_values", "image_grid_thw")


#: Client encoders (``--client-encoder``): name -> (:class:`~vlm_bench.qwen_tower.QwenTower`
#: attention, or None for transformers' own forward of ``encoder.module``; ``torch.compile``).
CLIENT_ENCODERS: dict[str, tuple[str | None, bool]] = {
    "transformers": (None, False),
    "transformers+compile": (None, True),
    "fast": ("sdpa", False),
    "cudnn": ("cudnn", False),
    "varlen": ("varlen", False),
    "fast+compile": ("sdpa", True),
    "cudnn+compile": ("cudnn", True),
    "varlen+compile": ("varlen", True),
}


def compile_layers(module: Any) -> None:
    """``torch.compile`` each layer of the longest ``ModuleList`` in ``module`` (its blocks).

    The layers share their code, so one compiled graph serves them all.

    Example:
        >>> compile_layers(encoder.module)  # doctest: +SKIP
    """
    import torch

    lists = [m for m in module.modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        raise ValueError(f"{type(module).__name__} has no layer list to compile")
    for layer in max(lists, key=len):
        layer.compile()


def client_encoder(encoder: Any, name: str) -> Any:
    """The client encoder ``name`` (:data:`CLIENT_ENCODERS`) on the weights of ``encoder``.

    ``encoder`` comes from :func:`vlm_tutorial.load_vision_encoder`. The fast
    variants wrap its ``module`` in a :class:`~vlm_bench.qwen_tower.QwenEncoder`;
    ``transformers+compile`` compiles ``encoder.module``'s layers in place.

    Example:
        >>> fast = client_encoder(load_vision_encoder(path), "cudnn+compile")  # doctest: +SKIP
    """
    from .qwen_tower import QwenEncoder, check_attention

    if name not in CLIENT_ENCODERS:
        raise ValueError(f"client encoder {name!r} is not one of {sorted(CLIENT_ENCODERS)}")
    attention, compiled = CLIENT_ENCODERS[name]
    if attention is None:
        if compiled:
            compile_layers(encoder.module)
        return encoder
    if encoder.family is not QWEN2_5_VL:
        raise ValueError(
            f"client encoder {name!r} is the fast Qwen2.5-VL tower; {encoder.family.name} has "
            "'transformers' and 'transformers+compile'"
        )
    check_attention(attention, encoder.device, encoder.dtype)
    return QwenEncoder(encoder, attention=attention, compile=compiled)


class TimedEncoder:
    """Wrap a vision encoder and add up the seconds spent in it (synchronised with the GPU).

    Example:
        >>> timed = TimedEncoder(lambda inputs: inputs["pixel_values"], sync=lambda: None)
        >>> timed({"pixel_values": [1, 2]}), timed.seconds > 0
        ([1, 2], True)
    """

    def __init__(self, encoder: Any, sync: Callable[[], None]) -> None:
        self.encoder = encoder
        self.sync = sync
        self.seconds = 0.0
        self.text_hidden_size = getattr(encoder, "text_hidden_size", None)

    def __call__(self, processor_output: Any) -> Any:
        start = time.perf_counter()
        out = self.encoder(processor_output)
        self.sync()
        self.seconds += time.perf_counter() - start
        return out


def merge_processor_outputs(outputs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One encoder input for the images of several processor outputs (:data:`ENCODER_INPUTS`).

    Example:
        >>> import torch
        >>> a = {"pixel_values": torch.zeros(4, 2), "image_grid_thw": torch.tensor([[1, 2, 2]])}
        >>> merged = merge_processor_outputs([a, a])
        >>> merged["pixel_values"].shape, merged["image_grid_thw"].tolist()
        (torch.Size([8, 2]), [[1, 2, 2], [1, 2, 2]])
    """
    import torch

    if not outputs:
        raise ValueError("merge_processor_outputs needs at least one processor output")
    keys = [key for key in ENCODER_INPUTS if key in outputs[0]]
    merged = {key: torch.cat([torch.as_tensor(out[key]) for out in outputs]) for key in keys}
    return merged


def embedding_rows(family: ModelFamily, ids: Sequence[int]) -> int:
    """How many embedding rows a request's ``ids`` take: one per embedding placeholder token.

    Example:
        >>> from vlm_tutorial.families import QWEN2_5_VL
        >>> embedding_rows(QWEN2_5_VL, [1, QWEN2_5_VL.embedding_token_id, 2])
        1
    """
    return sum(1 for i in ids if i == family.embedding_token_id)


def _decode_all(paths: Sequence[str], pool: ThreadPoolExecutor | None) -> list[Any]:
    if pool is None or len(paths) == 1:
        return [load_image(p) for p in paths]
    return list(pool.map(load_image, paths))


def prepare(
    ctx: Any,
    fmt: str,
    paths: Sequence[str],
    prompt: str,
    *,
    together: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Build the requests of one call: one image file of ``paths`` per request, format ``fmt``.

    ``ctx`` carries ``family``, ``processor``, ``encoder``, ``sync`` and
    ``processor_kwargs`` (:class:`vlm_bench.cases.Context`). Returns
    the requests and the seconds of each phase (see the module docs).

    Example:
        >>> requests, parts = prepare(ctx, "raw", [image_file(448)], prompt)  # doctest: +SKIP
        >>> parts["build_s"] > 0  # doctest: +SKIP
        True
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {FORMATS}")
    if not paths:
        raise ValueError("prepare needs at least one image file")
    if not together and len(paths) > 1:
        requests: list[dict[str, Any]] = []
        parts: dict[str, float] = {}
        for path in paths:
            more_requests, more = prepare(ctx, fmt, [path], prompt)
            requests += more_requests
            for key, value in more.items():
                parts[key] = parts.get(key, 0.0) + value
        return requests, parts

    parts = {"decode_s": 0.0, "processor_s": 0.0, "encoder_s": 0.0, "build_s": 0.0}
    if fmt == "raw":
        start = time.perf_counter()
        requests = [raw_request(prompt, [path]) for path in paths]
        parts["build_s"] = time.perf_counter() - start
        return requests, parts

    kwargs = dict(getattr(ctx, "processor_kwargs", None) or {})
    pool_size = max(1, min(len(paths), os.cpu_count() or 1))
    with ThreadPoolExecutor(pool_size) if len(paths) > 1 else contextlib.nullcontext() as pool:
        start = time.perf_counter()
        images = _decode_all(paths, pool)
        parts["decode_s"] = time.perf_counter() - start
    start = time.perf_counter()
    outputs = [run_processor(ctx.processor, prompt, [image], **kwargs) for image in images]
    ctx.sync()
    parts["processor_s"] = time.perf_counter() - start
    ids = [out["input_ids"][0].tolist() for out in outputs]

    if fmt == "processor_output":
        start = time.perf_counter()
        requests = []
        for out, request_ids in zip(outputs, ids, strict=True):
            item = dict(out, format="processor_output")
            validate_image_data([item], input_ids=request_ids)
            requests.append({"input_ids": request_ids, "image_data": [item]})
        parts["build_s"] = time.perf_counter() - start
        return requests, parts

    timed = TimedEncoder(ctx.encoder, ctx.sync)
    merged = outputs[0] if len(outputs) == 1 else merge_processor_outputs(outputs)
    embedding = timed(merged)
    parts["encoder_s"] = timed.seconds

    start = time.perf_counter()
    rows = [embedding_rows(ctx.family, request_ids) for request_ids in ids]
    if sum(rows) != embedding.shape[0]:
        raise RuntimeError(
            f"the encoder gave {embedding.shape[0]} rows for {len(ids)} request(s) holding "
            f"{sum(rows)} {ctx.family.embedding_token} tokens"
        )
    requests = []
    for out, request_ids, part in zip(outputs, ids, embedding.split(rows), strict=True):
        item = embedding_item(ctx.family, out, part)
        if fmt == "precomputed_full":  # the older docs' form: the whole processor output too
            item = {**out, **item}
        validate_image_data([item], input_ids=request_ids, hidden_size=timed.text_hidden_size)
        requests.append({"input_ids": request_ids, "image_data": [item]})
    parts["build_s"] = time.perf_counter() - start
    return requests, parts


__all__ = [
    "CLIENT_ENCODERS",
    "ENCODER_INPUTS",
    "FORMATS",
    "TimedEncoder",
    "client_encoder",
    "compile_layers",
    "embedding_rows",
    "merge_processor_outputs",
    "prepare",
]
