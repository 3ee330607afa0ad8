"""Support code of the GPU tests: requests per format, greedy comparisons, SGLang's processes.

Nothing here imports sglang, so the module also loads on a CPU machine, where
the GPU tests are collected and skipped.

Example:
    >>> first_difference([1, 2, 3], [1, 2, 4])
    2
    >>> first_difference([1, 2], [1, 2]) is None
    True
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: The model families under test, in the order the tests run them.
FAMILIES: tuple[str, ...] = ("qwen2_5_vl", "llama4")

#: The three image input formats of ``Engine.generate``.
FORMATS: tuple[str, ...] = ("raw", "processor_output", "precomputed_embedding")

#: Engine arguments of every format comparison: without the radix cache a
#: request never reuses another's KV cache (RECIPE pitfall 7); the multimodal
#: embedding cache is switched off through SGLANG_VLM_CACHE_SIZE_MB=0 in
#: conftest.py (pitfall 12).
COMPARE_ENGINE_ARGS: dict[str, Any] = {"disable_radix_cache": True, "random_seed": 0}

#: Longest greedy answer: the trained tiny models answer in well under 16 tokens and stop.
MAX_NEW_TOKENS = 16

#: The notebooks' questions (the ones the tiny models are trained on), and the second picture.
QUESTION = "What's shown here: <image>?"
PAIR_QUESTION = "What's shown here: <image> and <image>?"
EXAMPLE_PICTURE = "a red circle and a blue square"
SECOND_PICTURE = "a yellow triangle"

#: Decisive means: at every generated step the best token leads the second by at least this
#: many nats (log-probability, equal to the logit margin), far beyond bf16 rounding.
DECISIVE_NATS = 1.0


def greedy(max_new_tokens: int = MAX_NEW_TOKENS) -> dict[str, Any]:
    """Sampling parameters of every comparison: greedy, stopping at the end of the answer.

    Example:
        >>> greedy(4)["temperature"]
        0
    """
    return {"temperature": 0, "max_new_tokens": max_new_tokens}


def model_path_for(family: str, preset: str = "tiny", real: bool = False) -> str:
    """The checkpoint a GPU test loads: the tiny model of ``preset``, or (``real``) the real id.

    Example:
        >>> model_path_for("llama4", real=True)
        'meta-llama/Llama-4-Scout-17B-16E-Instruct'
    """
    from vlm_tutorial.families import get_family

    if real and preset == "tiny":
        return get_family(family).real_model_id
    from vlm_tutorial.offline.tiny import tiny_model_path

    return str(tiny_model_path(family, preset))


def sample_images() -> list[Any]:
    """Two different pictures of different sizes: the example (448x336) and a second (256x192)."""
    from vlm_tutorial.images import example_image
    from vlm_tutorial.offline import toys

    return [example_image(EXAMPLE_PICTURE), toys.draw(SECOND_PICTURE, size=(256, 192))]


def expected_answer(*descriptions: str) -> str:
    """What a tiny model trained on toy pictures answers for these pictures.

    Example:
        >>> expected_answer("a red circle", "a yellow triangle")
        'a red circle; a yellow triangle'
    """
    from vlm_tutorial.offline.tiny.training import PAIR_SEPARATOR

    return PAIR_SEPARATOR.join(descriptions)


def min_margin(output: Mapping[str, Any]) -> float | None:
    """The smallest top-1 minus top-2 log-probability over the generated steps (None: unknown)."""
    tops = output.get("meta_info", {}).get("output_top_logprobs") or []
    gaps = [float(step[0][0]) - float(step[1][0]) for step in tops if step and len(step) > 1]
    return round(min(gaps), 3) if gaps else None


def build_format_requests(
    processor: Any,
    encoder: Any,
    prompt: str,
    images: Sequence[Any],
    formats: Sequence[str] = FORMATS,
) -> dict[str, dict[str, Any]]:
    """One request per format for the same prompt and images, built by the package's builders.

    Example:
        >>> reqs = build_format_requests(processor, encoder, prompt, [img])  # doctest: +SKIP
        >>> sorted(reqs)                                                      # doctest: +SKIP
        ['precomputed_embedding', 'processor_output', 'raw']
    """
    from vlm_bench.requests import (
        precomputed_embedding_request,
        processor_output_request,
        raw_request,
    )

    # SGLang preprocesses raw images with the fast image processor on its GPU; doing the same
    # here gives formats 2 and 3 the very pixels format 1 gets (CPU and GPU resizes differ).
    kwargs = {"device": "cuda"} if _cuda() else {}
    builders = {
        "raw": lambda: raw_request(prompt, list(images)),
        "processor_output": lambda: processor_output_request(
            processor, prompt, list(images), **kwargs
        ),
        "precomputed_embedding": lambda: precomputed_embedding_request(
            processor, prompt, list(images), encoder, **kwargs
        ),
    }
    return {fmt: builders[fmt]() for fmt in formats}


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def batch_request(requests: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge single requests of one format into one batched ``generate`` call.

    Example:
        >>> batch_request([{"prompt": "a", "image_data": [1]}, {"prompt": "b", "image_data": [2]}])
        {'prompt': ['a', 'b'], 'image_data': [[1], [2]]}
    """
    key = "prompt" if "prompt" in requests[0] else "input_ids"
    return {
        key: [r[key] for r in requests],
        "image_data": [list(r["image_data"]) for r in requests],
    }


def first_difference(a: Sequence[int], b: Sequence[int]) -> int | None:
    """Index of the first differing token, or None when the sequences are identical."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def top_logprobs(output: Mapping[str, Any], step: int) -> list[tuple[int, float]]:
    """``[(token_id, logprob), ...]`` best first at ``step``, from a ``return_logprob`` output."""
    tops = output.get("meta_info", {}).get("output_top_logprobs") or []
    if step >= len(tops) or not tops[step]:
        return []
    return [(int(entry[1]), float(entry[0])) for entry in tops[step]]


@dataclass
class GreedyComparison:
    """How two greedy outputs relate: identical, or where and why they part.

    Attributes:
        names: the two runs compared (baseline first).
        ids: their output ids.
        difference: first differing step, or None.
        top2_gap: the baseline's top-2 log-probability gap at that step, when known.
        other_rank: where the other run's token ranks in the baseline's top list there.
    """

    names: tuple[str, str]
    ids: tuple[list[int], list[int]]
    difference: int | None
    top2_gap: float | None = None
    other_rank: int | None = None
    top: list[tuple[int, float]] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return self.difference is None

    @property
    def leading_agreement(self) -> int:
        return len(self.ids[0]) if self.difference is None else self.difference

    def as_record(self) -> dict[str, Any]:
        return {
            "compared": list(self.names),
            "identical": self.identical,
            "leading_agreement": self.leading_agreement,
            "first_difference": self.difference,
            "baseline_top2_gap_nats": self.top2_gap,
            "other_token_rank_in_baseline": self.other_rank,
            "baseline_top_logprobs": self.top,
        }

    def describe(self) -> str:
        a, b = self.names
        if self.identical:
            return f"{a} and {b}: identical ({len(self.ids[0])} tokens)"
        text = (
            f"{a} and {b} agree on {self.leading_agreement} leading tokens, then differ: "
            f"{a}={self.ids[0]} {b}={self.ids[1]}"
        )
        if self.top:
            text += (
                f"; at step {self.difference} {a}'s top log-probabilities were {self.top} "
                f"(top-2 gap {self.top2_gap}), {b}'s token ranks {self.other_rank} there"
            )
        return text


def compare_greedy(
    name_a: str, out_a: Mapping[str, Any], name_b: str, out_b: Mapping[str, Any]
) -> GreedyComparison:
    """Compare two greedy outputs; ``out_a`` should carry ``output_top_logprobs``."""
    a = [int(t) for t in out_a["output_ids"]]
    b = [int(t) for t in out_b["output_ids"]]
    diff = first_difference(a, b)
    result = GreedyComparison((name_a, name_b), (a, b), diff)
    if diff is not None and diff < len(b):
        top = top_logprobs(out_a, diff)
        result.top = top
        if len(top) >= 2:
            result.top2_gap = round(top[0][1] - top[1][1], 4)
        ranks = [tok for tok, _ in top]
        result.other_rank = ranks.index(b[diff]) if b[diff] in ranks else None
    return result


def assert_same_greedy(
    name_a: str, out_a: Mapping[str, Any], name_b: str, out_b: Mapping[str, Any]
) -> GreedyComparison:
    """Assert two greedy outputs are identical, token for token (no tolerance).

    The tiny checkpoints are trained to answer with wide margins, so rounding
    differences between kernels (SGLang's against transformers', bf16 against
    fp32, batched against single) cannot flip a token; any difference is a bug.
    """
    result = compare_greedy(name_a, out_a, name_b, out_b)
    if result.identical:
        return result
    raise AssertionError(result.describe())


def visible_gpus() -> int:
    """Number of CUDA devices torch sees (0 on a CPU machine)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``(fn(*args, **kwargs), seconds)``."""
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


# --------------------------------------------------------------------------- processes


def sglang_processes(since: float | None = None) -> list[Any]:
    """Processes of this user whose name or command line carries ``sglang::`` (SGLang's titles).

    SGLang names its subprocesses with setproctitle (``sglang::scheduler``,
    ``sglang::scheduler_TP0``, ``sglang::detokenizer``). Orphans re-parented
    to init count too, so every process of this user is looked at;
    ``since`` (a ``time.time()``) keeps only processes started after it.
    """
    import psutil

    me = psutil.Process()
    user = me.username()
    found = []
    for proc in psutil.process_iter(["pid", "name", "cmdline", "username", "create_time"]):
        info = proc.info
        if info.get("username") != user or proc.pid == me.pid:
            continue
        if since is not None and (info.get("create_time") or 0) < since - 1:
            continue
        text = " ".join([info.get("name") or "", *(info.get("cmdline") or [])])
        if "sglang::" in text:
            found.append(proc)
    return found


def describe_processes(procs: Iterable[Any]) -> list[str]:
    out = []
    for proc in procs:
        try:
            out.append(f"{proc.pid} {proc.name()} {' '.join(proc.cmdline())[:80]}")
        except Exception:  # noqa: BLE001 - it may be gone already
            out.append(f"{proc.pid} (gone)")
    return out


def wait_until_gone(procs: Sequence[Any], timeout: float = 60.0) -> list[Any]:
    """Wait up to ``timeout`` seconds for ``procs`` to exit; return those still alive."""
    import psutil

    _, alive = psutil.wait_procs(list(procs), timeout=timeout)
    return [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


__all__ = [
    "FAMILIES",
    "FORMATS",
    "COMPARE_ENGINE_ARGS",
    "MAX_NEW_TOKENS",
    "DECISIVE_NATS",
    "QUESTION",
    "PAIR_QUESTION",
    "EXAMPLE_PICTURE",
    "SECOND_PICTURE",
    "GreedyComparison",
    "assert_same_greedy",
    "batch_request",
    "build_format_requests",
    "compare_greedy",
    "describe_processes",
    "expected_answer",
    "first_difference",
    "greedy",
    "median",
    "min_margin",
    "model_path_for",
    "sglang_processes",
    "sample_images",
    "timed",
    "top_logprobs",
    "visible_gpus",
    "wait_until_gone",
]
