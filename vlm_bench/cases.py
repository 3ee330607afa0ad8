"""The engine cases: formats, reuse, limit. Each measurement becomes one plain-dict record.

* ``formats`` (a): the same image sent as raw image, processor output,
  precomputed embedding (lean dict) and, for Qwen2.5-VL, precomputed
  embedding with the whole processor output kept in the dict; for each image
  size, one request and a batch of ``batch`` concurrent requests.
* ``reuse`` (b): one image, K questions asked one after another: raw image
  each time, against an embedding computed once and reused (the question's
  ids are built around the image's ids, so the processor runs once too);
  with SGLang's caches off, the radix cache alone, and both caches at
  SGLang's defaults (:data:`CACHE_SETTINGS`).
* ``limit`` (c): a precomputed-embedding request against a text-only request
  with the same number of ids (the least an image can cost once the client
  has done the vision work), and a raw-image request of that length (the
  difference is the engine's own image work).

Each record holds the client-side preparation split into parts
(``decode_s``: image file to pixels, ``processor_s``: the HF processor,
``encoder_s``: the vision tower, ``build_s``: building the request; see
:mod:`vlm_bench.prep`, which prepares a batch's images together),
``prep_s`` (their sum), the engine's ``ttft_s`` / ``total_s``
(:mod:`vlm_bench.timing`), ``e2e_s = prep_s + total_s`` and the
token counts the engine reported.

Example:
    >>> records = run_formats(ctx)  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vlm_tutorial.families import PRECOMPUTED_EMBEDDING, ModelFamily
from vlm_tutorial.images import load_image
from vlm_tutorial.prompts import build_prompt
from vlm_tutorial.validation import validate_image_data

from .inputs import image_file, question_ids_with_image, text_only_ids
from .prep import FORMATS, TimedEncoder, prepare
from .requests import embedding_item, run_processor
from .timing import batch_request, time_generate

#: SGLang's caches per engine: name -> (radix cache on, vision cache on). ``off``: both off
#: (every case); ``radix`` and ``default`` (SGLang's defaults: ``SGLANG_VLM_CACHE_SIZE_MB``
#: unset, radix cache on) run the reuse case only.
CACHE_SETTINGS: dict[str, tuple[bool, bool]] = {
    "off": (False, False),
    "radix": (True, False),
    "default": (True, True),
}

#: What each format name means, for the report.
FORMAT_LABELS = {
    "raw": "1. raw image (path), SGLang decodes, preprocesses, encodes",
    "processor_output": "2. processor output, SGLang encodes",
    "precomputed": "3. precomputed embedding, lean dict",
    "precomputed_full": "3'. precomputed embedding + whole processor output in the dict",
    "text": "text-only prompt of the same length",
    "reuse": "embedding computed once, reused for every question",
}

QUESTION = "Describe this image in one sentence."


def questions(k: int) -> list[str]:
    """``k`` different questions about one image.

    Example:
        >>> questions(2)
        ['Question 1: what is in this image?', 'Question 2: what is in this image?']
    """
    return [f"Question {i + 1}: what is in this image?" for i in range(k)]


@dataclass
class Context:
    """Everything the cases share: the engine, the client-side models, settings, the records."""

    family: ModelFamily
    backend: str
    engine: Any
    processor: Any
    encoder: Any
    max_new_tokens: int
    repeats: int
    warmup: int
    sync: Callable[[], None] = lambda: None
    progress: Callable[[], None] = lambda: None
    #: A key of :data:`CACHE_SETTINGS` (None: an engine without these caches).
    caches: str | None = None
    #: Extra processor arguments, e.g. ``{"device": "cuda"}`` (the fast image processor on the GPU).
    processor_kwargs: dict[str, Any] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    _variant: int = 1000

    def fresh_variant(self) -> int:
        """A new image variant number: an image no cache has seen."""
        self._variant += 1
        return self._variant


def formats_for(family: ModelFamily) -> tuple[str, ...]:
    """The formats case (a) measures for ``family`` (Llama 4 cannot keep the processor output).

    Example:
        >>> from vlm_tutorial.families import LLAMA4
        >>> formats_for(LLAMA4)
        ('raw', 'processor_output', 'precomputed')
    """
    if family.embedding_format != PRECOMPUTED_EMBEDDING:
        return tuple(f for f in FORMATS if f != "precomputed_full")
    return FORMATS


def _record(
    ctx: Context,
    case: str,
    variant: str,
    parts: dict[str, float],
    timing: Any,
    **keys: Any,
) -> dict[str, Any]:
    prep = sum(parts.values())
    return {
        "case": case,
        "variant": variant,
        "backend": ctx.backend,
        **_cache_keys(ctx),
        **keys,
        "prep": dict(parts),
        "prep_s": prep,
        "ttft_s": timing.ttft_s,
        "ttft_first_s": timing.ttft_first_s,
        "total_s": timing.total_s,
        "e2e_s": prep + timing.total_s,
        "prompt_tokens": timing.prompt_tokens,
        "completion_tokens": timing.completion_tokens,
        "tokens_ok": all(c == ctx.max_new_tokens for c in timing.completion_tokens),
    }


def _cache_keys(ctx: Context) -> dict[str, Any]:
    radix = None if ctx.caches is None else CACHE_SETTINGS[ctx.caches][0]
    return {"caches": ctx.caches, "radix": radix}


def _add(parts: dict[str, float], more: dict[str, float]) -> None:
    for key, value in more.items():
        parts[key] = parts.get(key, 0.0) + value


def probe(ctx: Context, side: int) -> dict[str, int]:
    """Image tokens and prompt length of the benchmark prompt with an image of ``side`` px.

    Example:
        >>> probe(ctx, 448)  # doctest: +SKIP
        {'image_tokens': 256, 'input_len': 283}
    """
    prompt = build_prompt(ctx.processor, QUESTION, num_images=1)
    inputs = run_processor(ctx.processor, prompt, [load_image(image_file(side, 0))])
    ids = inputs["input_ids"][0].tolist()
    return {
        "image_tokens": sum(1 for i in ids if i == ctx.family.embedding_token_id),
        "input_len": len(ids),
    }


def _measure_format(
    ctx: Context, fmt: str, side: int, batch: int, shape: dict[str, int], repeat: int | None
) -> dict[str, Any]:
    """One timed call and its record (``repeat=None``: a warm-up run)."""
    prompt = build_prompt(ctx.processor, QUESTION, num_images=1)
    paths = [image_file(side, i) for i in range(batch)]
    requests, parts = prepare(ctx, fmt, paths, prompt)
    call = requests[0] if batch == 1 else batch_request(requests)
    timing = time_generate(ctx.engine, ctx.backend, call, ctx.max_new_tokens)
    return _record(
        ctx, "formats", fmt, parts, timing, side=side, batch=batch, repeat=repeat, **shape
    )


def run_formats(ctx: Context, sides: list[int], batches: list[int]) -> list[dict[str, Any]]:
    """Case (a): every format for every image size and batch size.

    Each repeat visits every (size, batch, format) cell once, so that a burst
    of load on the machine hits all cells alike; warm-up runs come first.

    Example:
        >>> run_formats(ctx, [448, 896], [1, 8])  # doctest: +SKIP
    """
    out = []
    fmts = formats_for(ctx.family)
    shapes = {side: probe(ctx, side) for side in sides}
    cells = [(side, batch, fmt) for side in sides for batch in batches for fmt in fmts]
    for _ in range(ctx.warmup):
        for side, batch, fmt in cells:
            _measure_format(ctx, fmt, side, batch, shapes[side], None)
    for repeat in range(ctx.repeats):
        for side, batch, fmt in cells:
            out.append(_measure_format(ctx, fmt, side, batch, shapes[side], repeat))
            ctx.progress()
    ctx.records.extend(out)
    return out


def _reuse_raw(ctx: Context, side: int, k: int, variant: int) -> tuple[dict[str, float], list[Any]]:
    path = image_file(side, variant)
    parts: dict[str, float] = {}
    timings = []
    for question in questions(k):
        (request,), more = prepare(ctx, "raw", [path], build_prompt(ctx.processor, question, 1))
        _add(parts, more)
        timings.append(time_generate(ctx.engine, ctx.backend, request, ctx.max_new_tokens))
    return parts, timings


def _reuse_embedding(
    ctx: Context, side: int, k: int, variant: int
) -> tuple[dict[str, float], list[Any]]:

    path = image_file(side, variant)
    parts = {"decode_s": 0.0, "processor_s": 0.0, "encoder_s": 0.0, "build_s": 0.0}
    start = time.perf_counter()
    image = load_image(path)
    parts["decode_s"] = time.perf_counter() - start
    base_prompt = build_prompt(ctx.processor, QUESTION, num_images=1)
    start = time.perf_counter()
    inputs = run_processor(ctx.processor, base_prompt, [image], **ctx.processor_kwargs)
    ctx.sync()
    parts["processor_s"] = time.perf_counter() - start
    timed = TimedEncoder(ctx.encoder, ctx.sync)
    embedding = timed(inputs)
    parts["encoder_s"] = timed.seconds
    base_ids = inputs["input_ids"][0].tolist()
    timings = []
    for question in questions(k):
        start = time.perf_counter()
        ids = question_ids_with_image(ctx.processor, ctx.family, base_prompt, base_ids, question)
        item = embedding_item(ctx.family, inputs, embedding)
        validate_image_data([item], input_ids=ids, hidden_size=timed.text_hidden_size)
        parts["build_s"] += time.perf_counter() - start
        request = {"input_ids": ids, "image_data": [item]}
        timings.append(time_generate(ctx.engine, ctx.backend, request, ctx.max_new_tokens))
    return parts, timings


def _reuse_record(
    ctx: Context,
    variant: str,
    side: int,
    k: int,
    parts: dict[str, float],
    timings: list[Any],
    repeat: int,
) -> dict[str, Any]:
    prep = sum(parts.values())
    engine = sum(t.total_s for t in timings)
    return {
        "case": "reuse",
        "variant": variant,
        "backend": ctx.backend,
        **_cache_keys(ctx),
        "side": side,
        "k": k,
        "batch": 1,
        "repeat": repeat,
        "prep": dict(parts),
        "prep_s": prep,
        "ttft_s": timings[0].ttft_s,
        "ttft_later_s": [t.ttft_s for t in timings[1:]],
        "total_s": engine,
        "e2e_s": prep + engine,
        "per_question_total_s": [t.total_s for t in timings],
        "prompt_tokens": [t.prompt_tokens[0] for t in timings],
        "completion_tokens": [t.completion_tokens[0] for t in timings],
        "tokens_ok": all(t.completion_tokens == [ctx.max_new_tokens] for t in timings),
    }


def run_reuse(ctx: Context, side: int, ks: list[int]) -> list[dict[str, Any]]:
    """Case (b): K questions about one image, raw every time vs one embedding reused.

    Every run uses an image no earlier run has sent, so with SGLang's caches on
    only the questions of the same run can share cached work. Each repeat
    visits every (K, variant) cell once.

    Example:
        >>> run_reuse(ctx, 896, [1, 4, 16])  # doctest: +SKIP
    """
    out = []
    runners = {"raw": _reuse_raw, "reuse": _reuse_embedding}
    for _ in range(ctx.warmup):
        for k in ks:
            for runner in runners.values():
                runner(ctx, side, k, ctx.fresh_variant())
    for repeat in range(ctx.repeats):
        for k in ks:
            for name, runner in runners.items():
                parts, timings = runner(ctx, side, k, ctx.fresh_variant())
                out.append(_reuse_record(ctx, name, side, k, parts, timings, repeat))
                ctx.progress()
    ctx.records.extend(out)
    return out


def _measure_limit(
    ctx: Context,
    variant: str,
    side: int,
    text_ids: list[int],
    shape: dict[str, int],
    repeat: int | None,
) -> dict[str, Any]:
    """One timed call and its record (``repeat=None``: a warm-up run)."""
    prompt = build_prompt(ctx.processor, QUESTION, num_images=1)
    if variant == "text":
        start = time.perf_counter()
        request = {"input_ids": list(text_ids)}
        parts = {"build_s": time.perf_counter() - start}
    else:
        (request,), parts = prepare(ctx, variant, [image_file(side, 0)], prompt)
    timing = time_generate(ctx.engine, ctx.backend, request, ctx.max_new_tokens)
    return _record(ctx, "limit", variant, parts, timing, side=side, batch=1, repeat=repeat, **shape)


#: Variants of case (c).
LIMIT_VARIANTS = ("text", "precomputed", "raw")


def run_limit(ctx: Context, sides: list[int]) -> list[dict[str, Any]]:
    """Case (c): text-only prompt of the image prompt's length vs precomputed vs raw.

    Example:
        >>> run_limit(ctx, [448])  # doctest: +SKIP
    """
    out = []
    shapes = {side: probe(ctx, side) for side in sides}
    texts = {side: text_only_ids(ctx.processor, shapes[side]["input_len"]) for side in sides}
    cells = [(side, variant) for side in sides for variant in LIMIT_VARIANTS]
    for _ in range(ctx.warmup):
        for side, variant in cells:
            _measure_limit(ctx, variant, side, texts[side], shapes[side], None)
    for repeat in range(ctx.repeats):
        for side, variant in cells:
            out.append(_measure_limit(ctx, variant, side, texts[side], shapes[side], repeat))
            ctx.progress()
    ctx.records.extend(out)
    return out


def planned_units(
    family: ModelFamily,
    cases: list[str],
    sides: list[int],
    batches: list[int],
    ks: list[int],
    repeats: int,
    cache_settings: int,
) -> int:
    """How many measurements the engine cases will record (for the progress bar).

    Example:
        >>> from vlm_tutorial.families import QWEN2_5_VL
        >>> planned_units(QWEN2_5_VL, ["formats"], [448], [1, 8], [1], 3, 1)
        24
    """
    n = 0
    if "formats" in cases:
        n += len(sides) * len(batches) * repeats * len(formats_for(family))
    if "reuse" in cases:
        n += len(ks) * repeats * 2 * cache_settings
    if "limit" in cases:
        n += len(sides) * repeats * len(LIMIT_VARIANTS)
    return n


__all__ = [
    "CACHE_SETTINGS",
    "FORMATS",
    "FORMAT_LABELS",
    "LIMIT_VARIANTS",
    "QUESTION",
    "Context",
    "formats_for",
    "planned_units",
    "probe",
    "questions",
    "run_formats",
    "run_limit",
    "run_reuse",
]
