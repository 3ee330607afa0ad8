"""Time one ``Engine.generate`` call: time to first token and total, per backend.

* ``backend="sglang"``: one call with ``stream=True``. The first streamed
  chunk of a request marks its first token; the call ends with the last chunk.
  For a batch (list inputs) SGLang streams chunks of all requests, each with
  its ``index``.
* ``backend="transformers"`` (the reference engine, which cannot stream): two
  calls. The time to first token is the wall time of the same request with
  ``max_new_tokens=1`` (prefill plus one sampling step); the total is the
  wall time of the call with the full ``max_new_tokens``.

Both are wall-clock times seen by the caller (``time.perf_counter``), so they
include everything the engine does with the request: for raw images, their
loading, preprocessing and the vision tower.

Example:
    >>> timing = time_generate(engine, "transformers", request, max_new_tokens=8)  # doctest: +SKIP
    >>> timing.ttft_s < timing.total_s                                              # doctest: +SKIP
    True
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: How each backend's time to first token is measured (written into the results).
TTFT_METHODS = {
    "sglang": "stream=True: wall time from the call to the first streamed chunk of each request",
    "transformers": (
        "the reference engine cannot stream: wall time of the same call with max_new_tokens=1 "
        "(prefill plus one sampling step), run just before the full call"
    ),
}


def sampling_params(max_new_tokens: int) -> dict[str, Any]:
    """Greedy decoding of exactly ``max_new_tokens`` tokens (EOS ignored).

    Example:
        >>> sampling_params(8)
        {'temperature': 0, 'max_new_tokens': 8, 'ignore_eos': True}
    """
    return {"temperature": 0, "max_new_tokens": int(max_new_tokens), "ignore_eos": True}


@dataclass
class EngineTiming:
    """Wall-clock timing of one ``generate`` call (one request or a batch).

    Attributes:
        ttft_s: until every request of the call had its first token.
        ttft_first_s: until the first request had its first token.
        total_s: until the call returned every output.
        prompt_tokens, completion_tokens: per request, from ``meta_info``.
    """

    ttft_s: float
    ttft_first_s: float
    total_s: float
    prompt_tokens: list[int] = field(default_factory=list)
    completion_tokens: list[int] = field(default_factory=list)


def batch_request(requests: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Merge single-request keyword arguments into one batch call (list inputs).

    Every request must use the same text key (``prompt`` or ``input_ids``);
    ``image_data`` becomes one list per request.

    Example:
        >>> batch_request([{"prompt": "a", "image_data": ["x.png"]}, {"prompt": "b", "image_data": ["y.png"]}])
        {'prompt': ['a', 'b'], 'image_data': [['x.png'], ['y.png']]}
    """
    if not requests:
        raise ValueError("a batch needs at least one request")
    keys = {"prompt" if "prompt" in r else "input_ids" for r in requests}
    if len(keys) != 1:
        raise ValueError("all requests of a batch must use prompt= or all input_ids=, not both")
    key = keys.pop()
    out: dict[str, Any] = {key: [r[key] for r in requests]}
    if any("image_data" in r for r in requests):
        out["image_data"] = [list(r.get("image_data") or []) for r in requests]
    return out


def _meta(outputs: Any) -> tuple[list[int], list[int]]:
    items = outputs if isinstance(outputs, list) else [outputs]
    prompt = [int(o["meta_info"]["prompt_tokens"]) for o in items]
    completion = [int(o["meta_info"]["completion_tokens"]) for o in items]
    return prompt, completion


def _time_reference(
    engine: Any, request: dict[str, Any], max_new_tokens: int, clock: Callable[[], float]
) -> EngineTiming:
    start = clock()
    engine.generate(**request, sampling_params=sampling_params(1))
    ttft = clock() - start
    start = clock()
    outputs = engine.generate(**request, sampling_params=sampling_params(max_new_tokens))
    total = clock() - start
    prompt, completion = _meta(outputs)
    return EngineTiming(ttft, ttft, total, prompt, completion)


def _time_sglang(
    engine: Any, request: dict[str, Any], max_new_tokens: int, clock: Callable[[], float]
) -> EngineTiming:
    n = len(request.get("prompt") or request.get("input_ids") or [])
    is_batch = isinstance(request.get("prompt"), list) or (
        isinstance(request.get("input_ids"), list)
        and bool(request["input_ids"])
        and isinstance(request["input_ids"][0], list)
    )
    n = n if is_batch else 1
    first: dict[int, float] = {}
    last: dict[int, dict[str, Any]] = {}
    start = clock()
    for chunk in engine.generate(
        **request, sampling_params=sampling_params(max_new_tokens), stream=True
    ):
        now = clock() - start
        index = int(chunk.get("index", 0))
        first.setdefault(index, now)
        last[index] = chunk
    total = clock() - start
    if len(last) != n:
        raise RuntimeError(f"expected streamed output for {n} request(s), got {len(last)}")
    prompt, completion = _meta([last[i] for i in range(n)])
    return EngineTiming(max(first.values()), min(first.values()), total, prompt, completion)


def time_generate(
    engine: Any,
    backend: str,
    request: dict[str, Any],
    max_new_tokens: int,
    clock: Callable[[], float] = time.perf_counter,
) -> EngineTiming:
    """Time ``engine.generate(**request)`` with greedy decoding of ``max_new_tokens`` tokens.

    See the module docs for how each backend's time to first token is taken
    (:data:`TTFT_METHODS`).

    Example:
        >>> time_generate(engine, "sglang", {"input_ids": ids}, 16).ttft_s  # doctest: +SKIP
        0.012
    """
    if backend == "sglang":
        return _time_sglang(engine, request, max_new_tokens, clock)
    if backend == "transformers":
        return _time_reference(engine, request, max_new_tokens, clock)
    raise ValueError(f"unknown backend {backend!r}; use 'sglang' or 'transformers'")


__all__ = ["TTFT_METHODS", "EngineTiming", "batch_request", "sampling_params", "time_generate"]
