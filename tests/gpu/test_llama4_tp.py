"""Llama 4 with tensor parallelism (tiny ``tp4`` preset): tp_size 2 and 4 answer as tp_size 1.

Skipped unless that many GPUs are visible. The ``tp4`` checkpoint has 4
attention heads, 4 KV heads, 4 experts and intermediate sizes divisible by 4,
so every tensor-parallel split is even.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from gpu_support import (
    COMPARE_ENGINE_ARGS,
    QUESTION,
    assert_same_greedy,
    build_format_requests,
    describe_processes,
    greedy,
    model_path_for,
    sample_images,
    sglang_processes,
    visible_gpus,
    wait_until_gone,
)

pytestmark = pytest.mark.gpu

MAX_NEW_TOKENS = 8
LOGPROBS = {"return_logprob": True, "top_logprobs_num": 5}


def _tp_param(tp_size: int) -> Any:
    n = visible_gpus()
    return pytest.param(
        tp_size,
        marks=pytest.mark.skipif(
            n < tp_size, reason=f"tp_size={tp_size} needs {tp_size} GPUs, {n} visible"
        ),
        id=f"tp{tp_size}",
    )


@pytest.fixture(scope="module")
def tp_model() -> str:
    return model_path_for("llama4", "tp4")


@pytest.fixture(scope="module")
def tp_requests(tp_model: str) -> dict[str, dict[str, Any]]:
    from transformers import AutoProcessor

    from vlm_tutorial.prompts import build_prompt
    from vlm_tutorial.vision import load_vision_encoder

    processor = AutoProcessor.from_pretrained(tp_model)
    encoder = load_vision_encoder(tp_model, device="cuda")
    prompt = build_prompt(processor, QUESTION)
    return build_format_requests(processor, encoder, prompt, sample_images()[:1])


def _run(
    model: str, requests: dict[str, Any], tp_size: int
) -> tuple[dict[str, Any], list[str], list[Any]]:
    from vlm_bench.engines import open_engine

    since = time.time()
    with open_engine(model, backend="sglang", tp_size=tp_size, **COMPARE_ENGINE_ARGS) as engine:
        procs = sglang_processes(since=since)
        outs = {
            fmt: engine.generate(**req, sampling_params=greedy(MAX_NEW_TOKENS), **LOGPROBS)
            for fmt, req in requests.items()
        }
    return outs, describe_processes(procs), wait_until_gone(procs, timeout=90)


@pytest.fixture(scope="module")
def tp1_outputs(tp_model: str, tp_requests: dict[str, Any]) -> dict[str, Any]:
    outs, _, left = _run(tp_model, tp_requests, 1)
    assert not left, f"tp_size=1 left processes: {describe_processes(left)}"
    return outs


@pytest.mark.parametrize("tp_size", [_tp_param(2), _tp_param(4)])
def test_tensor_parallel_matches_tp1_and_exits(
    tp_size: int,
    tp_model: str,
    tp_requests: dict[str, Any],
    tp1_outputs: dict[str, Any],
    gpu_record: dict[str, Any],
) -> None:
    outs, names, left = _run(tp_model, tp_requests, tp_size)
    schedulers = [n for n in names if "scheduler" in n]
    assert len(schedulers) >= tp_size, f"expected one scheduler per rank, saw {names}"
    assert not left, f"tp_size={tp_size} left processes: {describe_processes(left)}"
    records = {}
    for fmt, out in outs.items():
        # Reduction order differs between tp sizes; the margins leave it no token to flip.
        cmp = assert_same_greedy(f"tp1 {fmt}", tp1_outputs[fmt], f"tp{tp_size} {fmt}", out)
        records[fmt] = cmp.as_record()
    gpu_record.setdefault("tensor_parallel", {})[f"tp{tp_size}"] = {
        "processes": names,
        "comparisons": records,
    }
